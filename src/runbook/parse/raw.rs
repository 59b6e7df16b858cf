//! The runbook file as TOML deserialises it, before validation: every key
//! a runbook may have, with its place in the file (`Spanned`).

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) runbook: Option<Spanned<RawHeader>>,
    pub(super) target: Option<RawTarget>,
    pub(super) settings: Option<Spanned<RawSettings>>,
    pub(super) approvals: Option<Spanned<RawApprovals>>,
    pub(super) notify: Option<Spanned<RawNotify>>,
    pub(super) lint: Option<RawLint>,
    #[serde(default)]
    pub(super) health: Vec<Spanned<RawHealth>>,
    #[serde(default)]
    pub(super) phase: Vec<Spanned<RawPhase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) name: Option<Spanned<String>>,
    pub(super) sql: Option<Spanned<String>>,
    pub(super) max: Option<Spanned<Number>>,
    pub(super) min: Option<Spanned<Number>>,
}

/// A bound of a health gate: TOML writes 20 and 0.5 differently.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(super) enum Number {
    Integer(i64),
    Float(f64),
}

impl Number {
    pub(super) fn value(self) -> f64 {
        match self {
            Number::Integer(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    pub(super) id: Option<Spanned<String>>,
    pub(super) title: Option<Spanned<String>>,
    pub(super) description: Option<String>,
    pub(super) change_type: Option<Spanned<String>>,
    pub(super) risk: Option<Spanned<String>>,
    pub(super) ticket: Option<String>,
    pub(super) sql_root: Option<Spanned<String>>,
    pub(super) history: Option<Spanned<String>>,
    pub(super) version: Option<Spanned<String>>,
    pub(super) requires_version: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    #[serde(default)]
    pub(super) environments: Vec<String>,
    pub(super) database: Option<String>,
    pub(super) require_primary: Option<bool>,
    #[serde(default)]
    pub(super) windows: Vec<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    /// The PostgreSQL major version the target runs, for `check` offline.
    pub(super) server_version: Option<Spanned<i64>>,
}

/// `[lint]`: opt-in finding rules this runbook is held to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLint {
    pub(super) enable: Option<Vec<Spanned<String>>>,
}

/// `[approvals]`: who must approve this exact runbook, and how early.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    pub(super) required: Option<Vec<Spanned<String>>>,
    pub(super) distinct_approvers: Option<bool>,
    pub(super) notice: Option<Spanned<RawNotice>>,
    /// A file in the runbook's folder naming whose SSH keys may approve.
    pub(super) allowed_signers: Option<Spanned<String>>,
}

/// `notice = { low = "24h", medium = "48h", high = "7d" }`: a missing risk
/// keeps the seed's default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotice {
    pub(super) low: Option<Spanned<String>>,
    pub(super) medium: Option<Spanned<String>>,
    pub(super) high: Option<Spanned<String>>,
}

/// `[notify]`: one of the three webhook keys, and the events.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) webhook_env: Option<Spanned<String>>,
    pub(super) webhook_file: Option<Spanned<String>>,
    pub(super) webhook: Option<Spanned<String>>,
    pub(super) events: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    pub(super) lock_timeout: Option<Spanned<String>>,
    pub(super) statement_timeout: Option<Spanned<String>>,
    pub(super) lock_retries: Option<Spanned<i64>>,
    pub(super) retry_backoff: Option<Spanned<String>>,
    pub(super) long_transaction: Option<Spanned<String>>,
    pub(super) on_blockers: Option<Spanned<String>>,
    /// `[settings]` only: a step has no key for it.
    pub(super) rehearsal_max_queue: Option<Spanned<String>>,
    pub(super) max_replica_lag: Option<Spanned<String>>,
    pub(super) max_queue_stall: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhase {
    pub(super) id: Option<Spanned<String>>,
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) step: Vec<Spanned<RawStep>>,
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so the per-step
// setting overrides are spelled out here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) id: Option<Spanned<String>>,
    pub(super) title: Option<String>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) sql: Option<Spanned<String>>,
    pub(super) file: Option<Spanned<String>>,
    /// `-- migrate:NAME` section of `file` (dbmate's up/down).
    pub(super) section: Option<Spanned<String>>,
    /// One statement (from 1) of `file` or its section.
    pub(super) statement: Option<Spanned<i64>>,
    /// The version of the tool's migration this step runs.
    pub(super) migration: Option<Spanned<String>>,
    pub(super) instructions: Option<Spanned<String>>,
    pub(super) expect: Option<Spanned<RawExpect>>,
    pub(super) capture: Option<Spanned<String>>,
    pub(super) rollback: Option<Spanned<String>>,
    pub(super) rollback_file: Option<Spanned<String>>,
    /// A section of `rollback_file`, or of `file` when no `rollback_file`.
    pub(super) rollback_section: Option<Spanned<String>>,
    pub(super) transaction: Option<Spanned<bool>>,
    pub(super) confirm: Option<Spanned<String>>,
    pub(super) explain: Option<String>,
    pub(super) irreversible: Option<Spanned<String>>,
    /// Finding rules this step's statements may raise without a word.
    pub(super) ignore: Option<Spanned<Vec<String>>>,
    pub(super) lock_timeout: Option<Spanned<String>>,
    pub(super) statement_timeout: Option<Spanned<String>>,
    pub(super) lock_retries: Option<Spanned<i64>>,
    pub(super) retry_backoff: Option<Spanned<String>>,
    pub(super) long_transaction: Option<Spanned<String>>,
    pub(super) on_blockers: Option<Spanned<String>>,
    pub(super) table: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) batch_size: Option<Spanned<i64>>,
    pub(super) target_batch_time: Option<Spanned<String>>,
    pub(super) batch_pause: Option<Spanned<String>>,
    pub(super) max_replica_lag: Option<Spanned<String>>,
    pub(super) max_queue_stall: Option<Spanned<String>>,
    pub(super) dump: Option<Spanned<RawDump>>,
    pub(super) no_backup: Option<Spanned<String>>,
}

/// `dump = { tables = ["users"] }` of a backup step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDump {
    pub(super) tables: Option<Vec<Spanned<String>>>,
    /// How long pg_dump may take before it is killed.
    pub(super) timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub(super) rows: Option<Spanned<i64>>,
    pub(super) scalar: Option<Spanned<ScalarValue>>,
    pub(super) empty: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ScalarValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl ScalarValue {
    pub(super) fn into_text(self) -> String {
        match self {
            ScalarValue::Text(s) => s,
            ScalarValue::Integer(i) => i.to_string(),
            ScalarValue::Float(f) => f.to_string(),
            ScalarValue::Bool(b) => if b { "t" } else { "f" }.to_string(),
        }
    }
}

impl RawStep {
    /// Where the step's rollback is written, by whichever key.
    pub(super) fn rollback_at(&self) -> Option<usize> {
        [&self.rollback, &self.rollback_file, &self.rollback_section]
            .into_iter()
            .flatten()
            .map(|r| r.span().start)
            .min()
    }

    pub(super) fn expect_at(&self) -> usize {
        self.expect.as_ref().map(|e| e.span().start).unwrap_or(0)
    }
}
