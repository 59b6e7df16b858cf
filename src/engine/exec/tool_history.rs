//! A migration folder's tool history (`[runbook] history`) in a run: read
//! at the start so the tool's applied migrations count as applied, and
//! written with each migration step (see `engine::history`).

use super::Exec;
use super::sql::SqlFailure;
use crate::engine::Outcome;
use crate::engine::history::{self, Applied};
use crate::runbook::Step;

impl Exec<'_> {
    /// Creates the tool's table if absent, refuses a history the tool left
    /// broken, and marks the steps of migrations the tool applied as
    /// applied (pgpilot's own state of a step is kept when it says applied).
    pub(super) async fn tool_history(&mut self) -> Result<(), Outcome> {
        let Some(tool) = self.s.runbook.history else {
            return Ok(());
        };
        let failed = |e: tokio_postgres::Error| {
            Outcome::Failed(format!(
                "cannot read {}'s history: {}",
                tool.as_str(),
                SqlFailure::from_pg(&e).message
            ))
        };
        let applied = history::read(self.client(), &self.s.runbook, tool)
            .await
            .map_err(failed)?;
        if let Some(why) = history::refusal(tool, &applied) {
            return self.guard("migration history", false, why).await;
        }
        // Only a history that is not refused is created or registered in.
        history::prepare(self.client(), &self.s.runbook, tool)
            .await
            .map_err(|e| {
                Outcome::Failed(format!("cannot prepare {}'s history: {e}", tool.as_str()))
            })?;
        let by_tool = history::mark_applied(&self.s.runbook, tool, &applied, &mut self.states);
        let detail = match (&applied, by_tool.is_empty()) {
            (Applied::Nothing, _) => format!("{} has recorded no migration", tool.as_str()),
            (_, true) => format!("{}'s history agrees with pgpilot's", tool.as_str()),
            (_, false) => format!(
                "applied by {} before: {}",
                tool.as_str(),
                by_tool.join(", ")
            ),
        };
        self.guard("migration history", true, detail).await
    }

    /// The step's SQL with the tool's history row written before it, in the
    /// same transaction (`applied`: the forward step; else its rollback).
    pub(super) fn with_history(
        &self,
        step: &Step,
        sql: &str,
        applied: bool,
    ) -> Result<Option<String>, SqlFailure> {
        history::record_sql(&self.s.runbook, step, applied)
            .map(|h| h.map(|h| format!("{h};\n{sql}")))
            .map_err(|e| {
                SqlFailure::plain(format!(
                    "cannot record {} in the migration tool's history: {e}",
                    step.id
                ))
            })
    }

    /// For a step in autocommit (a CONCURRENTLY statement cannot share a
    /// transaction): the history row right after the step succeeded. A
    /// failure here is told, not hidden: the step is applied, and the
    /// tool would try it again.
    pub(super) async fn history_after(
        &mut self,
        step: &Step,
        applied: bool,
    ) -> Result<(), SqlFailure> {
        let sql = history::record_sql(&self.s.runbook, step, applied).map_err(|e| {
            SqlFailure::plain(format!(
                "{} ran, but recording it in the migration tool's history failed: {e}; record it by hand so the tool does not run it again",
                step.id
            ))
        })?;
        let Some(sql) = sql else {
            return Ok(());
        };
        self.query(&sql).await.map(|_| ()).map_err(|mut f| {
            f.message = format!(
                "{} ran, but recording it in the migration tool's history failed: {}; record it by hand so the tool does not run it again",
                step.id, f.message
            );
            f
        })
    }
}
