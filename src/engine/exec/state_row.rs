//! `pgpilot.step_state` rows as the engine writes them.

use std::time::Duration;

use tokio_postgres::Client;

use super::Exec;
use super::sql::SqlFailure;
use crate::engine::Outcome;
use crate::engine::state::{self, Status, StepState, UPSERT_SQL};
use crate::runbook::Step;

impl Exec<'_> {
    /// Keeps the in-memory view of the target's state in step with what was written.
    pub(super) fn mark(&mut self, step: &Step, status: Status) {
        let st = self
            .states
            .entry(step.id.clone())
            .or_insert_with(|| StepState {
                step: step.id.clone(),
                status,
                step_sha256: state::step_hash(step),
                operator: String::new(),
                role: String::new(),
                client_host: String::new(),
                captured: None,
                rows: None,
                duration_ms: None,
                updated_at: String::new(),
                updated_us: 0,
                cursor: None,
                rows_done: None,
                rows_total: None,
                backup: None,
            });
        st.status = status;
        st.step_sha256 = state::step_hash(step);
    }

    /// Records a status outside a step transaction (pause, skip, autocommit bookkeeping).
    pub(super) async fn write_state_autocommit(
        &mut self,
        step: &Step,
        status: Status,
        rows: Option<u64>,
        duration: Option<Duration>,
    ) -> Result<(), Outcome> {
        let sql = self.state_params(step, status, rows, duration);
        self.exec_state(&sql).await.map_err(|e| {
            Outcome::Failed(format!(
                "cannot record the state of {}: {}",
                step.id, e.message
            ))
        })?;
        self.mark(step, status);
        Ok(())
    }

    pub(super) fn state_params(
        &self,
        step: &Step,
        status: Status,
        rows: Option<u64>,
        duration: Option<Duration>,
    ) -> StateWrite {
        let captured = step.capture.as_ref().and_then(|name| {
            self.captured
                .get(name)
                .map(|v| serde_json::json!({ name: v }).to_string())
        });
        StateWrite {
            runbook: self.s.runbook.id.clone(),
            step: step.id.clone(),
            status: status.as_str(),
            step_sha: state::step_hash(step),
            runbook_sha: self.s.runbook.sha256.clone(),
            operator: self.s.recorder.operator().to_string(),
            host: self.s.recorder.client_host().to_string(),
            captured,
            rows: rows.map(|r| r as i64),
            duration_ms: duration.map(|d| d.as_millis() as i64),
            timed_by_server: false,
        }
    }

    pub(super) async fn exec_state(&mut self, w: &StateWrite) -> Result<(), SqlFailure> {
        let upsert = self.upsert_statement().await?;
        upsert_state(self.client(), &upsert, w).await
    }

    /// The state upsert, prepared once per session: a parse and describe
    /// less per step.
    pub(super) async fn upsert_statement(
        &mut self,
    ) -> Result<tokio_postgres::Statement, SqlFailure> {
        if let Some(st) = &self.upsert {
            return Ok(st.clone());
        }
        let st = self
            .s
            .conn
            .client
            .prepare(UPSERT_SQL)
            .await
            .map_err(|e| SqlFailure::from_pg(&e))?;
        self.upsert = Some(st.clone());
        Ok(st)
    }
}

pub(super) struct StateWrite {
    pub(super) runbook: String,
    pub(super) step: String,
    pub(super) status: &'static str,
    pub(super) step_sha: String,
    pub(super) runbook_sha: String,
    pub(super) operator: String,
    pub(super) host: String,
    pub(super) captured: Option<String>,
    pub(super) rows: Option<i64>,
    pub(super) duration_ms: Option<i64>,
    /// The server measures the duration (see `UPSERT_SQL`).
    pub(super) timed_by_server: bool,
}

pub(super) async fn upsert_state(
    client: &Client,
    upsert: &tokio_postgres::Statement,
    w: &StateWrite,
) -> Result<(), SqlFailure> {
    client
        .execute(
            upsert,
            &[
                &w.runbook,
                &w.step,
                &w.status,
                &w.step_sha,
                &w.runbook_sha,
                &w.operator,
                &w.host,
                &w.captured,
                &w.rows,
                &w.duration_ms,
                &w.timed_by_server,
            ],
        )
        .await
        .map(|_| ())
        .map_err(|e| SqlFailure::from_pg(&e))
}
