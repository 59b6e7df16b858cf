//! Recovering in place: a step that fails in an interactive session does not
//! end it. The operator is asked (`Ask::Failed`) and may retry the step, skip
//! it with a reason, roll back applied steps, or quit. A headless run has no
//! one to ask and ends at the failure, as it always did.

use super::{Exec, step_event};
use crate::analysis::StepAnalysis;
use crate::audit::record::Action;
use crate::engine::state::Status;
use crate::engine::{Ask, EngineEvent, Outcome, Reply};
use crate::pg::Severity;
use crate::runbook::{Phase, Step, StepKind};

/// How a step's turn ended without a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepEnd {
    /// It ran (or there was nothing to run).
    Done,
    /// The operator aborted it at the blockers prompt: nothing of it ran and
    /// it is still pending.
    Aborted,
}

/// What the operator chose after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recovery {
    Retry,
    Skip(String),
    RollbackThrough(String),
}

impl Exec<'_> {
    /// The operator's choice after `failure` of `step`, or the failure itself
    /// when it ends the session: headless, not a failure (a refusal, a
    /// cancel), the local audit unwritable (pgpilot runs nothing it cannot
    /// record), or the operator quits.
    pub(super) async fn recovery(
        &mut self,
        step: Option<String>,
        failure: Outcome,
    ) -> Result<Recovery, Outcome> {
        let Outcome::Failed(message) = &failure else {
            return Err(failure);
        };
        let Some(step) = step else {
            return Err(failure);
        };
        self.failed_steps.insert(step.clone());
        if !self.s.options.interactive || self.s.recorder.local_error().is_some() {
            return Err(failure);
        }
        let rollback_available = !self.rehearsal_open
            && self
                .states
                .values()
                .any(|s| matches!(s.status, Status::Applied | Status::RollingBack));
        let ask = Ask::Failed {
            step,
            message: message.clone(),
            rollback_available,
        };
        match self.ask(ask).await {
            Reply::Run | Reply::Typed(_) | Reply::Wait => Ok(Recovery::Retry),
            Reply::Skip(reason) => Ok(Recovery::Skip(reason)),
            Reply::RollbackThrough(target) => Ok(Recovery::RollbackThrough(target)),
            Reply::Quit | Reply::Missing => Err(failure),
        }
    }

    /// How a session the operator stops at a step's prompt ends: failed when
    /// a step's last attempt failed, else refused.
    pub(super) fn stopped(&self) -> Outcome {
        if self.failed_steps.is_empty() {
            Outcome::Refused("stopped by the operator".into())
        } else {
            let steps: Vec<&str> = self.failed_steps.iter().map(String::as_str).collect();
            Outcome::Failed(format!(
                "stopped by the operator with failed step(s): {}",
                steps.join(", ")
            ))
        }
    }

    /// One step's turn: asked for until it runs, is skipped, or the operator
    /// quits; aborted at the blockers, it is asked for again; failed, the
    /// operator is asked what next (see [`Exec::recovery`]).
    pub(super) async fn one_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        analysis: &StepAnalysis,
    ) -> Result<(), Outcome> {
        let mut ask = true;
        loop {
            if ask {
                match self
                    .ask(Ask::Next {
                        step: step.id.clone(),
                    })
                    .await
                {
                    Reply::Run | Reply::Typed(_) | Reply::Wait => {}
                    Reply::Skip(reason) => return self.skip(phase, step, reason).await,
                    Reply::RollbackThrough(target) => {
                        self.rollback_through(&target).await?;
                        continue;
                    }
                    Reply::Quit | Reply::Missing => return Err(self.stopped()),
                }
            }
            ask = true;
            self.before_step(phase, step).await?;
            self.window_left_check(phase, step, analysis).await?;
            // Read afresh: a failed autocommit attempt leaves the step in doubt.
            let previous = self.states.get(&step.id).map(|s| s.status);
            let result = if step.kind == StepKind::Pause {
                self.pause(phase, step).await.map(|()| StepEnd::Done)
            } else if let Some(dump) = step.dump() {
                self.dump_step(phase, step, dump).await
            } else if step.kind == StepKind::Backfill {
                self.backfill_step(phase, step, analysis, previous).await
            } else {
                self.sql_step(phase, step, analysis, previous).await
            };
            match result {
                Ok(StepEnd::Done) => {
                    self.failed_steps.remove(&step.id);
                    return Ok(());
                }
                Ok(StepEnd::Aborted) => {}
                Err(failure) => match self.recovery(Some(step.id.clone()), failure).await? {
                    Recovery::Retry => ask = false,
                    Recovery::Skip(reason) => return self.skip(phase, step, reason).await,
                    Recovery::RollbackThrough(target) => self.rollback_through(&target).await?,
                },
            }
        }
    }

    /// `b`: the applied steps down to `target` rolled back; a failed
    /// rollback is asked about like a failed step (a skip leaves that step
    /// and the older ones applied).
    pub(super) async fn rollback_recovering(&mut self, target: &str) -> Result<(), Outcome> {
        loop {
            self.last_failed = None;
            let failure = match self.rollback_range(None, Some(target), false).await {
                Outcome::Done => return Ok(()),
                failure => failure,
            };
            let step = self.last_failed.clone();
            match self.recovery(step.clone(), failure).await? {
                Recovery::Retry | Recovery::RollbackThrough(_) => {}
                Recovery::Skip(reason) => {
                    if let Some(id) = step {
                        self.rollback_skipped(&id, reason).await;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// A rollback the operator chose not to run (or not to retry): the step
    /// stays applied; audited with the reason.
    pub(super) async fn rollback_skipped(&mut self, id: &str, reason: String) {
        self.failed_steps.remove(id);
        let steps = self.steps_in_order();
        let Some((_, phase, step)) = steps.iter().find(|(_, _, s)| s.id == id) else {
            return;
        };
        let mut ev = step_event(Action::Skip, phase, step);
        ev.message = Some(format!("rollback skipped: {reason}"));
        self.record(ev).await;
        self.emit(EngineEvent::Notice {
            step: Some(id.to_string()),
            severity: Severity::Warning,
            message: format!("rollback skipped ({reason}): the step stays applied"),
        });
        // The screens showed the rollback FAILED: they learn the step's
        // state on the target again (applied, or in doubt).
        let known = crate::engine::truth::known_states(&self.s.runbook, &self.states)
            .into_iter()
            .filter(|k| k.step == id)
            .collect();
        self.emit(EngineEvent::States(known));
    }
}
