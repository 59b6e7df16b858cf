//! A forward SQL step: values, confirmation, blocker guard, in-doubt check,
//! then its attempts (see attempt.rs) and its success.

use crate::pg::Severity;
use std::borrow::Cow;
use std::time::Duration;

use super::attempt::{Succeeded, Work};
use super::recover::StepEnd;
use super::{Exec, Part, step_event};
use crate::analysis::{self, StepAnalysis};
use crate::audit::record::Action;
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome, StepOutcome, failpoint, rehearse};
use crate::runbook::{Phase, Step, StepKind, vars};

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
    ) -> Result<StepEnd, Outcome> {
        let Some(sql) = step.sql() else {
            return Ok(StepEnd::Done);
        };
        let (text, resolved) = self.with_values(step, a, &sql.text, Part::Step)?;
        let a = resolved.as_ref();
        if let Some(phrase) = &a.confirm {
            self.confirm(step, phrase, &a.statements).await?;
        }
        if self.blocker_guard(phase, step, &a.statements).await? == StepEnd::Aborted {
            return Ok(StepEnd::Aborted);
        }
        if let Some(doubt @ (Status::InProgress | Status::RollingBack)) = previous
            && !self.rehearsal_open
            && self.in_doubt(step, a, doubt).await?
        {
            self.write_state_autocommit(step, Status::Applied, None, None)
                .await?;
            let mut ev = step_event(Action::StepSuccess, phase, step);
            ev.outcome = Some("completed on an earlier run".into());
            self.record(ev).await;
            self.emit(EngineEvent::StepDone {
                step: step.id.clone(),
                outcome: StepOutcome::Applied,
                duration: Duration::ZERO,
                rows: None,
                captured: None,
            });
            return Ok(StepEnd::Done);
        }
        let (text, autocommit) = if self.rehearsal_open && !a.transactional {
            match rehearse::transactional_form(&text) {
                Some(t) => {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: Severity::Info,
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
                    let mut ev = step_event(Action::Skip, phase, step);
                    ev.message = Some(reason);
                    self.record(ev).await;
                    return Ok(StepEnd::Done);
                }
            }
        } else {
            (text, !a.transactional)
        };
        let work = Work::Step {
            sql: &text,
            autocommit,
            statements: &a.statements,
        };
        let Succeeded {
            result: r,
            attempt,
            duration,
        } = self.attempts(phase, step, work).await?;
        self.tell_recaptured(step, r.fresh_capture.clone());
        let outcome = match (self.rehearsal_open, step.kind) {
            (true, _) => StepOutcome::Rehearsed,
            (false, StepKind::Check | StepKind::Verify) => StepOutcome::Passed,
            _ => StepOutcome::Applied,
        };
        match outcome {
            StepOutcome::Applied => self.mark(step, Status::Applied),
            StepOutcome::Passed => self.mark(step, Status::Passed),
            StepOutcome::Rehearsed if step.kind.changes() => {
                self.rehearsal.changed.push(step.id.clone())
            }
            _ => {}
        }
        let mut ev = step_event(Action::StepSuccess, phase, step);
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
        Ok(StepEnd::Done)
    }
}
