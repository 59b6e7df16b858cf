//! Typed confirmations, pauses and skips: what the operator answers, audited.

use std::time::Duration;

use super::{Exec, step_event};
use crate::analysis::StatementAnalysis;
use crate::audit::record::{Action, Event};
use crate::engine::state::Status;
use crate::engine::{Ask, EngineEvent, Outcome, Reply, StepOutcome};
use crate::runbook::{Phase, Step};

impl Exec<'_> {
    /// Checks a typed answer; a wrong or missing one is audited and refuses the run.
    pub(super) async fn confirmation(
        &mut self,
        step: Option<&str>,
        expected: &str,
        reply: Reply,
    ) -> Result<(), Outcome> {
        let (outcome, typed) = match &reply {
            Reply::Typed(t) if t.trim() == expected => ("accepted", t.clone()),
            Reply::Typed(t) => ("wrong", t.clone()),
            Reply::Quit => ("declined", String::new()),
            _ => ("missing", String::new()),
        };
        let mut ev = Event::new(Action::Confirmation);
        ev.step = step.map(str::to_string);
        ev.outcome = Some(outcome.into());
        ev.message = Some(match outcome {
            "accepted" => format!("typed {expected:?}"),
            "wrong" => format!("expected {expected:?}, typed {typed:?}"),
            _ => format!("expected {expected:?}, no answer"),
        });
        self.record(ev).await;
        match outcome {
            "accepted" => Ok(()),
            "declined" => Err(Outcome::Refused("stopped by the operator".into())),
            "wrong" => Err(Outcome::Refused(format!(
                "the phrase typed does not match {expected:?}; nothing was run"
            ))),
            _ => Err(Outcome::Refused(match step {
                Some(s) => format!(
                    "step {s} needs the phrase {expected:?}: type it, or pass --confirm {s}={expected:?}; nothing was run"
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
            let wrong = matches!(&reply, Reply::Typed(t) if t.trim() != expected);
            match self.confirmation(step, &expected, reply).await {
                Err(_) if wrong && self.s.options.interactive => {
                    self.emit(EngineEvent::Notice {
                        step: step.map(str::to_string),
                        severity: "WARNING".into(),
                        message: format!(
                            "the phrase typed does not match {expected:?}; nothing was run"
                        ),
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
        let ask = Ask::Acknowledge {
            step: step.id.clone(),
            instructions,
        };
        // A skip answers a pause too; anything else is a phrase, audited like one.
        loop {
            match self.ask(ask.clone()).await {
                Reply::Skip(reason) => return self.skip(phase, step, reason).await,
                reply => {
                    let wrong = matches!(&reply, Reply::Typed(t) if t.trim() != crate::engine::PAUSE_PHRASE);
                    match self
                        .confirmation(Some(&step.id), crate::engine::PAUSE_PHRASE, reply)
                        .await
                    {
                        Ok(()) => break,
                        Err(_) if wrong && self.s.options.interactive => {
                            self.emit(EngineEvent::Notice {
                                step: Some(step.id.clone()),
                                severity: "WARNING".into(),
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
