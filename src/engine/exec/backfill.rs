//! A backfill step: `key` walked in keyset order, the step's SQL run once per
//! batch with `$1`/`$2` bound to the batch's first and last key, each batch a
//! transaction of its own that also writes the cursor into
//! `pgpilot.step_state`, so a run after a crash resumes after the last
//! committed batch and every row is touched exactly once.

use std::time::Instant;

use tokio_postgres::Statement;

use super::attempt::RetryCause;
use super::backfill_batch::{Ahead, Batch};
use super::recover::StepEnd;
use super::sql::{LOCK_NOT_AVAILABLE, SqlFailure, cancellable, failure};
use super::walk::{Pace, Progress, Walk};
use super::{Exec, Part, step_event};
use crate::analysis::StepAnalysis;
use crate::audit::record::Action;
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome, StepOutcome};
use crate::runbook::{Backfill, Phase, Step};

/// The cursor reset at a walk's fresh start (a batch writes its own in
/// its transaction: see backfill_batch.rs).
const CURSOR_SQL: &str = "
UPDATE pgpilot.step_state
   SET cursor = $3, rows_done = $4, batches_done = $5, rows_total = $6, updated_at = now()
 WHERE runbook_id = $1 AND step_id = $2";

impl Exec<'_> {
    pub(super) async fn backfill_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
        previous: Option<Status>,
    ) -> Result<StepEnd, Outcome> {
        let (Some(sql), Some(b)) = (step.sql(), step.backfill.as_ref()) else {
            return Ok(StepEnd::Done);
        };
        let (text, resolved) = self.with_values(step, a, &sql.text, Part::Step)?;
        let a = resolved.as_ref();
        // Once for the whole backfill, never per batch.
        if let Some(phrase) = &a.confirm {
            self.confirm(step, phrase, &a.statements).await?;
        }
        if self.blocker_guard(phase, step, &a.statements).await? == StepEnd::Aborted {
            return Ok(StepEnd::Aborted);
        }
        let walk = Walk::resolve(self.client(), b, &text)
            .await
            .map_err(|m| Outcome::Failed(format!("backfill step {}: {m}", step.id)))?;
        if self.rehearsal_open {
            return self.rehearse_backfill(phase, step, b, &walk).await;
        }
        // An interrupted backfill resumes after its last committed batch;
        // any other earlier state starts the walk again from the first key.
        let (cursor, done) = match previous {
            Some(Status::InProgress) => self
                .saved_cursor(step, Status::InProgress)
                .await?
                .unwrap_or((None, 0)),
            _ => (None, 0),
        };
        self.begin_backfill(phase, step, b, &text, cursor.as_deref(), done)
            .await?;
        let started = Instant::now();
        let (progress, batches, touched_total) = self
            .walk_batches(phase, step, b, &walk, cursor, done, Part::Step)
            .await?;
        self.write_state_autocommit(
            step,
            Status::Applied,
            Some(progress.done),
            Some(started.elapsed()),
        )
        .await?;
        let mut ev = step_event(Action::StepSuccess, phase, step);
        ev.duration_ms = Some(started.elapsed().as_millis() as u64);
        ev.rows = Some(touched_total);
        ev.message = Some(format!(
            "walked {} key(s) in {batches} batch(es) this run, {touched_total} row(s) changed",
            progress.done
        ));
        self.record(ev).await;
        self.emit(EngineEvent::StepDone {
            step: step.id.clone(),
            outcome: StepOutcome::Applied,
            duration: started.elapsed(),
            rows: Some(touched_total),
            captured: None,
        });
        Ok(StepEnd::Done)
    }

    /// Batches from `cursor` to the last key; each batch's progress shown,
    /// audited at most once per 1 % (and at least once a minute), and its
    /// resizes audited. Returns the progress, batches and rows changed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn walk_batches(
        &mut self,
        phase: &Phase,
        step: &Step,
        b: &Backfill,
        walk: &Walk,
        cursor: Option<String>,
        done: u64,
        part: Part,
    ) -> Result<(Progress, u64, u64), Outcome> {
        let mut progress =
            Progress::new(done, walk.estimate(self.client(), cursor.as_deref()).await);
        let mut pace = Pace::new(b);
        let mut cursor = cursor;
        let mut batches = 0u64;
        let mut touched_total = 0u64;
        // Prepared once for the whole walk, not once per batch: a round trip
        // less for each batch.
        let cursor_st = self
            .prepare_cursor(step)
            .await
            .map_err(|f| Outcome::Failed(f.message))?;
        // The next batch's transaction is opened with this one's COMMIT
        // only when nothing is to run between the two: no pause, no
        // standby or health gate to read (they use this connection).
        let prefetch = b.batch_pause.is_zero()
            && step.settings.max_replica_lag.is_none()
            && self.s.runbook.health.is_empty();
        let mut ahead: Option<Ahead> = None;
        self.forget_orders();
        loop {
            let batch = self
                .batch_with_retries(
                    phase,
                    step,
                    walk,
                    &cursor_st,
                    &mut cursor,
                    &mut progress,
                    (pace.size, part),
                    (&mut ahead, prefetch),
                )
                .await?;
            let (walked, touched) = match batch {
                Batch::Finished => break,
                Batch::Committed {
                    walked,
                    touched,
                    took,
                } => {
                    pace.took(took);
                    (walked, touched)
                }
            };
            batches += 1;
            touched_total += touched;
            if let Some(note) = progress.audit_due() {
                let mut ev = step_event(Action::Progress, phase, step);
                ev.rows = Some(progress.done);
                ev.message = Some(note);
                self.record_aside(ev).await;
            }
            if let Some(resized) = pace.after_batch(walked) {
                let mut ev = step_event(Action::Progress, phase, step);
                ev.message = Some(resized);
                self.record_aside(ev).await;
            }
            self.emit(progress.event(&step.id, pace.size, false));
            // An order may pause the walk: not with a transaction open.
            if !self.io.held.is_empty() {
                self.drop_ahead(&mut ahead).await;
            }
            if !b.batch_pause.is_zero() && self.sleep_or_cancel(b.batch_pause).await {
                return Err(self.backfill_stopped(phase, step, &progress).await);
            }
            self.apply_orders(phase, step, &mut pace, &progress).await?;
            self.between_batches(phase, step, &progress).await?;
        }
        Ok((progress, batches, touched_total))
    }

    /// The step's `in_progress` row (with the cursor reset on a fresh start)
    /// and its start record.
    async fn begin_backfill(
        &mut self,
        phase: &Phase,
        step: &Step,
        b: &Backfill,
        text: &str,
        cursor: Option<&str>,
        done: u64,
    ) -> Result<(), Outcome> {
        self.emit(EngineEvent::StepStarted {
            step: step.id.clone(),
            attempt: 1,
            of: 1,
        });
        let mut ev = step_event(Action::StepStart, phase, step);
        ev.sql = Some(text.to_string());
        ev.message = Some(match cursor {
            Some(c) => format!(
                "backfill resumes after key {c} ({done} key(s) walked before), batch_size {}",
                b.batch_size
            ),
            None => format!("backfill starts, batch_size {}", b.batch_size),
        });
        self.record(ev).await;
        self.write_state_autocommit(step, Status::InProgress, None, None)
            .await?;
        if cursor.is_none() {
            self.reset_cursor(step).await?;
        }
        Ok(())
    }

    /// The cursor a walk left in the target while the step is still in
    /// `status` there: read afresh, never from memory, since a walk earlier
    /// in this session (retried from the TUI) has moved it.
    pub(super) async fn saved_cursor(
        &self,
        step: &Step,
        status: Status,
    ) -> Result<Option<(Option<String>, u64)>, Outcome> {
        let failed = |e: tokio_postgres::Error| {
            Outcome::Failed(format!(
                "cannot read the cursor of {}: {}",
                step.id,
                SqlFailure::from_pg(&e).message
            ))
        };
        let row = self
            .client()
            .query_opt(
                "SELECT cursor, rows_done FROM pgpilot.step_state
                  WHERE runbook_id = $1 AND step_id = $2 AND status = $3",
                &[&self.s.runbook.id, &step.id, &status.as_str()],
            )
            .await
            .map_err(failed)?;
        let Some(row) = row else { return Ok(None) };
        let cursor: Option<String> = row.try_get("cursor").map_err(failed)?;
        let done: Option<i64> = row.try_get("rows_done").map_err(failed)?;
        Ok(Some((cursor, done.unwrap_or(0).max(0) as u64)))
    }

    /// A fresh walk: no cursor, nothing walked.
    pub(super) async fn reset_cursor(&mut self, step: &Step) -> Result<(), Outcome> {
        self.client()
            .execute(
                CURSOR_SQL,
                &[
                    &self.s.runbook.id,
                    &step.id,
                    &None::<String>,
                    &0i64,
                    &0i64,
                    &None::<i64>,
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                Outcome::Failed(format!(
                    "cannot reset the cursor of {}: {}",
                    step.id,
                    SqlFailure::from_pg(&e).message
                ))
            })
    }

    /// One batch, retried on lock_timeout (55P03) as any step is; see
    /// [`Exec::batch`] for `ahead` and `prefetch`.
    #[allow(clippy::too_many_arguments)]
    async fn batch_with_retries(
        &mut self,
        phase: &Phase,
        step: &Step,
        walk: &Walk,
        cursor_st: &Statement,
        cursor: &mut Option<String>,
        progress: &mut Progress,
        (size, part): (u64, Part),
        (ahead, prefetch): (&mut Option<Ahead>, bool),
    ) -> Result<Batch, Outcome> {
        let settings = step.settings.clone();
        let of = settings.lock_retries + 1;
        let mut attempt = 1;
        loop {
            let attempt_started = Instant::now();
            match self
                .batch(
                    step, walk, cursor_st, cursor, progress, size, ahead, prefetch,
                )
                .await
            {
                Ok(b) => return Ok(b),
                Err(f) if f.sqlstate.as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < of => {
                    let waited = attempt_started.elapsed();
                    if self
                        .retry_after(
                            phase,
                            step,
                            &settings,
                            attempt,
                            of,
                            RetryCause::LockTimeout(&f),
                            &f,
                            waited,
                        )
                        .await
                    {
                        return Err(self.backfill_stopped(phase, step, progress).await);
                    }
                    attempt += 1;
                }
                Err(f) => return Err(self.backfill_failed(phase, step, progress, f, part).await),
            }
        }
    }

    /// A backfill that failed stays `in_progress` with its cursor: the
    /// batches committed are applied, and a later run resumes after them.
    async fn backfill_failed(
        &mut self,
        phase: &Phase,
        step: &Step,
        progress: &Progress,
        f: SqlFailure,
        part: Part,
    ) -> Outcome {
        if f.cancelled_by_operator {
            return self.backfill_stopped(phase, step, progress).await;
        }
        self.last_failed = Some(step.id.clone());
        let action = match part {
            Part::Step => Action::StepFailure,
            Part::Rollback => Action::RollbackFailure,
        };
        let mut ev = step_event(action, phase, step);
        ev.sqlstate = f.sqlstate.clone();
        ev.rows = Some(progress.done);
        ev.message = Some(format!(
            "{} (resumable: {} key(s) walked; the next run resumes after the last batch)",
            f.message, progress.done
        ));
        self.record(ev).await;
        self.emit(EngineEvent::StepFailed {
            step: step.id.clone(),
            sqlstate: f.sqlstate.clone(),
            message: f.message.clone(),
        });
        Outcome::Failed(match part {
            Part::Step => format!("step {} failed: {}", step.id, f.message),
            Part::Rollback => format!("rollback of {} failed: {}", step.id, f.message),
        })
    }

    /// Cancelled by the operator: the batches committed stay, resumable.
    pub(super) async fn backfill_stopped(
        &mut self,
        phase: &Phase,
        step: &Step,
        progress: &Progress,
    ) -> Outcome {
        self.last_failed = Some(step.id.clone());
        let mut ev = step_event(Action::Cancel, phase, step);
        ev.rows = Some(progress.done);
        ev.message = Some(format!(
            "backfill stopped after {} key(s); resumable: the next run resumes after the last batch",
            progress.done
        ));
        self.record(ev).await;
        self.emit(EngineEvent::StepFailed {
            step: step.id.clone(),
            sqlstate: None,
            message: "stopped by the operator; resumable".into(),
        });
        Outcome::Interrupted
    }

    /// In a rehearsal: the first batch inside the rehearsal's transaction,
    /// and what the whole would walk, instead of row locks on the whole table.
    async fn rehearse_backfill(
        &mut self,
        phase: &Phase,
        step: &Step,
        b: &Backfill,
        walk: &Walk,
    ) -> Result<StepEnd, Outcome> {
        self.emit(EngineEvent::StepStarted {
            step: step.id.clone(),
            attempt: 1,
            of: 1,
        });
        let started = Instant::now();
        let setup = super::attempt::local_timeouts("SAVEPOINT pgpilot_step", &step.settings);
        let client = &self.s.conn.client;
        let ran = async {
            client.simple_query(&setup).await?;
            let touched = match walk.next_batch(client, None, b.batch_size).await? {
                Some(bounds) => {
                    client
                        .execute(&walk.statement, &[&bounds.first, &bounds.last])
                        .await?
                }
                None => 0,
            };
            client
                .batch_execute("RELEASE SAVEPOINT pgpilot_step")
                .await?;
            Ok::<u64, tokio_postgres::Error>(touched)
        };
        let (ran, cancelled) =
            cancellable(self.io, &self.s.spec, &self.s.conn.cancel, None, ran).await;
        let touched = match ran {
            Ok(t) => t,
            Err(e) => {
                let _ = self
                    .client()
                    .batch_execute("ROLLBACK TO SAVEPOINT pgpilot_step")
                    .await;
                let f = failure(&e, cancelled);
                let progress = Progress::new(0, 0);
                return Err(self
                    .backfill_failed(phase, step, &progress, f, Part::Step)
                    .await);
            }
        };
        let total = walk.estimate(self.client(), None).await;
        let batches = total.div_ceil(b.batch_size.max(1));
        let message = format!(
            "rehearsal ran the first batch ({touched} row(s) changed); the whole would walk about {total} key(s) in about {batches} batch(es) of {}",
            b.batch_size
        );
        self.emit(EngineEvent::Notice {
            step: Some(step.id.clone()),
            severity: crate::pg::Severity::Info,
            message: message.clone(),
        });
        self.rehearsal.changed.push(step.id.clone());
        let mut ev = step_event(Action::StepSuccess, phase, step);
        ev.rows = Some(touched);
        ev.message = Some(message);
        self.record(ev).await;
        self.emit(EngineEvent::StepDone {
            step: step.id.clone(),
            outcome: StepOutcome::Rehearsed,
            duration: started.elapsed(),
            rows: Some(touched),
            captured: None,
        });
        Ok(StepEnd::Done)
    }
}
