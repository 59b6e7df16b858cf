//! A dump backup step: pg_dump of its tables in a process of its own (see
//! `crate::backup`), verified, its id in the audit and the step's state.

use std::time::Instant;

use super::recover::StepEnd;
use super::{Exec, step_event};
use crate::audit::record::Action;
use crate::backup::{self, BackupError, BackupId, ToolConn};
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome, StepOutcome};
use crate::pg::Severity;
use crate::runbook::{Dump, Phase, Step};

/// Why a rehearsal does not dump (docs/safety-model.md says the same).
pub(crate) const REHEARSAL_NOTE: &str = "a dump runs pg_dump in a session of its own, which could neither see the rehearsal's changes nor wait on its locks; skipped in rehearsal";

/// Ends the session of a pg_dump pgpilot killed (found by its own
/// application_name; a role may end its own sessions).
const END_DUMP_SESSION_SQL: &str = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()";

/// Records the backup id of a step (schema version 6's column).
const BACKUP_STATE_SQL: &str =
    "UPDATE pgpilot.step_state SET backup = $3 WHERE runbook_id = $1 AND step_id = $2";

impl Exec<'_> {
    pub(super) async fn dump_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        dump: &Dump,
    ) -> Result<StepEnd, Outcome> {
        if self.rehearsal_open {
            self.emit(EngineEvent::StepSkipped {
                step: step.id.clone(),
                reason: REHEARSAL_NOTE.into(),
            });
            let mut ev = step_event(Action::Skip, phase, step);
            ev.message = Some(REHEARSAL_NOTE.into());
            self.record(ev).await;
            return Ok(StepEnd::Done);
        }
        self.emit(EngineEvent::StepStarted {
            step: step.id.clone(),
            attempt: 1,
            of: 1,
        });
        let tables: Vec<String> = dump.tables.iter().map(|t| t.to_string()).collect();
        let mut ev = step_event(Action::StepStart, phase, step);
        ev.message = Some(format!("pg_dump --format=custom of {}", tables.join(", ")));
        ev.attempt = Some(1);
        self.record(ev).await;
        let started = Instant::now();
        match self.take_dump(step, dump).await {
            Err(BackupError::Cancelled) => {
                let message = BackupError::Cancelled.to_string();
                self.last_failed = Some(step.id.clone());
                let mut ev = step_event(Action::StepFailure, phase, step);
                ev.duration_ms = Some(started.elapsed().as_millis() as u64);
                ev.outcome = Some("cancelled".into());
                ev.message = Some(message.clone());
                self.record(ev).await;
                self.emit(EngineEvent::StepFailed {
                    step: step.id.clone(),
                    sqlstate: None,
                    message,
                });
                Err(Outcome::Interrupted)
            }
            Ok(id) => {
                self.write_state_autocommit(step, Status::Applied, None, Some(started.elapsed()))
                    .await?;
                let json = serde_json::to_string(&id).unwrap_or_default();
                if let Err(e) = self
                    .client()
                    .execute(BACKUP_STATE_SQL, &[&self.s.runbook.id, &step.id, &json])
                    .await
                {
                    return Err(Outcome::Failed(format!(
                        "cannot record the backup of {} in its state: {}",
                        step.id,
                        crate::pg::redact(&e.to_string())
                    )));
                }
                let mut ev = step_event(Action::StepSuccess, phase, step);
                ev.duration_ms = Some(started.elapsed().as_millis() as u64);
                ev.outcome = Some("verified".into());
                ev.message = Some(format!("backup {id}"));
                self.record(ev).await;
                self.emit(EngineEvent::Notice {
                    step: Some(step.id.clone()),
                    severity: Severity::Info,
                    message: format!(
                        "backup verified (pg_restore --list shows {}): {id}",
                        tables.join(", ")
                    ),
                });
                self.emit(EngineEvent::StepDone {
                    step: step.id.clone(),
                    outcome: StepOutcome::Applied,
                    duration: started.elapsed(),
                    rows: None,
                    captured: None,
                });
                Ok(StepEnd::Done)
            }
            Err(e) => {
                let message = crate::text::one_line(&crate::text::redact(&e.to_string()));
                self.last_failed = Some(step.id.clone());
                let mut ev = step_event(Action::StepFailure, phase, step);
                ev.duration_ms = Some(started.elapsed().as_millis() as u64);
                ev.message = Some(message.clone());
                self.record(ev).await;
                self.emit(EngineEvent::StepFailed {
                    step: step.id.clone(),
                    sqlstate: None,
                    message: message.clone(),
                });
                Err(Outcome::Failed(format!("step {}: {message}", step.id)))
            }
        }
    }

    async fn take_dump(&mut self, step: &Step, dump: &Dump) -> Result<BackupId, BackupError> {
        let num: String = self
            .client()
            .query_one("SHOW server_version_num", &[])
            .await
            .and_then(|r| r.try_get("server_version_num"))
            .map_err(|e| BackupError::Other(crate::pg::redact(&e.to_string())))?;
        let server = backup::server_major(num.trim().parse().unwrap_or(0));
        let (pg_dump, pg_restore) = tokio::task::spawn_blocking(move || {
            Ok::<_, BackupError>((
                backup::find("pg_dump", server)?,
                backup::find("pg_restore", server)?,
            ))
        })
        .await
        .map_err(|e| BackupError::Other(e.to_string()))??;
        let conn = ToolConn::from_spec(&self.s.spec);
        let result = backup::take_dump(
            &pg_dump,
            &pg_restore,
            &conn,
            &dump.tables,
            &self.s.runbook.id,
            &step.id,
            dump.timeout,
            self.io.cancelled(),
        )
        .await;
        if let Err(BackupError::TimedOut(_) | BackupError::Cancelled) = &result {
            // A killed pg_dump's backend waiting on a lock stays in the
            // lock queue until the lock is granted (only then does it find
            // its client gone): end it, so it queues nobody behind it.
            let _ = self
                .client()
                .execute(END_DUMP_SESSION_SQL, &[&conn.application_name])
                .await;
        }
        result
    }
}
