//! A step that cannot run in a transaction block, and the invalid indexes
//! a failed or interrupted CONCURRENTLY build leaves.

use super::Exec;
use super::attempt::{RESET_TIMEOUTS, session_timeouts};
use super::expect::{StepResult, evaluate};
use super::sql::{QUERY_CANCELED, SqlFailure};
use crate::analysis::{RelationName, StatementAnalysis, StepAnalysis};
use crate::engine::index::{IndexState, index_state, invalid};
use crate::engine::state::Status;
use crate::engine::{Ask, EngineEvent, Outcome, failpoint};
use crate::pg::Severity;
use crate::runbook::{Settings, Step};

impl Exec<'_> {
    /// A statement that cannot run in a transaction block: its state is
    /// written before (in_progress) and after (applied).
    pub(super) async fn autocommit_once(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
        analyzed: &[StatementAnalysis],
    ) -> Result<StepResult, SqlFailure> {
        let w = self.state_params(step, Status::InProgress, None, None);
        self.exec_state(&w).await?;
        failpoint::point("autocommit-in-progress");
        self.query(&session_timeouts(settings)).await?;
        // Each statement on its own: a multi-statement query string would run
        // as one implicit transaction, which these statements cannot be in.
        let statements = pg_query::split_with_parser(sql)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .unwrap_or_else(|_| vec![sql.to_string()]);
        let mut result = Ok(Vec::new());
        for stmt in &statements {
            match self.query(stmt).await {
                Ok(m) => result = Ok(m),
                Err(f) => {
                    result = Err(f);
                    break;
                }
            }
        }
        let messages = match result {
            Ok(m) => m,
            Err(f) => {
                // A CONCURRENTLY build that failed leaves an INVALID index behind;
                // drop it so the retry (or a later run) starts clean. Still
                // under the step's timeouts: DROP INDEX CONCURRENTLY waits for
                // every transaction holding a lock on the table, and the one
                // the build timed out on often does (a report reading it).
                let states = self.index_states(step, analyzed).await;
                self.drop_invalid_indexes(&invalid(&states)).await;
                let _ = self.client().batch_execute(RESET_TIMEOUTS).await;
                return Err(f);
            }
        };
        let _ = self.client().batch_execute(RESET_TIMEOUTS).await;
        failpoint::point("autocommit-after-statement");
        let result = evaluate(
            step,
            &messages,
            &mut self.captured,
            self.pinned_capture.as_deref(),
            &self.fresh_captures,
        )?;
        let w = self.state_params(step, Status::Applied, Some(result.rows), None);
        let wrote = self.exec_state(&w).await;
        let wrote = match wrote {
            // A yield's cancel request that reached the server after the
            // statement was done cancels the next thing it runs, once: this
            // write, not the build, which is there. Written again.
            Err(f)
                if self.queue.yielded.is_some()
                    && !f.cancelled_by_operator
                    && f.sqlstate.as_deref() == Some(QUERY_CANCELED) =>
            {
                self.exec_state(&w).await
            }
            other => other,
        };
        wrote?;
        failpoint::point("autocommit-applied");
        Ok(result)
    }

    /// What the catalog says of each named index the statements build.
    pub(super) async fn index_states(
        &self,
        step: &Step,
        statements: &[StatementAnalysis],
    ) -> Vec<IndexState> {
        let mut out = Vec::new();
        for build in statements.iter().filter_map(|s| s.builds_index.as_ref()) {
            let state = index_state(self.client(), build).await;
            if let IndexState::Unknown(reason) = &state {
                self.emit(EngineEvent::Notice {
                    step: Some(step.id.clone()),
                    severity: Severity::Warning,
                    message: format!(
                        "could not read pg_index for index {} on {}: {reason}; look for it by hand (\\d {})",
                        crate::analysis::quote_ident(&build.name),
                        build.table,
                        build.table
                    ),
                });
            }
            out.push(state);
        }
        out
    }

    pub(super) async fn drop_invalid_indexes(&mut self, invalid: &[RelationName]) {
        for name in invalid {
            let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {name}");
            let done = self.client().batch_execute(&sql).await;
            let (severity, message) = match done {
                Ok(()) => (
                    Severity::Info,
                    format!("dropped the invalid index {name} left by the failed build"),
                ),
                Err(e) => (
                    Severity::Warning,
                    format!(
                        "could not drop the invalid index {name}: {}; drop it by hand once the sessions holding locks on its table end: {sql}",
                        crate::pg::redact(
                            &e.as_db_error()
                                .map_or_else(|| e.to_string(), |d| d.message().to_string())
                        )
                    ),
                ),
            };
            self.emit(EngineEvent::Notice {
                step: None,
                severity,
                message,
            });
        }
    }

    /// A step that started on an earlier run and never recorded its end
    /// (`in_progress`), or whose rollback did not (`rolling_back`).
    /// Returns true only when every index it builds is there, by its exact
    /// name on its table, and valid: "applied" is never claimed for an object
    /// that is not there.
    pub(super) async fn in_doubt(
        &mut self,
        step: &Step,
        a: &StepAnalysis,
        doubt: Status,
    ) -> Result<bool, Outcome> {
        let what = match doubt {
            Status::RollingBack => "its rollback",
            _ => "it",
        };
        self.emit(EngineEvent::Notice {
            step: Some(step.id.clone()),
            severity: Severity::Warning,
            message: format!(
                "step {}: {what} was interrupted on an earlier run (state {})",
                step.id,
                doubt.as_str()
            ),
        });
        let states = self.index_states(step, &a.statements).await;
        let left_invalid = invalid(&states);
        if left_invalid.is_empty() {
            let all_valid = !states.is_empty() && states.iter().all(|s| *s == IndexState::Valid);
            return Ok(all_valid);
        }
        let names = left_invalid
            .iter()
            .map(RelationName::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let phrase = format!("drop invalid index {names}");
        let what = format!(
            "the interrupted build left INVALID index {names}; it must be dropped before building again"
        );
        self.ask_phrase(
            Some(&step.id),
            Ask::Confirm {
                step: step.id.clone(),
                phrase,
                what,
            },
        )
        .await?;
        self.drop_invalid_indexes(&left_invalid).await;
        Ok(false)
    }
}
