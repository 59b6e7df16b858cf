//! A forward SQL step: values, confirmation, blocker guard, in-doubt check,
//! then its attempts, retried on 55P03.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::sql::{LOCK_NOT_AVAILABLE, NO_ACTIVE_TRANSACTION, QUERY_CANCELED, SqlFailure};
use super::{Exec, Part};
use crate::analysis::{self, StepAnalysis};
use crate::audit::record::{Action, Event};
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome, StepOutcome, failpoint, rehearse};
use crate::runbook::{Phase, Settings, Step, StepKind, format_duration, vars};

impl Exec<'_> {
    /// The SQL that will run, with the captured values in it, and the
    /// analysis of exactly that SQL (see `analysis::reanalyze`). A value
    /// that would change the statements refuses the step.
    pub(super) fn with_values<'b>(
        &self,
        step: &Step,
        a: &'b StepAnalysis,
        text: &str,
        part: Part,
    ) -> Result<(String, Cow<'b, StepAnalysis>), Outcome> {
        let what = match part {
            Part::Step => format!("step {}", step.id),
            Part::Rollback => format!("rollback of {}", step.id),
        };
        if !text.contains("{{") {
            return Ok((text.to_string(), Cow::Borrowed(a)));
        }
        let sql = vars::substitute_sql(text, &self.captured).map_err(|e| match e {
            vars::SubstituteError::Missing(_) => {
                Outcome::Failed(format!("{what}: {e}; run the step that captures it first"))
            }
            _ => Outcome::Refused(format!("{what}: {e}")),
        })?;
        let resolved = match part {
            Part::Step => analysis::reanalyze(step, a, Some(&sql), None),
            Part::Rollback => analysis::reanalyze(step, a, None, Some(&sql)),
        }
        .map_err(|m| Outcome::Refused(format!("{what}: {m}")))?;
        Ok((sql, Cow::Owned(resolved)))
    }

    pub(super) async fn sql_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
        previous: Option<Status>,
    ) -> Result<(), Outcome> {
        let Some(sql) = step.sql() else { return Ok(()) };
        let (text, resolved) = self.with_values(step, a, &sql.text, Part::Step)?;
        let a = resolved.as_ref();
        if let Some(phrase) = &a.confirm {
            self.confirm(step, phrase, &a.statements).await?;
        }
        self.blocker_guard(phase, step, a).await?;
        if previous == Some(Status::InProgress)
            && !self.rehearsal_open
            && self.in_doubt(step, a).await?
        {
            self.write_state_autocommit(step, Status::Applied, None, None)
                .await?;
            let mut ev = Event::new(Action::StepSuccess);
            ev.phase = Some(phase.id.clone());
            ev.step = Some(step.id.clone());
            ev.outcome = Some("completed on an earlier run".into());
            self.record(ev).await;
            self.emit(EngineEvent::StepDone {
                step: step.id.clone(),
                outcome: StepOutcome::Applied,
                duration: Duration::ZERO,
                rows: None,
                captured: None,
            });
            return Ok(());
        }
        let (text, autocommit) = if self.rehearsal_open && !a.transactional {
            match rehearse::transactional_form(&text) {
                Some(t) => {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: "INFO".into(),
                        message: format!("rehearsal runs it in its transactional form: {t}"),
                    });
                    (t, false)
                }
                None => {
                    let reason =
                        "cannot run inside the rehearsal's transaction; skipped in rehearsal"
                            .to_string();
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    });
                    let mut ev = Event::new(Action::Skip);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.message = Some(reason);
                    self.record(ev).await;
                    return Ok(());
                }
            }
        } else {
            (text, !a.transactional)
        };
        let settings = step.settings.clone();
        let of = settings.lock_retries + 1;
        let started = Instant::now();
        for attempt in 1..=of {
            self.emit(EngineEvent::StepStarted {
                step: step.id.clone(),
                attempt,
                of,
            });
            if attempt == 1 {
                let mut ev = Event::new(Action::StepStart);
                ev.phase = Some(phase.id.clone());
                ev.step = Some(step.id.clone());
                ev.sql = Some(text.clone());
                ev.attempt = Some(attempt);
                if autocommit {
                    // It commits itself: on disk before it is sent.
                    self.record(ev).await;
                } else {
                    // Synced while the statements run; COMMIT waits for it.
                    self.s.recorder.write_ahead(ev).await;
                }
            }
            if let Some(e) = self.s.recorder.local_error() {
                return Err(Outcome::Failed(format!(
                    "cannot write the local audit log ({e}); pgpilot runs nothing it cannot record"
                )));
            }
            failpoint::point("step-start");
            let attempt_started = Instant::now();
            let result = if autocommit {
                self.autocommit_once(step, &text, &settings, &a.statements)
                    .await
            } else {
                self.transaction_once(step, &text, &settings).await
            };
            self.drain_notices(phase, step).await;
            match result {
                Ok(r) => {
                    let duration = started.elapsed();
                    let outcome = match (self.rehearsal_open, step.kind) {
                        (true, _) => StepOutcome::Rehearsed,
                        (false, StepKind::Check | StepKind::Verify) => StepOutcome::Passed,
                        _ => StepOutcome::Applied,
                    };
                    match outcome {
                        StepOutcome::Applied => self.mark(step, Status::Applied),
                        StepOutcome::Passed => self.mark(step, Status::Passed),
                        _ => {}
                    }
                    let mut ev = Event::new(Action::StepSuccess);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.duration_ms = Some(duration.as_millis() as u64);
                    ev.rows = Some(r.rows);
                    ev.attempt = Some(attempt);
                    // Synced with the next record (see Recorder).
                    self.s.recorder.write_behind(ev);
                    failpoint::point("after-success-audit");
                    let captured = step
                        .capture
                        .as_ref()
                        .and_then(|n| self.captured.get(n).map(|v| (n.clone(), v.clone())));
                    self.emit(EngineEvent::StepDone {
                        step: step.id.clone(),
                        outcome,
                        duration,
                        rows: Some(r.rows),
                        captured,
                    });
                    return Ok(());
                }
                Err(f) if f.sqlstate.as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < of => {
                    let waited = attempt_started.elapsed();
                    if self
                        .retry_after(phase, step, &settings, attempt, of, &f, waited)
                        .await
                    {
                        let cancelled = SqlFailure {
                            sqlstate: Some(QUERY_CANCELED.into()),
                            message: "cancelled by the operator while waiting to retry".into(),
                            cancelled_by_operator: true,
                        };
                        return Err(self.step_failed(phase, step, started, cancelled).await);
                    }
                }
                Err(f) => return Err(self.step_failed(phase, step, started, f).await),
            }
        }
        Err(Outcome::Failed(format!(
            "step {} did not get its locks",
            step.id
        )))
    }

    /// A lock_timeout (55P03): audited and shown, then the backoff is slept
    /// (the operator may cancel it: true).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn retry_after(
        &mut self,
        phase: &Phase,
        step: &Step,
        settings: &Settings,
        attempt: u32,
        of: u32,
        f: &SqlFailure,
        waited: Duration,
    ) -> bool {
        let wait = backoff(settings.retry_backoff, attempt);
        let message = format!(
            "waited {} for a lock ({}); retrying in {:.1}s",
            format_duration(settings.lock_timeout),
            f.message,
            wait.as_secs_f64()
        );
        let mut ev = Event::new(Action::Retry);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        ev.attempt = Some(attempt);
        ev.sqlstate = f.sqlstate.clone();
        ev.message = Some(message.clone());
        ev.duration_ms = Some(waited.as_millis() as u64);
        self.record(ev).await;
        self.emit(EngineEvent::Retrying {
            step: step.id.clone(),
            attempt,
            of,
            wait,
            message,
        });
        self.sleep_or_cancel(wait).await
    }

    pub(super) async fn step_failed(
        &mut self,
        phase: &Phase,
        step: &Step,
        started: Instant,
        f: SqlFailure,
    ) -> Outcome {
        let mut ev = Event::new(Action::StepFailure);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        ev.duration_ms = Some(started.elapsed().as_millis() as u64);
        ev.sqlstate = f.sqlstate.clone();
        ev.message = Some(f.message.clone());
        if f.cancelled_by_operator {
            let mut c = Event::new(Action::Cancel);
            c.phase = Some(phase.id.clone());
            c.step = Some(step.id.clone());
            self.record(c).await;
        }
        self.record(ev).await;
        self.emit(EngineEvent::StepFailed {
            step: step.id.clone(),
            sqlstate: f.sqlstate.clone(),
            message: f.message.clone(),
        });
        if f.cancelled_by_operator {
            Outcome::Interrupted
        } else {
            let code = f.sqlstate.map(|c| format!(" [{c}]")).unwrap_or_default();
            Outcome::Failed(format!("step {} failed{code}: {}", step.id, f.message))
        }
    }

    pub(super) async fn drain_notices(&mut self, phase: &Phase, step: &Step) {
        while let Ok(n) = self.s.conn.notices.try_recv() {
            if n.code == NO_ACTIVE_TRANSACTION {
                // pgpilot's own ROLLBACK after a transaction its COMMIT had
                // already ended (see `one_trip`); steps cannot hold ROLLBACK.
                continue;
            }
            self.emit(EngineEvent::Notice {
                step: Some(step.id.clone()),
                severity: n.severity.clone(),
                message: n.message.clone(),
            });
            let mut ev = Event::new(Action::Notice);
            ev.phase = Some(phase.id.clone());
            ev.step = Some(step.id.clone());
            ev.outcome = Some(n.severity.clone());
            ev.sqlstate = Some(n.code.clone());
            ev.message = Some(n.message.clone());
            self.record(ev).await;
        }
    }
}

/// Exponential backoff from `base`, capped at 30 s, with ±25 % jitter so two
/// waiting sessions do not retry in lock step.
pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    crate::backoff::Backoff {
        first: base,
        cap: Duration::from_secs(30),
    }
    .delay(attempt)
}
