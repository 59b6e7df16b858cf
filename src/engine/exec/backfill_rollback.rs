//! A backfill's rollback that uses `$1`/`$2`: walked in batches like the
//! step, with its own cursor (the step is `rolling_back` meanwhile, and an
//! interrupted rollback resumes after its last batch). A rollback without
//! them runs once, as any step's.

use std::time::Instant;

use super::walk::Walk;
use super::{Exec, Part, step_event};
use crate::audit::record::Action;
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome};
use crate::runbook::{Backfill, Phase, Step};

impl Exec<'_> {
    pub(super) async fn rollback_backfill(
        &mut self,
        phase: &Phase,
        step: &Step,
        b: &Backfill,
        sql: &str,
    ) -> Result<(), Outcome> {
        let walk = Walk::resolve(self.client(), b, sql)
            .await
            .map_err(|m| Outcome::Failed(format!("rollback of {}: {m}", step.id)))?;
        let rolling_back = self
            .states
            .get(&step.id)
            .is_some_and(|s| s.status == Status::RollingBack);
        let (cursor, done) = if rolling_back {
            self.saved_cursor(step, Status::RollingBack)
                .await?
                .unwrap_or((None, 0))
        } else {
            (None, 0)
        };
        self.emit(EngineEvent::StepStarted {
            step: step.id.clone(),
            attempt: 1,
            of: 1,
        });
        let mut ev = step_event(Action::RollbackStart, phase, step);
        ev.sql = Some(sql.to_string());
        ev.message = Some(match &cursor {
            Some(c) => format!("batched rollback resumes after key {c}"),
            None => format!("batched rollback starts, batch_size {}", b.batch_size),
        });
        self.record(ev).await;
        self.write_state_autocommit(step, Status::RollingBack, None, None)
            .await?;
        if cursor.is_none() {
            self.reset_cursor(step).await?;
        }
        let started = Instant::now();
        let (progress, batches, touched) = self
            .walk_batches(phase, step, b, &walk, cursor, done, Part::Rollback)
            .await?;
        self.write_state_autocommit(
            step,
            Status::RolledBack,
            Some(progress.done),
            Some(started.elapsed()),
        )
        .await?;
        let mut ev = step_event(Action::RollbackSuccess, phase, step);
        ev.duration_ms = Some(started.elapsed().as_millis() as u64);
        ev.rows = Some(touched);
        ev.message = Some(format!(
            "walked {} key(s) in {batches} batch(es), {touched} row(s) changed",
            progress.done
        ));
        self.record(ev).await;
        self.failed_steps.remove(&step.id);
        self.emit(EngineEvent::RolledBack {
            step: step.id.clone(),
            duration: started.elapsed(),
        });
        Ok(())
    }
}
