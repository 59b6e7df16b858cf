//! A backfill step: `key` walked in keyset order, the step's SQL run once per
//! batch with `$1`/`$2` bound to the batch's first and last key, each batch a
//! transaction of its own that also writes the cursor into
//! `pgpilot.step_state`, so a run after a crash resumes after the last
//! committed batch and every row is touched exactly once.

use std::time::{Duration, Instant};

use tokio_postgres::Statement;

use super::attempt::RetryCause;
use super::recover::StepEnd;
use super::sql::{LOCK_NOT_AVAILABLE, SqlFailure, cancellable, failure};
use super::walk::{Pace, Progress, Walk};
use super::{Exec, Part, step_event};
use crate::analysis::StepAnalysis;
use crate::audit::record::Action;
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome, StepOutcome, failpoint};
use crate::runbook::{Backfill, Phase, Step};

/// The cursor a batch writes in its own transaction.
const CURSOR_SQL: &str = "
UPDATE pgpilot.step_state
   SET cursor = $3, rows_done = $4, batches_done = $5, rows_total = $6, updated_at = now()
 WHERE runbook_id = $1 AND step_id = $2";

/// How one batch ended.
enum Batch {
    /// It committed `walked` keys; `touched` rows were changed; its
    /// statement took `took`.
    Committed {
        walked: u64,
        touched: u64,
        took: Duration,
    },
    /// No key is left past the cursor.
    Finished,
}

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
        let cursor_st = self.client().prepare(CURSOR_SQL).await.map_err(|e| {
            Outcome::Failed(format!(
                "cannot prepare the cursor of {}: {}",
                step.id,
                SqlFailure::from_pg(&e).message
            ))
        })?;
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
                    pace.size,
                    part,
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
                // Synced on a blocking thread while the next batch runs and
                // copied with the next record: a progress record is never
                // worth a batch's wait (the cursor is saved in the batch's
                // own transaction either way).
                self.s.recorder.write_ahead(ev).await;
            }
            if let Some(resized) = pace.after_batch(walked) {
                let mut ev = step_event(Action::Progress, phase, step);
                ev.message = Some(resized);
                self.record(ev).await;
            }
            self.emit(progress.event(&step.id, pace.size, false, None));
            if !b.batch_pause.is_zero() && self.sleep_or_cancel(b.batch_pause).await {
                return Err(self.backfill_stopped(phase, step, &progress).await);
            }
            self.apply_orders(phase, step, &mut pace, &progress).await?;
            self.between_batches(phase, step, &progress, pace.size)
                .await?;
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

    /// One batch, retried on lock_timeout (55P03) as any step is.
    #[allow(clippy::too_many_arguments)]
    async fn batch_with_retries(
        &mut self,
        phase: &Phase,
        step: &Step,
        walk: &Walk,
        cursor_st: &Statement,
        cursor: &mut Option<String>,
        progress: &mut Progress,
        size: u64,
        part: Part,
    ) -> Result<Batch, Outcome> {
        let settings = step.settings.clone();
        let of = settings.lock_retries + 1;
        let mut attempt = 1;
        loop {
            let attempt_started = Instant::now();
            match self
                .batch(step, walk, cursor_st, cursor, progress, size)
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

    /// One batch in its own transaction, in three round trips: BEGIN with
    /// the step's timeouts and the batch's bounds; the step's SQL with them
    /// bound and the cursor (`cursor_st`, prepared once per walk); COMMIT.
    /// tokio-postgres sends each request when its future is first polled
    /// and `join!(biased; …)` polls them in order, so each group goes out
    /// without waiting between its requests. If one fails, the transaction
    /// is aborted, the requests after it fail too, and the first failure is
    /// the one reported. COMMIT waits for the cursor's row count: a cursor
    /// that was not written must not let the batch commit.
    async fn batch(
        &mut self,
        step: &Step,
        walk: &Walk,
        cursor_st: &Statement,
        cursor: &mut Option<String>,
        progress: &mut Progress,
        size: u64,
    ) -> Result<Batch, SqlFailure> {
        let setup = super::attempt::local_timeouts("BEGIN", &step.settings);
        let client = &self.s.conn.client;
        let (runbook_id, step_id) = (&self.s.runbook.id, &step.id);
        let (done_before, batches_before) = (progress.done, progress.batches);
        let progress_ref = &*progress;
        let ran = async {
            let (began, bounds) = tokio::join!(
                biased;
                client.simple_query(&setup),
                walk.next_batch(client, cursor.as_deref(), size),
            );
            began?;
            let Some(bounds) = bounds? else {
                client.batch_execute("COMMIT").await?;
                return Ok(None);
            };
            let done = done_before + bounds.walked;
            let total = progress_ref.total_after(done, walk, &bounds.last_text);
            let last = Some(bounds.last_text.clone());
            let (done_i, batches_i, total_i) =
                (done as i64, (batches_before + 1) as i64, Some(total as i64));
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [runbook_id, step_id, &last, &done_i, &batches_i, &total_i];
            let started = Instant::now();
            let (touched, saved) = tokio::join!(
                biased;
                async {
                    let t = client
                        .execute(&walk.statement, &[&bounds.first, &bounds.last])
                        .await;
                    (t, started.elapsed())
                },
                client.execute(cursor_st, &params),
            );
            let (touched, took) = (touched.0?, touched.1);
            let saved = saved?;
            Ok::<_, tokio_postgres::Error>(Some((bounds, touched, took, total, saved)))
        };
        let (ran, cancelled) =
            cancellable(self.io, &self.s.spec, &self.s.conn.cancel, None, ran).await;
        let (bounds, touched, took, total, saved) = match ran {
            Ok(None) => return Ok(Batch::Finished),
            Ok(Some(r)) => r,
            Err(e) => {
                let _ = self.client().batch_execute("ROLLBACK").await;
                return Err(failure(&e, cancelled));
            }
        };
        if saved != 1 {
            let _ = self.client().batch_execute("ROLLBACK").await;
            return Err(SqlFailure::plain(format!(
                "the state row of {} is gone; the batch is rolled back",
                step.id
            )));
        }
        failpoint::point("backfill-batch-before-commit");
        if let Err(e) = self.client().batch_execute("COMMIT").await {
            let _ = self.client().batch_execute("ROLLBACK").await;
            return Err(SqlFailure::from_pg(&e));
        }
        failpoint::point("backfill-batch-committed");
        *cursor = Some(bounds.last_text.clone());
        progress.committed(bounds.walked, total, took);
        Ok(Batch::Committed {
            walked: bounds.walked,
            touched,
            took,
        })
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
