//! The pre-step blocker guard: sessions already holding locks the step needs.

use crate::pg::Severity;
use std::time::Duration;

use super::recover::StepEnd;
use super::{Exec, step_event};
use crate::analysis::{RelationName, StatementAnalysis};
use crate::audit::record::Action;
use crate::engine::{Ask, EngineEvent, Outcome, Reply};
use crate::monitor::Holder;
use crate::runbook::{Phase, Step};

/// How one second of waiting for the blockers ended.
enum Waited {
    Elapsed,
    /// The operator cancelled (`c`, Ctrl-C).
    Cancelled,
    /// The operator answered while the engine waited: proceed or abort.
    Answer(Decision),
}

impl Exec<'_> {
    /// Sessions holding locks that conflict with what the step takes: the
    /// step would wait behind them and every later query on the table behind
    /// the step. Reported, then per `on_blockers`: ask, wait, or proceed.
    /// `statements` are what is about to run: the step's, or its rollback's.
    /// While it waits, the operator may still proceed or abort; an abort in
    /// an interactive session leaves the step pending (`StepEnd::Aborted`),
    /// headless it refuses the run.
    pub(super) async fn blocker_guard(
        &mut self,
        phase: &Phase,
        step: &Step,
        statements: &[StatementAnalysis],
    ) -> Result<StepEnd, Outcome> {
        use crate::analysis::LockMode;
        use crate::runbook::OnBlockers;
        let strong: Vec<(RelationName, LockMode)> = statements
            .iter()
            .flat_map(|s| s.locks.iter())
            .filter(|l| l.mode >= LockMode::ShareUpdateExclusive)
            .map(|l| (l.relation.clone(), l.mode))
            .collect();
        if strong.is_empty() {
            return Ok(StepEnd::Done);
        }
        let mut waited = false;
        let mut shown: Vec<i32> = Vec::new();
        loop {
            let mut holders = Vec::new();
            for (relation, mode) in &strong {
                let found = crate::monitor::holders(self.client(), relation, *mode).await;
                if let Err(e) = &found {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: Severity::Warning,
                        message: format!("could not look for sessions holding {relation}: {}; lock_timeout still bounds the wait", crate::pg::redact(&e.to_string())),
                    });
                }
                if let Ok(h) = found {
                    holders.extend(h.into_iter().filter(|h| h.pid != self.s.conn_pid));
                }
            }
            if holders.is_empty() {
                if waited {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: Severity::Info,
                        message: "the blockers are gone".into(),
                    });
                }
                return Ok(StepEnd::Done);
            }
            if !waited {
                self.emit(EngineEvent::Blockers {
                    step: step.id.clone(),
                    holders: holders.clone(),
                });
            }
            let decision = match step.settings.on_blockers {
                OnBlockers::Proceed => Decision::Proceed,
                OnBlockers::Wait => Decision::Wait,
                OnBlockers::Ask if waited => Decision::Wait,
                OnBlockers::Ask => Decision::of(
                    self.ask(Ask::Blockers {
                        step: step.id.clone(),
                        holders: holders.clone(),
                    })
                    .await,
                ),
            };
            if !waited {
                self.record_blockers(phase, step, decision, &holders).await;
            }
            let decision = match decision {
                Decision::Wait => {
                    waited = true;
                    let mut pids: Vec<i32> = holders.iter().map(|h| h.pid).collect();
                    pids.sort_unstable();
                    if pids != shown {
                        shown = pids;
                        self.emit(EngineEvent::WaitingForBlockers {
                            step: step.id.clone(),
                            holders: holders.clone(),
                        });
                    }
                    match self.wait_or_answer(Duration::from_secs(1)).await {
                        Waited::Elapsed => continue,
                        Waited::Cancelled => return Err(Outcome::Interrupted),
                        Waited::Answer(d) => {
                            self.record_blockers(phase, step, d, &holders).await;
                            d
                        }
                    }
                }
                d => d,
            };
            return match decision {
                Decision::Proceed | Decision::Wait => Ok(StepEnd::Done),
                Decision::Abort if self.s.options.interactive => {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: Severity::Info,
                        message: "aborted at the blockers: nothing of it ran; it is still pending"
                            .into(),
                    });
                    Ok(StepEnd::Aborted)
                }
                Decision::Abort => Err(Outcome::Refused(format!(
                    "step {}: stopped because sessions hold locks it needs",
                    step.id
                ))),
            };
        }
    }

    /// The blockers found and what was decided about them, in the audit.
    async fn record_blockers(
        &mut self,
        phase: &Phase,
        step: &Step,
        decision: Decision,
        holders: &[Holder],
    ) {
        let mut ev = step_event(Action::Blockers, phase, step);
        ev.outcome = Some(decision.as_str().into());
        ev.message = Some(
            holders
                .iter()
                .map(|h| {
                    format!(
                        "pid {}{} {} holds {} on {}",
                        h.pid,
                        crate::monitor::text::named(&h.name(), true, false),
                        h.state,
                        h.mode,
                        h.relation
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        );
        self.record(ev).await;
    }

    /// Sleeps `wait` unless the operator cancels or answers first: `Run`
    /// proceeds, anything else aborts this step.
    async fn wait_or_answer(&mut self, wait: Duration) -> Waited {
        let io = &mut *self.io;
        tokio::select! {
            _ = tokio::time::sleep(wait) => Waited::Elapsed,
            // A closed channel never cancels: the wait goes on.
            () = crate::engine::cancelled(&mut io.control, &mut io.held) => Waited::Cancelled,
            Some(r) = io.replies.recv() => Waited::Answer(match r {
                Reply::Run => Decision::Proceed,
                _ => Decision::Abort,
            }),
        }
    }
}

/// What happens to a step that sessions block; audited as `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Run it now: lock_timeout still bounds its wait.
    Proceed,
    /// Poll until the holders are gone.
    Wait,
    /// Nothing of the step ran: back to the step list (interactive), or
    /// the run is refused (headless).
    Abort,
}

impl Decision {
    /// The operator's answer to `Ask::Blockers`. No answer to be had (no
    /// terminal) proceeds, as `ask` documents.
    fn of(reply: Reply) -> Decision {
        match reply {
            Reply::Run | Reply::Missing => Decision::Proceed,
            Reply::Wait => Decision::Wait,
            Reply::Quit | Reply::Typed(_) | Reply::Skip(_) | Reply::RollbackThrough(_) => {
                Decision::Abort
            }
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Decision::Proceed => "proceed",
            Decision::Wait => "wait",
            Decision::Abort => "abort",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_decisions_audited_by_their_old_words() {
        assert_eq!(Decision::of(Reply::Run), Decision::Proceed);
        assert_eq!(Decision::of(Reply::Missing), Decision::Proceed);
        assert_eq!(Decision::of(Reply::Wait), Decision::Wait);
        assert_eq!(Decision::of(Reply::Quit), Decision::Abort);
        assert_eq!(Decision::of(Reply::Typed("x".into())), Decision::Abort);
        let words: Vec<_> = [Decision::Proceed, Decision::Wait, Decision::Abort]
            .into_iter()
            .map(Decision::as_str)
            .collect();
        assert_eq!(words, ["proceed", "wait", "abort"]);
    }
}
