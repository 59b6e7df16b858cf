//! A backup step's `dump = { tables = [...] }`, a step's `no_backup`, and
//! `[runbook] version`/`requires_version`.

use toml::Spanned;

use super::Parser;
use super::raw::{RawDump, RawStep};
use crate::runbook::{Dump, StepBody, StepKind, TableName};

impl Parser {
    /// The body of a step with `dump`: only a backup step, without SQL.
    pub(super) fn dump_body(
        &mut self,
        kind: StepKind,
        raw: &RawStep,
        dump: &Spanned<RawDump>,
    ) -> Option<StepBody> {
        let at = dump.span().start;
        if kind != StepKind::Backup {
            self.error(
                at,
                format!("dump is only for backup steps, not {} steps", kind.as_str()),
                Some("make the step kind = \"backup\", or remove the key".into()),
            );
            return None;
        }
        for (key, given) in [
            ("sql", raw.sql.as_ref().map(|s| s.span().start)),
            ("file", raw.file.as_ref().map(|s| s.span().start)),
            ("rollback", raw.rollback.as_ref().map(|s| s.span().start)),
            ("expect", raw.expect.as_ref().map(|s| s.span().start)),
            ("capture", raw.capture.as_ref().map(|s| s.span().start)),
            (
                "transaction",
                raw.transaction.as_ref().map(|s| s.span().start),
            ),
        ] {
            if let Some(key_at) = given {
                self.error(
                    key_at,
                    format!("a dump backup step has no {key}"),
                    Some("a dump runs pg_dump of its tables; put SQL in a step of its own".into()),
                );
            }
        }
        let Some(tables) = &dump.get_ref().tables else {
            self.error(
                at,
                "dump has no tables",
                Some("e.g. dump = { tables = [\"users\"] }".into()),
            );
            return None;
        };
        if tables.is_empty() {
            self.error(
                at,
                "dump lists no tables",
                Some("e.g. dump = { tables = [\"users\"] }".into()),
            );
            return None;
        }
        let mut out: Vec<TableName> = Vec::new();
        for t in tables {
            match TableName::parse(t.get_ref()) {
                Some(name) if out.contains(&name) => self.error(
                    t.span().start,
                    format!("table {name} is listed twice"),
                    None,
                ),
                Some(name) => out.push(name),
                None => self.error(
                    t.span().start,
                    format!("{:?} is not a table name", t.get_ref()),
                    Some(
                        "write name or schema.name, each a plain identifier (letters, digits, _ and $, not starting with a digit)"
                            .into(),
                    ),
                ),
            }
        }
        let timeout = match &dump.get_ref().timeout {
            None => Some(Dump::DEFAULT_TIMEOUT),
            Some(t) => match self.duration(t, "dump.timeout") {
                Some(d) if d.is_zero() => {
                    self.error(
                        t.span().start,
                        "dump.timeout must be more than 0",
                        Some("e.g. timeout = \"30min\"; leave it out for one hour".into()),
                    );
                    None
                }
                other => other,
            },
        };
        let timeout = timeout?;
        (out.len() == tables.len()).then_some(StepBody::Dump(Dump {
            tables: out,
            timeout,
        }))
    }

    /// `no_backup = "REASON"`: a reason, on a step that can remove data.
    pub(super) fn no_backup(&mut self, kind: StepKind, raw: &RawStep) -> Option<String> {
        let nb = raw.no_backup.as_ref()?;
        if !matches!(kind, StepKind::Change | StepKind::Backfill) {
            self.error(
                nb.span().start,
                format!(
                    "no_backup is only for change steps, not {} steps",
                    kind.as_str()
                ),
                None,
            );
            return None;
        }
        if nb.get_ref().trim().is_empty() {
            self.error(
                nb.span().start,
                "no_backup needs a reason",
                Some("say why no backup is needed, e.g. no_backup = \"rows are rebuilt by the nightly import\"".into()),
            );
            return None;
        }
        Some(nb.get_ref().clone())
    }

    /// A semantic version (`2.4.1`) of `[runbook]`.
    pub(super) fn semver(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
    ) -> Option<semver::Version> {
        let v = value?;
        match semver::Version::parse(v.get_ref().trim()) {
            Ok(version) => Some(version),
            Err(e) => {
                self.error(
                    v.span().start,
                    format!("{key} {:?} is not a semantic version: {e}", v.get_ref()),
                    Some(format!("write MAJOR.MINOR.PATCH, e.g. {key} = \"2.4.1\"")),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::runbook::TableName;

    fn table_name(s: &str) -> Option<TableName> {
        TableName::parse(s)
    }

    #[test]
    fn a_dump_timeout_defaults_to_an_hour_and_must_be_more_than_zero() {
        use std::path::Path;
        use std::time::Duration;

        use crate::runbook::{Dump, StepBody, parse_str};
        let rb = |dump: &str| {
            format!(
                "[runbook]\nid = \"r\"\ntitle = \"T\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"b\"\nkind = \"backup\"\ndump = {dump}\n"
            )
        };
        let timeout = |text: String| {
            let r = parse_str(Path::new("t.toml"), text).unwrap();
            match &r.phases[0].steps[0].body {
                StepBody::Dump(d) => d.timeout,
                _ => Duration::ZERO,
            }
        };
        assert_eq!(
            timeout(rb("{ tables = [\"users\"] }")),
            Dump::DEFAULT_TIMEOUT
        );
        assert_eq!(
            timeout(rb("{ tables = [\"users\"], timeout = \"30min\" }")),
            Duration::from_secs(1800)
        );
        let errs = parse_str(
            Path::new("t.toml"),
            rb("{ tables = [\"users\"], timeout = \"0\" }"),
        )
        .unwrap_err();
        assert_eq!(
            (errs[0].location.line, errs[0].location.col),
            (9, 40),
            "{}",
            errs[0]
        );
        assert!(errs[0].message.contains("dump.timeout"), "{}", errs[0]);
    }

    #[test]
    fn table_names_are_plain_identifiers_folded() {
        let t = table_name("Public.Users").map(|t| t.to_string());
        assert_eq!(t.as_deref(), Some("public.users"));
        assert!(table_name("users; DROP TABLE x").is_none());
        assert!(table_name("u*").is_none());
        assert!(table_name("a.b.c").is_none());
        assert!(table_name("1abc").is_none());
        assert!(table_name("").is_none());
    }
}
