//! `[approvals]`: required kinds, distinct approvers, notice by risk, and
//! the allowed-signers file of signed approvals.

use toml::Spanned;

use super::Parser;
use super::raw::RawApprovals;
use crate::regular_file::{SOURCE_LIMIT, read_regular};
use crate::runbook::{AllowedSigners, ApprovalsSection, Notice, valid_kind};

impl Parser {
    pub(super) fn approvals(&mut self, raw: Spanned<RawApprovals>) -> ApprovalsSection {
        let at = raw.span().start;
        let raw = raw.into_inner();
        let mut required: Vec<String> = Vec::new();
        match raw.required {
            None => self.error(
                at,
                "[approvals] has no required kinds",
                Some("add required = [\"technical\", \"business\"]: each kind needs an approval by `pgpilot approve … --as KIND`".into()),
            ),
            Some(kinds) => {
                for k in kinds {
                    if !valid_kind(k.get_ref()) {
                        self.error(
                            k.span().start,
                            format!("approval kind {:?} is not a valid kind", k.get_ref()),
                            Some("use a lower-case word of letters, digits, '-' or '_', e.g. \"technical\"".into()),
                        );
                    } else if required.contains(k.get_ref()) {
                        self.error(
                            k.span().start,
                            format!("approval kind {:?} is listed twice", k.get_ref()),
                            None,
                        );
                    } else {
                        required.push(k.into_inner());
                    }
                }
            }
        }
        let notice = raw.notice.map(|n| {
            let n = n.into_inner();
            let mut notice = Notice::SEED;
            for (value, slot, key) in [
                (&n.low, &mut notice.low, "notice.low"),
                (&n.medium, &mut notice.medium, "notice.medium"),
                (&n.high, &mut notice.high, "notice.high"),
            ] {
                if let Some(v) = value
                    && let Some(d) = self.duration(v, key)
                {
                    *slot = d;
                }
            }
            notice
        });
        let allowed_signers = raw
            .allowed_signers
            .as_ref()
            .and_then(|f| self.allowed_signers(f));
        ApprovalsSection {
            required,
            distinct_approvers: raw.distinct_approvers.unwrap_or(true),
            notice,
            allowed_signers,
        }
    }

    /// The allowed-signers file, which must lie in the runbook's folder
    /// (links resolved): who may approve is reviewed with the runbook.
    fn allowed_signers(&mut self, f: &Spanned<String>) -> Option<AllowedSigners> {
        let at = f.span().start;
        let help = "name a file in the runbook's folder in ssh-keygen's allowed_signers format (one line per approver: PRINCIPAL KEYTYPE KEY), e.g. allowed_signers = \"allowed_signers\"";
        let written = std::path::Path::new(f.get_ref());
        let folder = self.folder();
        let shown = folder.join(written);
        let inside = match (
            std::fs::canonicalize(&folder),
            std::fs::canonicalize(&shown),
        ) {
            (Ok(root), Ok(real)) => real.starts_with(&root).then_some(real),
            (_, Err(e)) => {
                self.error(
                    at,
                    format!("allowed_signers: cannot read {}: {e}", shown.display()),
                    Some(help.into()),
                );
                return None;
            }
            (Err(_), Ok(_)) => None,
        };
        let Some(real) = inside.filter(|_| !written.is_absolute()) else {
            self.error(
                at,
                format!(
                    "allowed_signers {} is outside the runbook's folder",
                    shown.display()
                ),
                Some(help.into()),
            );
            return None;
        };
        let text = match read_regular(&real, SOURCE_LIMIT)
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8 text".to_string()))
        {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    at,
                    format!("allowed_signers: cannot read {}: {e}", shown.display()),
                    Some(help.into()),
                );
                return None;
            }
        };
        if !text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        {
            self.error(
                at,
                format!("allowed_signers {} names no signer", shown.display()),
                Some(help.into()),
            );
            return None;
        }
        Some(AllowedSigners {
            written: f.get_ref().clone(),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::runbook::parse_str;

    const BODY: &str = "[runbook]\nid = \"r\"\ntitle = \"T\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"check\"\nsql = \"SELECT 1\"\n";

    fn with(approvals: &str) -> String {
        BODY.replace("[[phase]]", &format!("{approvals}\n[[phase]]"))
    }

    #[test]
    fn approvals_are_read_with_defaults() {
        let r = parse_str(
            Path::new("t.toml"),
            with(
                "[approvals]\nrequired = [\"technical\", \"business\"]\nnotice = { high = \"3d\" }",
            ),
        )
        .unwrap();
        let a = r.approvals.unwrap();
        assert_eq!(a.required, ["technical", "business"]);
        assert!(a.distinct_approvers);
        let n = a.notice.unwrap();
        assert_eq!(n.high, Duration::from_secs(3 * 86400));
        assert_eq!(n.low, Duration::from_secs(86400));
        assert!(
            parse_str(Path::new("t.toml"), BODY.into())
                .unwrap()
                .approvals
                .is_none()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_place() {
        let errs = parse_str(
            Path::new("t.toml"),
            with("[approvals]\nrequired = [\"technical\"]\nnotise = {}"),
        )
        .unwrap_err();
        assert_eq!(
            (errs[0].location.line, errs[0].location.col),
            (6, 1),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].message.contains("unknown key `notise`"),
            "{}",
            errs[0]
        );
        let errs = parse_str(
            Path::new("t.toml"),
            with("[approvals]\nrequired = [\"Tech Lead\"]\nnotice = { low = \"soon\" }"),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].location.line, 5, "{}", errs[0]);
        assert!(errs[1].message.contains("notice.low"), "{}", errs[1]);
    }

    #[test]
    fn windows_need_a_known_timezone_and_errors_name_their_place() {
        let target = |t: &str| BODY.replace("[[phase]]", &format!("[target]\n{t}\n[[phase]]"));
        let r = parse_str(
            Path::new("t.toml"),
            target("windows = [\"Sat 02:00-04:00\"]\ntimezone = \"Europe/Berlin\""),
        )
        .unwrap();
        assert_eq!(r.target.windows.len(), 1);
        let errs = parse_str(
            Path::new("t.toml"),
            target("windows = [\"Sat 02:00-04:00\"]"),
        )
        .unwrap_err();
        assert!(errs[0].message.contains("need a timezone"), "{}", errs[0]);
        let errs = parse_str(
            Path::new("t.toml"),
            target("windows = [\"Caturday 02:00-04:00\"]\ntimezone = \"Mars/Olympus\""),
        )
        .unwrap_err();
        assert_eq!(
            (errs[0].location.line, errs[0].location.col),
            (5, 12),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].message.contains("not an IANA timezone"),
            "{}",
            errs[1]
        );
    }
}
