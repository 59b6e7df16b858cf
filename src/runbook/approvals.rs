//! `[approvals]`: which kinds of approval a run needs, by whom, and how long
//! before the run they must have been given (the seeds' review policy).

use std::time::Duration;

use serde::Serialize;

use super::{ChangeType, Risk};

/// `[approvals]` as the runbook says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalsSection {
    /// The kinds that must each have an approval, in the runbook's order.
    pub required: Vec<String>,
    /// Different kinds must come from different roles (default true).
    pub distinct_approvers: bool,
    /// How old each approval must be when the run starts; `None` keeps the
    /// seed's defaults in production and no notice elsewhere.
    pub notice: Option<Notice>,
    /// `allowed_signers = "FILE"`: only approvals signed with a key this
    /// file lists (ssh-keygen's format, git's model) count.
    pub allowed_signers: Option<AllowedSigners>,
}

/// The allowed-signers file as read when the runbook was loaded: its
/// name as written (relative to the runbook's folder) and its text. Both
/// feed the approval hash (`governance::hash`), so changing who may
/// approve voids the approvals; the place on this disk does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedSigners {
    pub written: String,
    #[serde(skip)]
    pub text: String,
}

/// How old an approval must be when the run starts, by the runbook's risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Notice {
    #[serde(serialize_with = "secs")]
    pub low: Duration,
    #[serde(serialize_with = "secs")]
    pub medium: Duration,
    #[serde(serialize_with = "secs")]
    pub high: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Notice {
    /// The seed's advance notice (database-change-approval): low 24 h,
    /// medium 48 h, high one week.
    pub const SEED: Notice = Notice {
        low: Duration::from_secs(24 * 3600),
        medium: Duration::from_secs(48 * 3600),
        high: Duration::from_secs(7 * 24 * 3600),
    };

    pub fn for_risk(&self, risk: Risk) -> Duration {
        match risk {
            Risk::Low => self.low,
            Risk::Medium => self.medium,
            Risk::High => self.high,
        }
    }
}

/// The seed's review table (schema-change-policy) by change class: the kinds
/// a production run needs when the runbook has no `[approvals]`.
pub fn seed_required(change_type: ChangeType) -> &'static [&'static str] {
    match change_type {
        ChangeType::Patch => &["technical"],
        ChangeType::Minor => &["technical", "business"],
        ChangeType::Major => &["technical", "business", "security", "cab"],
    }
}

/// A kind is a short lower-case word: it is typed on the command line and
/// compared exactly.
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 32
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
