//! The pre-step blocker guard: sessions already holding locks the step needs.

use crate::pg::Severity;
use std::time::Duration;

use super::{Exec, step_event};
use crate::analysis::{RelationName, StepAnalysis};
use crate::audit::record::Action;
use crate::engine::{Ask, EngineEvent, Outcome, Reply};
use crate::runbook::{Phase, Step};

impl Exec<'_> {
    /// Sessions holding locks that conflict with what the step takes: the
    /// step would wait behind them and every later query on the table behind
    /// the step. Reported, then per `on_blockers`: ask, wait, or proceed.
    pub(super) async fn blocker_guard(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
    ) -> Result<(), Outcome> {
        use crate::analysis::LockMode;
        use crate::runbook::OnBlockers;
        let strong: Vec<(RelationName, LockMode)> = a
            .statements
            .iter()
            .flat_map(|s| s.locks.iter())
            .filter(|l| l.mode >= LockMode::ShareUpdateExclusive)
            .map(|l| (l.relation.clone(), l.mode))
            .collect();
        if strong.is_empty() {
            return Ok(());
        }
        let mut waited = false;
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
                return Ok(());
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
                let mut ev = step_event(Action::Blockers, phase, step);
                ev.outcome = Some(decision.as_str().into());
                ev.message = Some(
                    holders
                        .iter()
                        .map(|h| {
                            format!(
                                "pid {} ({}, {}) holds {} on {}",
                                h.pid,
                                h.user.as_deref().unwrap_or("?"),
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
            match decision {
                Decision::Proceed => return Ok(()),
                Decision::Abort => {
                    return Err(Outcome::Refused(format!(
                        "step {}: stopped because sessions hold locks it needs",
                        step.id
                    )));
                }
                Decision::Wait => {
                    waited = true;
                    if self.sleep_or_cancel(Duration::from_secs(1)).await {
                        return Err(Outcome::Interrupted);
                    }
                }
            }
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
    /// Refuse the run; nothing of the step ran.
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
