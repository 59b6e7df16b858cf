//! Before each step: the standbys' replay lag against `max_replica_lag`
//! (a warning, audited) and the runbook's `[[health]]` gates (a breach
//! stops and asks: continue, roll back the applied steps, or stop).

use super::{Exec, step_event};
use crate::audit::record::Action;
use crate::engine::health::{Breach, first_breach};
use crate::engine::state::Status;
use crate::engine::{Ask, EngineEvent, Outcome, Reply};
use crate::pg::Severity;
use crate::runbook::{Phase, Step};

impl Exec<'_> {
    /// Ok to run `step`, or how the session ends.
    pub(super) async fn before_step(&mut self, phase: &Phase, step: &Step) -> Result<(), Outcome> {
        if let Some(limit) = step.settings.max_replica_lag {
            self.replica_lag_warning(phase, step, limit).await;
        }
        if self.s.runbook.health.is_empty() {
            return Ok(());
        }
        let breach = first_breach(self.client(), &self.s.runbook.health, self.rehearsal_open).await;
        match breach {
            None => Ok(()),
            Some(b) => self.breached(phase, step, b).await,
        }
    }

    async fn replica_lag_warning(
        &mut self,
        phase: &Phase,
        step: &Step,
        limit: std::time::Duration,
    ) {
        let over: Vec<String> = match crate::monitor::replicas(self.client()).await {
            Ok(rs) => rs.iter().filter_map(|r| r.over(limit)).collect(),
            Err(e) => vec![format!(
                "cannot read the standbys' lag: {}",
                crate::text::one_line(&crate::pg::redact(&e.to_string()))
            )],
        };
        for message in over {
            self.emit(EngineEvent::Notice {
                step: Some(step.id.clone()),
                severity: Severity::Warning,
                message: message.clone(),
            });
            let mut ev = step_event(Action::ReplicaLag, phase, step);
            ev.outcome = Some("over".into());
            ev.message = Some(message);
            self.record(ev).await;
        }
    }

    pub(super) async fn breached(
        &mut self,
        phase: &Phase,
        step: &Step,
        b: Breach,
    ) -> Result<(), Outcome> {
        let described = b.describe();
        self.emit(EngineEvent::Notice {
            step: Some(step.id.clone()),
            severity: Severity::Warning,
            message: described.clone(),
        });
        let reply = self
            .ask(Ask::HealthBreach {
                step: step.id.clone(),
                gate: b.gate.clone(),
                value: b.value.clone(),
                limit: b.limit.clone(),
            })
            .await;
        let choice = match &reply {
            Reply::Run => "continue",
            Reply::RollbackThrough(_) => "roll back",
            _ => "stop",
        };
        let mut ev = step_event(Action::Health, phase, step);
        ev.outcome = Some(choice.into());
        ev.message = Some(described.clone());
        self.record(ev).await;
        match reply {
            Reply::Run => Ok(()),
            Reply::RollbackThrough(_) => {
                // The oldest applied step: everything this runbook applied,
                // newest first, each with its own phrase (as `pgpilot rollback`).
                let oldest = self
                    .steps_in_order()
                    .into_iter()
                    .map(|(_, _, s)| s.id)
                    .find(|id| {
                        self.states.get(id).is_some_and(|s| {
                            matches!(s.status, Status::Applied | Status::RollingBack)
                        })
                    });
                if let Some(id) = oldest {
                    self.rollback_through(&id).await?;
                }
                Err(Outcome::Refused(format!(
                    "{described}; the applied steps were rolled back"
                )))
            }
            _ => Err(Outcome::Refused(format!(
                "{described}; stopped before step {}",
                step.id
            ))),
        }
    }
}
