//! Rolling back applied steps, newest first.

use super::attempt::{RESET_TIMEOUTS, Work, local_timeouts, session_timeouts};
use super::expect::StepResult;
use super::recover::{Recovery, StepEnd};
use super::sql::SqlFailure;
use super::{Exec, Part, step_event};
use crate::analysis::StepAnalysis;
use crate::audit::record::Action;
use crate::engine::state::Status;
use crate::engine::{Ask, EngineEvent, Outcome, Reply, failpoint, rehearse};
use crate::pg::Severity;
use crate::runbook::{Phase, Settings, Step};

impl Exec<'_> {
    /// Applied steps in reverse order, stopping before `to` (it stays applied)
    /// or after `through` (it is rolled back too).
    pub(super) async fn rollback_range(
        &mut self,
        to: Option<&str>,
        through: Option<&str>,
        ask_each: bool,
    ) -> Outcome {
        let steps = self.steps_in_order();
        if let Some(refused) = self.unknown_step("--to", to, &steps) {
            return refused;
        }
        // The steps to undo, newest first: up to `to` (kept), through `through`.
        let mut range = Vec::new();
        for entry in steps.into_iter().rev() {
            if Some(entry.2.id.as_str()) == to {
                break;
            }
            let last = Some(entry.2.id.as_str()) == through;
            range.push(entry);
            if last {
                break;
            }
        }
        // An irreversible step in the range refuses the rollback before
        // anything is undone, not halfway through.
        for (_, _, step) in &range {
            if self.to_roll_back(step)
                && step.rollback.is_none()
                && let Some(why) = &step.irreversible
            {
                return Outcome::Refused(format!(
                    "step {} cannot be rolled back: irreversible: {why}; nothing was rolled back",
                    step.id
                ));
            }
        }
        // Several steps to undo: the operator sees the list and agrees to it
        // once (each destructive rollback still asks its own phrase). Headless,
        // the command line is the list: `rollback --to` says how far.
        let undo: Vec<String> = range
            .iter()
            .filter(|(_, _, s)| s.kind.changes() && self.to_roll_back(s))
            .map(|(_, _, s)| s.id.clone())
            .collect();
        if undo.len() > 1 {
            match self.ask(Ask::RollbackList { steps: undo }).await {
                Reply::Run | Reply::Typed(_) | Reply::Wait | Reply::RollbackThrough(_) => {}
                Reply::Quit | Reply::Skip(_) | Reply::Missing if ask_each => {
                    return Outcome::Refused("stopped by the operator".into());
                }
                Reply::Quit | Reply::Skip(_) | Reply::Missing => {
                    self.emit(EngineEvent::Notice {
                        step: None,
                        severity: Severity::Info,
                        message: "nothing was rolled back".into(),
                    });
                    return Outcome::Done;
                }
            }
        }
        for (i, phase, step) in range {
            if !step.kind.changes() || !self.to_roll_back(&step) {
                continue;
            }
            let Some(rb) = step.rollback.clone() else {
                if let Some(why) = &step.irreversible {
                    return Outcome::Refused(format!(
                        "step {} cannot be rolled back: irreversible: {why}",
                        step.id
                    ));
                }
                // Nothing to undo (ANALYZE, VALIDATE CONSTRAINT): marked rolled
                // back so that a later run applies it again after what it
                // depended on is re-applied.
                // Screen, log and audit say the same: rolled back.
                let mut ev = step_event(Action::RollbackSuccess, &phase, &step);
                ev.message = Some("no rollback SQL: nothing to undo".into());
                if self.rehearsal_open {
                    self.rehearsal.changed.retain(|s| *s != step.id);
                    ev.outcome = Some("rehearsed".into());
                } else if let Err(o) = self
                    .write_state_autocommit(&step, Status::RolledBack, None, None)
                    .await
                {
                    return o;
                } else if let Err(f) = self.history_after(&step, false).await {
                    return Outcome::Failed(f.message);
                }
                self.record(ev).await;
                self.emit(EngineEvent::Notice {
                    step: Some(step.id.clone()),
                    severity: Severity::Info,
                    message: "no rollback SQL: nothing to undo; marked rolled back".into(),
                });
                self.emit(EngineEvent::RolledBack {
                    step: step.id.clone(),
                    duration: std::time::Duration::ZERO,
                });
                continue;
            };
            match self.undo(i, &phase, &step, &rb.text, ask_each).await {
                Ok(StepEnd::Done) => {}
                // Aborted at the blockers during `b`: the rest stays applied.
                Ok(StepEnd::Aborted) => return Outcome::Done,
                Err(o) => return o,
            }
        }
        self.version_after_rollback().await;
        Outcome::Done
    }

    /// One step's rollback: asked for (`pgpilot rollback`), its phrase, the
    /// blocker guard as before a forward step, then its attempts. In
    /// `pgpilot rollback`'s TUI, an abort at the blockers asks for the step
    /// again and a failure asks what next; during `b`, both end here and the
    /// caller decides.
    async fn undo(
        &mut self,
        i: usize,
        phase: &Phase,
        step: &Step,
        rollback_sql: &str,
        ask_each: bool,
    ) -> Result<StepEnd, Outcome> {
        let mut ask = ask_each;
        loop {
            let reply = if ask {
                self.ask(Ask::Next {
                    step: step.id.clone(),
                })
                .await
            } else {
                Reply::Run
            };
            ask = ask_each;
            match reply {
                // Inside a rollback, `b` means go on rolling back.
                Reply::Run | Reply::Typed(_) | Reply::Wait | Reply::RollbackThrough(_) => {}
                Reply::Skip(reason) => {
                    let mut ev = step_event(Action::Skip, phase, step);
                    ev.message = Some(format!("rollback skipped: {reason}"));
                    self.record(ev).await;
                    self.failed_steps.remove(&step.id);
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    });
                    return Ok(StepEnd::Done);
                }
                Reply::Quit | Reply::Missing => return Err(self.stopped()),
            }
            if let Some(e) = self.s.recorder.local_error() {
                return Err(Outcome::Failed(format!(
                    "cannot write the local audit log ({e}); pgpilot runs nothing it cannot record"
                )));
            }
            let a = self.s.analysis.steps[i].clone();
            let (text, resolved) = self.with_values(step, &a, rollback_sql, Part::Rollback)?;
            let a = resolved.as_ref();
            if let Some(phrase) = &a.rollback_confirm {
                self.confirm(step, phrase, &a.rollback).await?;
            }
            match self.blocker_guard(phase, step, &a.rollback).await? {
                StepEnd::Done => {}
                StepEnd::Aborted if ask_each => continue,
                StepEnd::Aborted => return Ok(StepEnd::Aborted),
            }
            match self.rollback_step(phase, step, a, &text).await {
                Ok(()) => return Ok(StepEnd::Done),
                Err(failure) if ask_each => {
                    match self.recovery(Some(step.id.clone()), failure).await? {
                        Recovery::Retry | Recovery::RollbackThrough(_) => ask = false,
                        Recovery::Skip(reason) => {
                            self.rollback_skipped(&step.id, reason).await;
                            return Ok(StepEnd::Done);
                        }
                    }
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    /// Applied, or a rollback in autocommit that was interrupted (its SQL
    /// is run again to finish it: write such rollbacks with `IF EXISTS`).
    /// In a rehearsal: only what the rehearsal itself changed.
    fn to_roll_back(&self, step: &Step) -> bool {
        if self.rehearsal_open {
            return self.rehearsal.changed.contains(&step.id);
        }
        matches!(
            self.states.get(&step.id).map(|s| s.status),
            Some(Status::Applied | Status::RollingBack)
        )
    }

    pub(super) async fn rollback_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
        sql: &str,
    ) -> Result<(), Outcome> {
        if let Some(b) = &step.backfill
            && crate::analysis::uses_batch_bounds(sql)
        {
            if !self.rehearsal_open {
                return self.rollback_backfill(phase, step, b, sql).await;
            }
            let reason = "its rollback walks the table in batches; not rehearsed".to_string();
            let mut ev = step_event(Action::Skip, phase, step);
            ev.message = Some(reason.clone());
            self.record(ev).await;
            self.emit(EngineEvent::StepSkipped {
                step: step.id.clone(),
                reason,
            });
            return Ok(());
        }
        let mut autocommit = a.rollback.iter().any(|s| !s.transactional);
        let rehearsed_form;
        let mut sql = sql;
        if self.rehearsal_open && autocommit {
            // As a forward step: its transactional form, or not rehearsed.
            match rehearse::transactional_form(sql) {
                Some(form) => {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: Severity::Info,
                        message: format!(
                            "rehearsal runs the rollback in its transactional form: {form}"
                        ),
                    });
                    rehearsed_form = form;
                    sql = &rehearsed_form;
                    autocommit = false;
                }
                None => {
                    let reason =
                        "its rollback cannot run inside the rehearsal's transaction; not rehearsed"
                            .to_string();
                    let mut ev = step_event(Action::Skip, phase, step);
                    ev.message = Some(reason.clone());
                    self.record(ev).await;
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    });
                    return Ok(());
                }
            }
        }
        let done = self
            .attempts(phase, step, Work::Rollback { sql, autocommit })
            .await?;
        failpoint::point("rollback-done");
        let mut ev = step_event(Action::RollbackSuccess, phase, step);
        ev.duration_ms = Some(done.duration.as_millis() as u64);
        if self.rehearsal_open {
            ev.outcome = Some("rehearsed".into());
            ev.message = Some(
                "rehearsed: undone inside the rehearsal's transaction, which is rolled back; nothing was changed".into(),
            );
            self.rehearsal.changed.retain(|s| *s != step.id);
        } else {
            self.mark(step, Status::RolledBack);
        }
        self.record(ev).await;
        self.failed_steps.remove(&step.id);
        self.emit(EngineEvent::RolledBack {
            step: step.id.clone(),
            duration: done.duration,
        });
        Ok(())
    }

    /// Rollback SQL that cannot run in a transaction block: bounded by both
    /// timeouts like a forward step in autocommit, its state written before
    /// (rolling_back) and after (rolled_back) it, so that a crash between
    /// the SQL and its state leaves the step in doubt rather than `applied`
    /// with its effect undone.
    pub(super) async fn rollback_autocommit_once(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
    ) -> Result<StepResult, SqlFailure> {
        let w = self.state_params(step, Status::RollingBack, None, None);
        self.exec_state(&w).await?;
        self.mark(step, Status::RollingBack);
        failpoint::point("rollback-autocommit-rolling-back");
        self.query(&session_timeouts(settings)).await?;
        let ran = self.query(sql).await;
        let _ = self.client().batch_execute(RESET_TIMEOUTS).await;
        ran?;
        failpoint::point("rollback-autocommit-after-statement");
        let w = self.state_params(step, Status::RolledBack, None, None);
        self.exec_state(&w).await?;
        Ok(StepResult::default())
    }

    /// Rollback SQL and its state row in one transaction.
    pub(super) async fn rollback_transaction_once(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
    ) -> Result<StepResult, SqlFailure> {
        // Inside a rehearsal: a savepoint of its transaction, as a step's.
        let (begin, commit, abort) = if self.rehearsal_open {
            (
                "SAVEPOINT pgpilot_step",
                "RELEASE SAVEPOINT pgpilot_step",
                "ROLLBACK TO SAVEPOINT pgpilot_step",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        self.query(&local_timeouts(begin, settings)).await?;
        let w = self.state_params(step, Status::RolledBack, None, None);
        let ran = async {
            self.query(sql).await?;
            failpoint::point("rollback-in-transaction");
            self.exec_state(&w).await
        }
        .await;
        match ran {
            Ok(()) => {
                self.query(commit).await?;
                Ok(StepResult::default())
            }
            Err(f) => {
                let _ = self.client().batch_execute(abort).await;
                Err(f)
            }
        }
    }
}
