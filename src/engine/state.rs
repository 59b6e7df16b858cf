//! What is applied on a target, kept in the target itself (`pgpilot.step_state`)
//! and written in the same transaction as the step, so "applied" is exactly
//! true after any crash.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::runbook::{Step, StepBody};

/// The state table as version 1 of pgpilot's schema created it (see
/// `engine::schema`, which owns every change to it).
pub const SCHEMA_SQL: &str = "
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS pgpilot;
CREATE TABLE IF NOT EXISTS pgpilot.step_state (
    runbook_id     text NOT NULL,
    step_id        text NOT NULL,
    status         text NOT NULL,
    step_sha256    text NOT NULL,
    runbook_sha256 text NOT NULL,
    operator       text NOT NULL,
    role           text NOT NULL DEFAULT current_user,
    client_host    text NOT NULL,
    captured       text,
    rows           bigint,
    duration_ms    bigint,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (runbook_id, step_id)
);
RESET client_min_messages";

/// A step's state on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A change or backup step committed.
    Applied,
    /// A check or verify step passed.
    Passed,
    /// A pause acknowledged.
    Acknowledged,
    Skipped,
    /// An autocommit step started and did not record its end: in doubt.
    InProgress,
    /// A rollback in autocommit started (its SQL may have run or not) and
    /// did not record its end: in doubt. A later run applies the step again
    /// (through the in-doubt check), a later rollback finishes it. New in
    /// schema version 2.
    RollingBack,
    RolledBack,
    /// A step in a transaction that failed (an error, an unmet expectation,
    /// its lock not got after its retries, a cancel): rolled back, nothing
    /// of it applied; a later run runs it again. New in schema version 3.
    Failed,
}

impl Status {
    /// Every status, as the schema's CHECK lists them (`engine::schema`).
    pub const ALL: [Status; 8] = [
        Status::Applied,
        Status::Passed,
        Status::Acknowledged,
        Status::Skipped,
        Status::InProgress,
        Status::RollingBack,
        Status::RolledBack,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Passed => "passed",
            Status::Acknowledged => "acknowledged",
            Status::Skipped => "skipped",
            Status::InProgress => "in_progress",
            Status::RollingBack => "rolling_back",
            Status::RolledBack => "rolled_back",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepState {
    pub step: String,
    pub status: Status,
    pub step_sha256: String,
    pub operator: String,
    pub role: String,
    pub client_host: String,
    pub captured: Option<String>,
    pub rows: Option<i64>,
    pub duration_ms: Option<i64>,
    pub updated_at: String,
    /// A backfill's last key walked (text), keys walked, and the estimate of
    /// the table's keys then (schema version 4; NULL for other steps).
    pub cursor: Option<String>,
    pub rows_done: Option<i64>,
    pub rows_total: Option<i64>,
    /// A dump backup step's id (schema version 6; NULL for other steps).
    pub backup: Option<crate::backup::BackupId>,
    /// `updated_at` in microseconds since the epoch, to order two states
    /// written in the same second (0 for a state this session wrote).
    #[serde(skip)]
    pub updated_us: i64,
}

/// A hash of what a step does (kind and SQL), so a changed applied step is
/// noticed while edits to pending steps (or comments elsewhere) are not.
pub fn step_hash(step: &Step) -> String {
    let mut h = Sha256::new();
    h.update(step.kind.as_str());
    h.update([0]);
    match &step.body {
        StepBody::Sql(sql) => h.update(sql.text.as_bytes()),
        StepBody::Instructions(text) => h.update(text.as_bytes()),
        StepBody::Dump(d) => {
            for t in &d.tables {
                h.update(t.to_string().as_bytes());
                h.update([0]);
            }
        }
    }
    // The rollback is left out: fixing an applied step's rollback must not
    // lock the incident responder out of running it.
    hex::encode(h.finalize())
}

/// Every step's state for a runbook, by step id. An absent table means nothing applied.
pub async fn load(
    client: &Client,
    runbook_id: &str,
) -> Result<HashMap<String, StepState>, tokio_postgres::Error> {
    let exists = client
        .query_one(
            "SELECT to_regclass('pgpilot.step_state') IS NOT NULL AS present",
            &[],
        )
        .await?
        .try_get::<_, bool>("present")?;
    if !exists {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT step_id, status, step_sha256, operator, role, client_host, captured, rows, duration_ms,
                    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at,
                    (extract(epoch FROM updated_at) * 1000000)::bigint AS updated_us,
                    to_jsonb(s) ->> 'cursor' AS cursor,
                    (to_jsonb(s) ->> 'rows_done')::bigint AS rows_done,
                    (to_jsonb(s) ->> 'rows_total')::bigint AS rows_total,
                    to_jsonb(s) ->> 'backup' AS backup
               FROM pgpilot.step_state s WHERE runbook_id = $1",
            &[&runbook_id],
        )
        .await?;
    let mut states = HashMap::new();
    for r in rows {
        // A status this binary does not know is left out, as before.
        let Some(status) = Status::parse(r.try_get::<_, &str>("status")?) else {
            continue;
        };
        let step: String = r.try_get("step_id")?;
        states.insert(
            step.clone(),
            StepState {
                step,
                status,
                step_sha256: r.try_get("step_sha256")?,
                operator: r.try_get("operator")?,
                role: r.try_get("role")?,
                client_host: r.try_get("client_host")?,
                captured: r.try_get("captured")?,
                rows: r.try_get("rows")?,
                duration_ms: r.try_get("duration_ms")?,
                updated_at: r.try_get("updated_at")?,
                updated_us: r.try_get("updated_us")?,
                cursor: r.try_get("cursor")?,
                rows_done: r.try_get("rows_done")?,
                rows_total: r.try_get("rows_total")?,
                backup: r
                    .try_get::<_, Option<String>>("backup")?
                    .and_then(|j| serde_json::from_str(&j).ok()),
            },
        );
    }
    Ok(states)
}

/// The upsert that records a step's new status; run inside the step's
/// transaction. With `$11` true the duration is the transaction's so far,
/// measured by the server (when the row is sent before the step's results
/// are seen).
pub const UPSERT_SQL: &str = "
INSERT INTO pgpilot.step_state
    (runbook_id, step_id, status, step_sha256, runbook_sha256, operator, client_host, captured, rows, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $11::boolean
    THEN (1000 * extract(epoch FROM clock_timestamp() - transaction_timestamp()))::bigint
    ELSE $10::bigint END)
ON CONFLICT (runbook_id, step_id) DO UPDATE SET
    status = EXCLUDED.status, step_sha256 = EXCLUDED.step_sha256,
    runbook_sha256 = EXCLUDED.runbook_sha256, operator = EXCLUDED.operator,
    role = current_user, client_host = EXCLUDED.client_host, captured = EXCLUDED.captured,
    rows = EXCLUDED.rows, duration_ms = EXCLUDED.duration_ms, updated_at = now()";
