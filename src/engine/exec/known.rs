//! The truth about each step, told as it is learnt: its state on the target
//! when the session opens, `failed` written when a step's transaction fails,
//! and a check's re-captured value beside the one later steps keep.

use super::Exec;
use crate::engine::state::Status;
use crate::engine::{EngineEvent, truth};
use crate::pg::Severity;
use crate::runbook::Step;

impl Exec<'_> {
    /// Right after the guards: what `pgpilot.step_state` says of each step.
    pub(super) fn emit_states(&self) {
        self.emit(EngineEvent::States(truth::known_states(
            &self.s.runbook,
            &self.states,
        )));
    }

    /// A step whose transaction failed is `failed` on the target (nothing of
    /// it committed), so the next session and `pgpilot status` say so. Not
    /// in a rehearsal (it changes nothing outside its transaction), nor for
    /// a step in autocommit, whose `in_progress` keeps it in doubt for the
    /// in-doubt check.
    pub(super) async fn record_failed(&mut self, step: &Step) {
        if self.rehearsal_open {
            return;
        }
        if let Err(crate::engine::Outcome::Failed(m)) = self
            .write_state_autocommit(step, Status::Failed, None, None)
            .await
        {
            self.emit(EngineEvent::Notice {
                step: Some(step.id.clone()),
                severity: Severity::Warning,
                message: m,
            });
        }
    }

    /// A check ran again: a value it captured differs from the one kept for
    /// the later applied steps (`pinned_capture`). Both are told, and which
    /// one later steps use; never a silent comparison against the old one.
    pub(super) fn tell_recaptured(&mut self, step: &Step, fresh: Option<String>) {
        let (Some(name), Some(fresh)) = (self.pinned_capture.clone(), fresh) else {
            return;
        };
        let Some(kept) = self.captured.get(&name).cloned() else {
            return;
        };
        if kept == fresh {
            return;
        }
        self.fresh_captures.insert(name.clone(), fresh.clone());
        let because = self
            .s
            .runbook
            .steps()
            .map(|(_, s)| s)
            .skip_while(|s| s.id != step.id)
            .find(|s| {
                self.states
                    .get(&s.id)
                    .is_some_and(|st| st.status == Status::Applied)
            })
            .map(|s| s.id.clone())
            .unwrap_or_default();
        self.emit(EngineEvent::Recaptured {
            step: step.id.clone(),
            name,
            kept,
            fresh,
            because,
        });
    }
}
