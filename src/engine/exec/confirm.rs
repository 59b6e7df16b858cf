//! Typed confirmations, pauses and skips: what the operator answers, audited.

use crate::pg::Severity;
use std::time::Duration;

use super::{Exec, step_event};
use crate::analysis::StatementAnalysis;
use crate::audit::record::{Action, Event};
use crate::engine::state::Status;
use crate::engine::{Ask, EngineEvent, Outcome, Reply, StepOutcome};
use crate::runbook::{Phase, Step};

/// What a refused phrase leaves undone: this step (or its rollback) only.
/// "Nothing was run" would be false after the steps before it were applied.
const NOT_RUN: &str = "it was not run (earlier steps stay as they are)";

impl Exec<'_> {
    /// Checks a typed answer; a wrong or missing one is audited and refuses the run.
    pub(super) async fn confirmation(
        &mut self,
        step: Option<&str>,
        expected: &str,
        reply: Reply,
    ) -> Result<(), Outcome> {
        let answer = Confirmation::of(&reply, expected);
        let mut ev = Event::new(Action::Confirmation);
        ev.step = step.map(str::to_string);
        ev.outcome = Some(answer.as_str().into());
        ev.message = Some(match &answer {
            Confirmation::Accepted => format!("typed {expected:?}"),
            Confirmation::Wrong(typed) => format!("expected {expected:?}, typed {typed:?}"),
            Confirmation::Declined | Confirmation::Missing => {
                format!("expected {expected:?}, no answer")
            }
        });
        self.record(ev).await;
        match answer {
            Confirmation::Accepted => Ok(()),
            Confirmation::Declined => Err(Outcome::Refused("stopped by the operator".into())),
            Confirmation::Wrong(_) => Err(Outcome::Refused(format!(
                "the phrase typed does not match {expected:?}; {NOT_RUN}"
            ))),
            Confirmation::Missing => Err(Outcome::Refused(match step {
                Some(s) => format!(
                    "step {s} needs the phrase {expected:?}: type it, or pass --confirm {s}={expected:?}; {NOT_RUN}"
                ),
                None => format!(
                    "type the database name, or pass --confirm {}={expected}; nothing was run",
                    crate::engine::PRODUCTION_KEY
                ),
            })),
        }
    }

    /// Asks for a phrase until it is typed right (a terminal UI keeps its
    /// dialog open after a wrong one) or refused; every answer is audited.
    pub(super) async fn ask_phrase(&mut self, step: Option<&str>, ask: Ask) -> Result<(), Outcome> {
        let expected = ask.expected().unwrap_or_default().to_string();
        loop {
            let reply = self.ask(ask.clone()).await;
            let wrong = matches!(Confirmation::of(&reply, &expected), Confirmation::Wrong(_));
            match self.confirmation(step, &expected, reply).await {
                Err(_) if wrong && self.s.options.interactive => {
                    self.emit(EngineEvent::Notice {
                        step: step.map(str::to_string),
                        severity: Severity::Warning,
                        message: format!("the phrase typed does not match {expected:?}; {NOT_RUN}"),
                    });
                }
                other => return other,
            }
        }
    }

    /// Asks for a step's (or its rollback's) phrase, saying what is at risk.
    pub(super) async fn confirm(
        &mut self,
        step: &Step,
        phrase: &str,
        statements: &[StatementAnalysis],
    ) -> Result<(), Outcome> {
        let at_risk: Vec<String> = statements
            .iter()
            .filter(|s| s.destructive)
            .map(|s| match &s.at_risk {
                Some(r) => r.phrase(),
                None => format!("a {} pgpilot cannot see into", s.kind),
            })
            .collect();
        let what = if at_risk.is_empty() {
            format!("step {} (the runbook asks for this confirmation)", step.id)
        } else {
            at_risk.join(", ")
        };
        let ask = Ask::Confirm {
            step: step.id.clone(),
            phrase: phrase.to_string(),
            what,
        };
        self.ask_phrase(Some(&step.id), ask).await
    }

    pub(super) async fn skip(
        &mut self,
        phase: &Phase,
        step: &Step,
        reason: String,
    ) -> Result<(), Outcome> {
        if reason.trim().is_empty() {
            return Err(Outcome::Refused(format!(
                "skipping {} needs a reason",
                step.id
            )));
        }
        self.write_state_autocommit(step, Status::Skipped, None, None)
            .await?;
        self.failed_steps.remove(&step.id);
        let mut ev = step_event(Action::Skip, phase, step);
        ev.message = Some(reason.clone());
        self.record(ev).await;
        self.emit(EngineEvent::StepSkipped {
            step: step.id.clone(),
            reason,
        });
        Ok(())
    }

    pub(super) async fn pause(&mut self, phase: &Phase, step: &Step) -> Result<(), Outcome> {
        let instructions = step.instructions().unwrap_or_default().to_string();
        self.s
            .recorder
            .notify_paused(&phase.id, &step.id, &instructions);
        let ask = Ask::Acknowledge {
            step: step.id.clone(),
            instructions,
        };
        // A skip answers a pause too; anything else is a phrase, audited like one.
        loop {
            match self.ask(ask.clone()).await {
                Reply::Skip(reason) => return self.skip(phase, step, reason).await,
                reply => {
                    let wrong = matches!(
                        Confirmation::of(&reply, crate::engine::PAUSE_PHRASE),
                        Confirmation::Wrong(_)
                    );
                    match self
                        .confirmation(Some(&step.id), crate::engine::PAUSE_PHRASE, reply)
                        .await
                    {
                        Ok(()) => break,
                        Err(_) if wrong && self.s.options.interactive => {
                            self.emit(EngineEvent::Notice {
                                step: Some(step.id.clone()),
                                severity: Severity::Warning,
                                message: format!(
                                    "type {:?} when it is done",
                                    crate::engine::PAUSE_PHRASE
                                ),
                            });
                        }
                        Err(o) => return Err(o),
                    }
                }
            }
        }
        self.write_state_autocommit(step, Status::Acknowledged, None, None)
            .await?;
        let ev = step_event(Action::PauseAcknowledged, phase, step);
        self.record(ev).await;
        self.emit(EngineEvent::StepDone {
            step: step.id.clone(),
            outcome: StepOutcome::Acknowledged,
            duration: Duration::ZERO,
            rows: None,
            captured: None,
        });
        Ok(())
    }
}

/// How the operator answered a typed confirmation; audited as `as_str`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Confirmation {
    Accepted,
    /// Something else was typed (kept for the audit).
    Wrong(String),
    /// The operator stopped.
    Declined,
    /// No answer can be had (no terminal, no `--confirm`).
    Missing,
}

impl Confirmation {
    fn of(reply: &Reply, expected: &str) -> Confirmation {
        match reply {
            Reply::Typed(t) if t.trim() == expected => Confirmation::Accepted,
            Reply::Typed(t) => Confirmation::Wrong(t.clone()),
            Reply::Quit => Confirmation::Declined,
            Reply::Run
            | Reply::Skip(_)
            | Reply::RollbackThrough(_)
            | Reply::Wait
            | Reply::Missing => Confirmation::Missing,
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Confirmation::Accepted => "accepted",
            Confirmation::Wrong(_) => "wrong",
            Confirmation::Declined => "declined",
            Confirmation::Missing => "missing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_confirmations_audited_by_their_old_words() {
        let of = |r: Reply| Confirmation::of(&r, "drop table t");
        assert_eq!(
            of(Reply::Typed(" drop table t ".into())),
            Confirmation::Accepted
        );
        assert_eq!(
            of(Reply::Typed("drop t".into())),
            Confirmation::Wrong("drop t".into())
        );
        assert_eq!(of(Reply::Quit), Confirmation::Declined);
        assert_eq!(of(Reply::Missing), Confirmation::Missing);
        assert_eq!(of(Reply::Run), Confirmation::Missing);
        let words: Vec<_> = [
            Confirmation::Accepted,
            Confirmation::Wrong(String::new()),
            Confirmation::Declined,
            Confirmation::Missing,
        ]
        .iter()
        .map(Confirmation::as_str)
        .collect();
        assert_eq!(words, ["accepted", "wrong", "declined", "missing"]);
    }
}
