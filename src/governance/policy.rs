//! Whether the approvals on record let a run start: required kinds, four
//! eyes, distinct approvers, notice. Pure: the rows come from `store`.

use std::time::Duration;

use serde::Serialize;

use super::signature::SignatureCheck;
use crate::runbook::{Notice, Risk, Runbook, seed_required};

/// What a run of this runbook needs before its first change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub kinds: Vec<String>,
    pub distinct_approvers: bool,
    /// Each approval at least this old when the run starts.
    #[serde(serialize_with = "secs")]
    pub notice: Option<Duration>,
    /// Where the kinds come from.
    pub source: Source,
    /// Only approvals whose SSH signature verifies against the runbook's
    /// `allowed_signers` count; four eyes and distinct approvers then
    /// also hold for the signers' principals.
    pub signed: bool,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The runbook's `[approvals]`.
    Runbook,
    /// The seed's defaults by change type (production, no `[approvals]`).
    ChangeType,
    /// `--emergency`: one `owner` approval, no notice.
    Emergency,
}

/// The kind an emergency run needs instead of the required ones.
pub const EMERGENCY_KIND: &str = "owner";

pub fn is_production(env: &str) -> bool {
    matches!(env.to_ascii_lowercase().as_str(), "production" | "prod")
}

/// What a run in `env` needs; `None` when nothing is required.
pub fn requirement(
    rb: &Runbook,
    risk: Risk,
    env: Option<&str>,
    emergency: bool,
) -> Option<Requirement> {
    // An emergency changes what is needed, never whose word counts.
    let signed = rb
        .approvals
        .as_ref()
        .is_some_and(|a| a.allowed_signers.is_some());
    if emergency {
        return Some(Requirement {
            kinds: vec![EMERGENCY_KIND.to_string()],
            distinct_approvers: true,
            notice: None,
            source: Source::Emergency,
            signed,
        });
    }
    let production = env.is_some_and(is_production);
    let (kinds, distinct, notice, source) = match &rb.approvals {
        Some(a) => (
            a.required.clone(),
            a.distinct_approvers,
            a.notice.or(production.then_some(Notice::SEED)),
            Source::Runbook,
        ),
        None if production => (
            seed_required(rb.change_type)
                .iter()
                .map(|k| k.to_string())
                .collect(),
            true,
            Some(Notice::SEED),
            Source::ChangeType,
        ),
        None => return None,
    };
    if kinds.is_empty() {
        return None;
    }
    Some(Requirement {
        kinds,
        distinct_approvers: distinct,
        notice: notice.map(|n| n.for_risk(risk)).filter(|d| !d.is_zero()),
        source,
        signed,
    })
}

/// One approval as recorded, with its age by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub id: i64,
    pub runbook_sha256: String,
    pub kind: String,
    /// The approver's database role (`session_user`, set by the server).
    pub approver: String,
    pub os_user: String,
    pub client_host: String,
    pub approved_at: String,
    #[serde(skip)]
    pub age: Duration,
    pub comment: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// The signer's identity in the allowed-signers file (signed approvals).
    pub principal: Option<String>,
    /// The time the approver signed, as signed (UTC, RFC 3339).
    pub signed_at: Option<String>,
    /// The armored SSH signature.
    #[serde(skip)]
    pub signature: Option<String>,
    /// Whether the signature was checked and held (`signature::check_all`).
    pub signature_check: SignatureCheck,
}

impl Approval {
    /// Who approved, for four eyes and distinct approvers: the role, and
    /// with signed approvals also the principal.
    fn same_approver(&self, other: &Approval, signed: bool) -> bool {
        self.approver == other.approver
            || (signed && self.principal.is_some() && self.principal == other.principal)
    }
}

/// Who runs the change: the role it connects as, and the principal it
/// says it is in the allowed-signers file (`run --principal`).
#[derive(Debug, Clone, Copy)]
pub struct Operator<'a> {
    pub role: &'a str,
    pub principal: Option<&'a str>,
}

/// The outcome for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Each required kind and the approval that counts for it.
    pub counted: Vec<(String, Approval)>,
    /// Required kinds without an approval that counts.
    pub missing: Vec<String>,
    /// Every approval of this runbook id, described, with why it does not
    /// count where it does not ("technical by alice 2 h ago").
    pub has: Vec<String>,
    /// Only signed approvals count (the runbook names allowed_signers).
    pub signed: bool,
}

impl Verdict {
    pub fn satisfied(&self) -> bool {
        self.missing.is_empty()
    }

    /// The approvals that count, one line each, for the audit and the
    /// change record: kind, role, when (the server's clock), from where.
    /// Each line is one line: a comment cannot forge another approval.
    pub fn in_force(&self) -> Vec<String> {
        self.counted
            .iter()
            .map(|(k, a)| {
                let comment = a
                    .comment
                    .as_deref()
                    .map(|c| format!("; comment: {c}"))
                    .unwrap_or_default();
                crate::text::one_line(&format!(
                    "{k} by {} at {} ({}; OS user {} on {}; approval {}{comment})",
                    a.approver,
                    a.approved_at,
                    ago(a.age),
                    a.os_user,
                    a.client_host,
                    a.id
                ))
            })
            .collect()
    }

    /// "needs a business approval of this runbook (sha256 3f2a9c12…); has: …"
    pub fn explain(&self, hash: &str) -> String {
        if self.satisfied() {
            let by: Vec<String> = self
                .counted
                .iter()
                .map(|(k, a)| format!("{k} by {} {}", a.approver, ago(a.age)))
                .collect();
            return format!("approved: {}", by.join(", "));
        }
        let kinds: Vec<String> = self.missing.iter().map(|k| article(k)).collect();
        let has = if self.has.is_empty() {
            "none".to_string()
        } else {
            self.has.join("; ")
        };
        format!(
            "needs {} of this runbook (sha256 {}…); has: {has}; approve with `pgpilot approve RUNBOOK --as KIND{}` by another role",
            join_and(&kinds),
            short(hash),
            if self.signed { " --sign-with KEY" } else { "" }
        )
    }
}

fn article(kind: &str) -> String {
    let an = kind.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {kind} approval", if an { "an" } else { "a" })
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// "2 h ago", in the largest unit that keeps the number small.
pub fn ago(age: Duration) -> String {
    let s = age.as_secs();
    let amount = match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    format!("{amount} ago")
}

/// Matches approvals to the required kinds: of `hash`, not revoked, not by
/// the operator's own role, old enough, and (when distinct) one role per kind.
pub fn evaluate(req: &Requirement, hash: &str, operator: &str, approvals: &[Approval]) -> Verdict {
    evaluate_as(
        req,
        hash,
        Operator {
            role: operator,
            principal: None,
        },
        approvals,
    )
}

/// [`evaluate`], where the operator may also have a principal: with signed
/// approvals, only verified signatures count, none by the operator's
/// principal, and distinct approvers differ in role and principal.
pub fn evaluate_as(
    req: &Requirement,
    hash: &str,
    operator: Operator<'_>,
    approvals: &[Approval],
) -> Verdict {
    let why_not = |a: &Approval| -> Option<String> {
        if a.revoked_at.is_some() {
            Some("revoked".into())
        } else if a.runbook_sha256 != hash {
            Some(format!(
                "of another version, sha256 {}…",
                short(&a.runbook_sha256)
            ))
        } else if a.approver == operator.role {
            Some("by the operator's own role: four eyes".into())
        } else if req.signed && a.signature_check != SignatureCheck::Verified {
            Some(match &a.signature_check {
                SignatureCheck::Unsigned => {
                    "unsigned: this runbook counts only approvals signed with a key in its allowed_signers".into()
                }
                other => other.describe(a.principal.as_deref()),
            })
        } else if req.signed
            && a.principal.is_some()
            && a.principal.as_deref() == operator.principal
        {
            Some("signed by the operator's own principal: four eyes".into())
        } else if let Some(n) = req.notice
            && a.age < n
        {
            Some(format!(
                "too recent: needs {} notice",
                crate::runbook::format_duration(n)
            ))
        } else if !req.kinds.contains(&a.kind) {
            Some("not a required kind".into())
        } else {
            None
        }
    };
    let usable: Vec<&Approval> = approvals.iter().filter(|a| why_not(a).is_none()).collect();
    let mut chosen: Vec<Option<&Approval>> = vec![None; req.kinds.len()];
    assign(req, &usable, 0, &mut chosen);
    let mut counted = Vec::new();
    let mut missing = Vec::new();
    for (kind, pick) in req.kinds.iter().zip(&chosen) {
        match pick {
            Some(a) => counted.push((kind.clone(), (*a).clone())),
            None => missing.push(kind.clone()),
        }
    }
    let has = approvals
        .iter()
        .map(|a| {
            let by = match (&a.principal, req.signed) {
                (Some(p), true) => format!("{} ({p})", a.approver),
                _ => a.approver.clone(),
            };
            let said = format!("{} by {by} {}", a.kind, ago(a.age));
            match why_not(a) {
                Some(why) => format!("{said} ({why})"),
                None if req.distinct_approvers
                    && !counted.iter().any(|(_, c)| c.id == a.id)
                    && counted.iter().any(|(_, c)| c.same_approver(a, req.signed)) =>
                {
                    format!("{said} (the same role approved another kind: distinct approvers)")
                }
                None => said,
            }
        })
        .collect();
    Verdict {
        counted,
        missing,
        has,
        signed: req.signed,
    }
}

/// Fills as many kinds as possible (a small search: kinds are few), so an
/// approver of two kinds is used for the one nobody else approved.
fn assign<'a>(
    req: &Requirement,
    usable: &[&'a Approval],
    i: usize,
    chosen: &mut Vec<Option<&'a Approval>>,
) -> usize {
    if i == req.kinds.len() {
        return chosen.iter().flatten().count();
    }
    let candidates: Vec<Option<&'a Approval>> = usable
        .iter()
        .copied()
        .filter(|a| {
            a.kind == req.kinds[i]
                && !(req.distinct_approvers
                    && chosen[..i]
                        .iter()
                        .flatten()
                        .any(|c| c.same_approver(a, req.signed)))
        })
        .map(Some)
        .chain([None])
        .collect();
    let mut best: (usize, Vec<Option<&'a Approval>>) = (0, chosen.clone());
    for (n, c) in candidates.into_iter().enumerate() {
        chosen[i] = c;
        let filled = assign(req, usable, i + 1, chosen);
        if n == 0 || filled > best.0 {
            best = (filled, chosen.clone());
        }
    }
    *chosen = best.1;
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kinds: &[&str], notice: Option<u64>) -> Requirement {
        Requirement {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            distinct_approvers: true,
            notice: notice.map(Duration::from_secs),
            source: Source::Runbook,
            signed: false,
        }
    }

    fn ap(id: i64, kind: &str, who: &str, age_h: u64) -> Approval {
        Approval {
            id,
            runbook_sha256: "h".repeat(64),
            kind: kind.into(),
            approver: who.into(),
            os_user: who.into(),
            client_host: "host".into(),
            approved_at: String::new(),
            age: Duration::from_secs(age_h * 3600),
            comment: None,
            revoked_at: None,
            revoked_by: None,
            principal: None,
            signed_at: None,
            signature: None,
            signature_check: SignatureCheck::Unsigned,
        }
    }

    #[test]
    fn missing_kinds_are_named_with_what_is_there() {
        let v = evaluate(
            &req(&["technical", "business"], None),
            &"h".repeat(64),
            "op",
            &[ap(1, "technical", "alice", 2)],
        );
        assert_eq!(v.missing, ["business"]);
        assert_eq!(
            v.explain(&"h".repeat(64)),
            "needs a business approval of this runbook (sha256 hhhhhhhhhhhh…); has: technical by alice 2 h ago; approve with `pgpilot approve RUNBOOK --as KIND` by another role"
        );
    }

    #[test]
    fn four_eyes_distinct_roles_and_notice() {
        let h = "h".repeat(64);
        let own = evaluate(
            &req(&["technical"], None),
            &h,
            "alice",
            &[ap(1, "technical", "alice", 2)],
        );
        assert_eq!(own.missing, ["technical"]);
        assert!(own.has[0].contains("four eyes"), "{:?}", own.has);
        // alice approved both, bob only technical: bob technical, alice business.
        let both = [
            ap(1, "technical", "alice", 2),
            ap(2, "business", "alice", 2),
            ap(3, "technical", "bob", 2),
        ];
        let v = evaluate(&req(&["technical", "business"], None), &h, "op", &both);
        assert!(v.satisfied(), "{v:?}");
        let one = evaluate(&req(&["technical", "business"], None), &h, "op", &both[..2]);
        assert_eq!(one.missing.len(), 1, "{one:?}");
        let mut lax = req(&["technical", "business"], None);
        lax.distinct_approvers = false;
        assert!(evaluate(&lax, &h, "op", &both[..2]).satisfied());
        let young = evaluate(
            &req(&["technical"], Some(48 * 3600)),
            &h,
            "op",
            &[ap(1, "technical", "bob", 2)],
        );
        assert_eq!(young.missing, ["technical"]);
        assert!(young.has[0].contains("too recent"), "{:?}", young.has);
        assert!(
            evaluate(
                &req(&["technical"], Some(48 * 3600)),
                &h,
                "op",
                &[ap(1, "technical", "bob", 49)]
            )
            .satisfied()
        );
    }

    #[test]
    fn an_approval_of_another_version_does_not_count() {
        let v = evaluate(
            &req(&["technical"], None),
            &"x".repeat(64),
            "op",
            &[ap(1, "technical", "bob", 2)],
        );
        assert_eq!(v.missing, ["technical"]);
        assert!(v.has[0].contains("another version"), "{:?}", v.has);
    }

    #[test]
    fn signed_requirements_count_only_verified_signatures_by_other_principals() {
        let h = "h".repeat(64);
        let mut r = req(&["technical", "business"], None);
        r.signed = true;
        let signed = |id, kind: &str, role: &str, who: &str, check: SignatureCheck| {
            let mut a = ap(id, kind, role, 2);
            a.principal = Some(who.into());
            a.signature_check = check;
            a
        };
        let op = Operator {
            role: "op",
            principal: Some("olga@example.com"),
        };
        // A row with no signature, or one that does not verify, is not counted.
        let v = evaluate_as(
            &r,
            &h,
            op,
            &[
                ap(1, "technical", "alice", 2),
                signed(
                    2,
                    "business",
                    "bob",
                    "bob@example.com",
                    SignatureCheck::Invalid("no matching key".into()),
                ),
            ],
        );
        assert_eq!(v.missing, ["technical", "business"]);
        assert!(v.has[0].contains("unsigned"), "{:?}", v.has);
        assert!(v.has[1].contains("does not verify"), "{:?}", v.has);
        // The operator's own principal, even under another role, is not counted;
        // one principal under two roles approves one kind only.
        let v = evaluate_as(
            &r,
            &h,
            op,
            &[
                signed(
                    1,
                    "technical",
                    "alice",
                    "olga@example.com",
                    SignatureCheck::Verified,
                ),
                signed(
                    2,
                    "technical",
                    "carl",
                    "bob@example.com",
                    SignatureCheck::Verified,
                ),
                signed(
                    3,
                    "business",
                    "bob",
                    "bob@example.com",
                    SignatureCheck::Verified,
                ),
            ],
        );
        assert_eq!(v.missing.len(), 1, "{v:?}");
        assert!(v.has[0].contains("operator's own principal"), "{:?}", v.has);
        let v = evaluate_as(
            &r,
            &h,
            op,
            &[
                signed(
                    1,
                    "technical",
                    "alice",
                    "alice@example.com",
                    SignatureCheck::Verified,
                ),
                signed(
                    2,
                    "business",
                    "bob",
                    "bob@example.com",
                    SignatureCheck::Verified,
                ),
            ],
        );
        assert!(v.satisfied(), "{v:?}");
    }
}
