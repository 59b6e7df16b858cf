//! One audit record: who did what to which database, when, and how it ended.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened. Serialized in snake_case (`step_start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    SessionStart,
    SessionEnd,
    /// A guard before the first change (database name, primary, environment,
    /// runbook hash, advisory lock, blockers); `outcome` says pass or fail.
    Guard,
    StepStart,
    StepSuccess,
    StepFailure,
    /// A lock_timeout (55P03) and the retry that follows it.
    Retry,
    /// A typed confirmation; `outcome` is "accepted", "wrong" or "missing".
    Confirmation,
    Skip,
    PauseAcknowledged,
    /// A server NOTICE or WARNING during a step.
    Notice,
    /// The operator cancelled the running statement (with its `step`), or
    /// another backend's query from a lock panel (`pg_cancel_backend`, no
    /// step; recorded as a termination is).
    Cancel,
    /// A backend terminated from a lock panel: `outcome` "requested" before
    /// the signal is sent, then "done", "no such backend" or "refused";
    /// `message` names the target (pid, application_name, user@client) and
    /// a refusal's reason (see `monitor::send_audited`).
    Terminate,
    RollbackStart,
    RollbackSuccess,
    RollbackFailure,
    /// Sessions found holding locks a step needs, and what was decided.
    Blockers,
    /// A `[[health]]` gate breached before a step: `message` has the gate,
    /// the value seen and the limit; `outcome` what the operator chose.
    Health,
    /// A standby replays further behind than `max_replica_lag` before a step.
    ReplicaLag,
    /// A backfill's course: its start or resume, each batch resize, pause
    /// or stop, and its progress (at most one per 1 %, at least one a minute).
    Progress,
    /// `pgpilot approve`: an approval recorded; `outcome` is its kind,
    /// `message` the approval id, hash, approver role and comment.
    Approve,
    /// `pgpilot approve --revoke`: an approval withdrawn by its approver.
    Revoke,
    /// `pgpilot restore` of a backup into a scratch database: `outcome`
    /// "started", "done" or "failed"; `message` the backup id and database.
    Restore,
    /// A `[notify]` notification not delivered (or notifications that
    /// could not start): `outcome` the event, `message` the receiver's
    /// scheme and host (never the URL, which carries a token) and why.
    NotifyFailure,
}

impl Action {
    /// Every action, in the order a session usually meets them.
    pub const ALL: [Action; 24] = [
        Action::SessionStart,
        Action::SessionEnd,
        Action::Guard,
        Action::StepStart,
        Action::StepSuccess,
        Action::StepFailure,
        Action::Retry,
        Action::Confirmation,
        Action::Skip,
        Action::PauseAcknowledged,
        Action::Notice,
        Action::Cancel,
        Action::Terminate,
        Action::RollbackStart,
        Action::RollbackSuccess,
        Action::RollbackFailure,
        Action::Blockers,
        Action::Health,
        Action::ReplicaLag,
        Action::Progress,
        Action::Approve,
        Action::Revoke,
        Action::Restore,
        Action::NotifyFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::SessionStart => "session_start",
            Action::SessionEnd => "session_end",
            Action::Guard => "guard",
            Action::StepStart => "step_start",
            Action::StepSuccess => "step_success",
            Action::StepFailure => "step_failure",
            Action::Retry => "retry",
            Action::Confirmation => "confirmation",
            Action::Skip => "skip",
            Action::PauseAcknowledged => "pause_acknowledged",
            Action::Notice => "notice",
            Action::Cancel => "cancel",
            Action::Terminate => "terminate",
            Action::RollbackStart => "rollback_start",
            Action::RollbackSuccess => "rollback_success",
            Action::RollbackFailure => "rollback_failure",
            Action::Blockers => "blockers",
            Action::Health => "health",
            Action::ReplicaLag => "replica_lag",
            Action::Progress => "progress",
            Action::Approve => "approve",
            Action::Revoke => "revoke",
            Action::Restore => "restore",
            Action::NotifyFailure => "notify_failure",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action name that is not one of [`Action::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {name:?}; use one of: {}", Action::ALL.map(Action::as_str).join(", "))]
pub struct UnknownAction {
    pub name: String,
}

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Action, UnknownAction> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction {
                name: s.to_string(),
            })
    }
}

/// The database a record is about. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// What stays the same for every record of one session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// A random id per pgpilot process run.
    pub session: String,
    /// The OS user running pgpilot.
    pub operator: String,
    /// The database role it connected as.
    pub role: Option<String>,
    pub client_host: String,
    pub target: Option<AuditTarget>,
    pub runbook: Option<String>,
    pub runbook_sha256: Option<String>,
    /// The change ticket the runbook names (`[runbook] ticket`), if any.
    pub ticket: Option<String>,
    pub rehearsal: bool,
    /// `run --emergency "REASON"`: the reason, carried by every record of
    /// the session.
    #[serde(default)]
    pub emergency: Option<String>,
}

/// What happened in one event; the log adds the context, sequence, time and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub action: Action,
    pub phase: Option<String>,
    pub step: Option<String>,
    pub sql: Option<String>,
    pub outcome: Option<String>,
    pub duration_ms: Option<u64>,
    pub rows: Option<u64>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub attempt: Option<u32>,
}

impl Event {
    pub fn new(action: Action) -> Event {
        Event {
            action,
            phase: None,
            step: None,
            sql: None,
            outcome: None,
            duration_ms: None,
            rows: None,
            sqlstate: None,
            message: None,
            attempt: None,
        }
    }
}

/// A record as stored: one JSON line locally, one row in `pgpilot.audit_log`.
///
/// `hash` is the SHA-256 of `prev_hash` and the record's other fields, so any
/// edit, insertion or deletion breaks the chain that `audit verify` walks; the
/// exact rule is [`crate::audit::chain::record_hash`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub session: String,
    pub operator: String,
    pub role: Option<String>,
    pub client_host: String,
    pub target: Option<AuditTarget>,
    pub runbook: Option<String>,
    pub runbook_sha256: Option<String>,
    /// Absent in lines written before the field existed; the hash covers the
    /// line as written, so those still verify.
    #[serde(default)]
    pub ticket: Option<String>,
    pub phase: Option<String>,
    pub step: Option<String>,
    pub action: Action,
    pub sql: Option<String>,
    pub sql_sha256: Option<String>,
    pub outcome: Option<String>,
    pub duration_ms: Option<u64>,
    pub rows: Option<u64>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub attempt: Option<u32>,
    pub rehearsal: bool,
    /// The reason of an emergency run (`run --emergency`), on every record
    /// of its session. Absent (not null) otherwise, so lines written before
    /// the field existed hash as they were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}
