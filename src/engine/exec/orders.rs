//! The operator's orders to a running backfill (`Control::TogglePause`,
//! `Resize`, `StopAfterBatch`), applied between two batches: a batch in
//! flight always commits first, so its cursor is saved and a stop is
//! resumable. Each order is shown and audited (`Action::Progress`).

use super::walk::{Pace, Progress};
use super::{Exec, step_event};
use crate::audit::record::Action;
use crate::engine::{Control, EngineEvent, Outcome};
use crate::pg::Severity;
use crate::runbook::{Phase, Step};

impl Exec<'_> {
    /// Orders that came before the walk started belong to no walk.
    pub(super) fn forget_orders(&mut self) {
        self.io.held.clear();
    }

    /// Applies the orders held since the last batch; while paused, waits
    /// for the next order. Ok to run the next batch, or how the session
    /// ends (a stop or a cancel: interrupted, resumable).
    pub(super) async fn apply_orders(
        &mut self,
        phase: &Phase,
        step: &Step,
        pace: &mut Pace,
        progress: &Progress,
    ) -> Result<(), Outcome> {
        let mut paused = false;
        loop {
            let orders: Vec<Control> = std::mem::take(&mut self.io.held);
            for order in orders {
                match order {
                    // `cancelled()` keeps every order but a cancel.
                    Control::Cancel => {}
                    Control::TogglePause => {
                        paused = !paused;
                        let said = if paused {
                            format!(
                                "paused by the operator after {} key(s); the walk waits before the next batch",
                                progress.done
                            )
                        } else {
                            "resumed by the operator".to_string()
                        };
                        let word = if paused { "paused" } else { "resumed" };
                        self.say_order(phase, step, progress, word, said).await;
                        self.emit(progress.event(&step.id, pace.size, paused, None));
                    }
                    Control::Resize(r) => {
                        let said = pace.order(r);
                        self.say_order(phase, step, progress, "resized", said).await;
                        self.emit(progress.event(&step.id, pace.size, paused, None));
                    }
                    Control::StopAfterBatch => {
                        self.say_order(
                            phase,
                            step,
                            progress,
                            "stopped",
                            format!(
                                "stop asked by the operator: stopping after {} key(s), before the next batch",
                                progress.done
                            ),
                        )
                        .await;
                        return Err(self.backfill_stopped(phase, step, progress).await);
                    }
                }
            }
            if !paused {
                return Ok(());
            }
            // Paused: nothing runs until the next order; a cancel (or the
            // driver gone) stops.
            match self.io.control.recv().await {
                Some(Control::Cancel) | None => {
                    return Err(self.backfill_stopped(phase, step, progress).await);
                }
                Some(order) => self.io.held.push(order),
            }
        }
    }

    async fn say_order(
        &mut self,
        phase: &Phase,
        step: &Step,
        progress: &Progress,
        outcome: &str,
        what: String,
    ) {
        self.emit(EngineEvent::Notice {
            step: Some(step.id.clone()),
            severity: Severity::Info,
            message: what.clone(),
        });
        let mut ev = step_event(Action::Progress, phase, step);
        ev.rows = Some(progress.done);
        ev.outcome = Some(outcome.into());
        ev.message = Some(what);
        self.record(ev).await;
    }
}
