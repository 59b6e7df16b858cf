//! Between two batches of a backfill: the standbys and the health gates
//! have their say. A standby replaying further behind than
//! `max_replica_lag` pauses the walk until it catches up (a standby whose
//! lag cannot be read counts as behind: fail closed); a `[[health]]` gate
//! breached stops before the next batch and asks, as before a step. The
//! batches committed stay: a stop is resumable.

use std::time::Duration;

use super::walk::Progress;
use super::{Exec, step_event};
use crate::audit::record::Action;
use crate::engine::health::first_breach;
use crate::engine::{EngineEvent, Outcome};
use crate::pg::Severity;
use crate::runbook::{Phase, Step};

/// How often a paused walk looks at the standbys again.
const LAG_POLL: Duration = Duration::from_secs(1);

impl Exec<'_> {
    /// Ok to run the next batch (of `size` keys), or how the session ends.
    pub(super) async fn between_batches(
        &mut self,
        phase: &Phase,
        step: &Step,
        progress: &Progress,
        size: u64,
    ) -> Result<(), Outcome> {
        if let Some(limit) = step.settings.max_replica_lag {
            self.wait_for_standbys(phase, step, progress, limit, size)
                .await?;
        }
        if self.s.runbook.health.is_empty() {
            return Ok(());
        }
        match first_breach(self.client(), &self.s.runbook.health, self.rehearsal_open).await {
            None => Ok(()),
            // Boxed: a breach may roll back, and a rollback may walk batches.
            Some(b) => Box::pin(self.breached(phase, step, b)).await,
        }
    }

    /// Waits while a standby is over `limit`; says once that the walk
    /// paused and why, and once that it resumed, each in the log and audit,
    /// and on the gauge while it waits.
    async fn wait_for_standbys(
        &mut self,
        phase: &Phase,
        step: &Step,
        progress: &Progress,
        limit: Duration,
        size: u64,
    ) -> Result<(), Outcome> {
        let mut paused = false;
        loop {
            let over = match crate::monitor::replica_lag_over(self.client(), limit).await {
                Ok(over) => over,
                Err(e) => Some(format!(
                    "cannot read the standbys' lag ({}): counted as behind",
                    crate::text::one_line(&crate::pg::redact(&e.to_string()))
                )),
            };
            let Some(why) = over else { break };
            if !paused {
                paused = true;
                self.say_throttle(phase, step, progress, format!("paused: {why}"))
                    .await;
                self.emit(progress.event(&step.id, size, false, Some("standby lag")));
            }
            if self.sleep_or_cancel(LAG_POLL).await {
                self.emit(progress.event(&step.id, size, false, None));
                return Err(self.backfill_stopped(phase, step, progress).await);
            }
        }
        if paused {
            self.say_throttle(
                phase,
                step,
                progress,
                "resumed: every standby replays within max_replica_lag".into(),
            )
            .await;
            self.emit(progress.event(&step.id, size, false, None));
        }
        Ok(())
    }

    async fn say_throttle(
        &mut self,
        phase: &Phase,
        step: &Step,
        progress: &Progress,
        what: String,
    ) {
        self.emit(EngineEvent::Notice {
            step: Some(step.id.clone()),
            severity: Severity::Warning,
            message: what.clone(),
        });
        let mut ev = step_event(Action::Progress, phase, step);
        ev.rows = Some(progress.done);
        ev.message = Some(what);
        self.record(ev).await;
    }
}
