//! One batch of a backfill in its own transaction, in one round trip when
//! the walk runs without a pause: the step's SQL with the batch's bounds,
//! the cursor write and COMMIT, then the next batch's `BEGIN` with the
//! step's timeouts and its bounds, all sent without waiting between them.
//!
//! tokio-postgres sends each request when its future is first polled, and
//! `join!(biased; …)` polls them in order, so the whole group goes out at
//! once. The server runs them in order: if the step's SQL fails, the
//! transaction is aborted, the cursor write fails too and `COMMIT` ends it
//! as a rollback; the first failure is the one reported. The cursor write
//! fails when the step's state row is gone (`1 / count(*)`), so a batch
//! whose cursor was not written never commits.

use std::time::{Duration, Instant};

use tokio_postgres::Statement;

use super::Exec;
use super::sql::{SqlFailure, cancellable, failure};
use super::walk::{BatchBounds, Progress, Walk};
use crate::engine::failpoint;
use crate::runbook::Step;

/// The cursor a batch writes in its own transaction; an error (22012) when
/// the state row is gone, so that the batch's COMMIT rolls it back.
const CURSOR_SQL: &str = "
WITH saved AS (
  UPDATE pgpilot.step_state
     SET cursor = $3, rows_done = $4, batches_done = $5, rows_total = $6, updated_at = now()
   WHERE runbook_id = $1 AND step_id = $2
  RETURNING 1)
SELECT 1 / count(*) AS saved FROM saved";

/// division_by_zero: the cursor write found no state row.
const STATE_ROW_GONE: &str = "22012";

/// How one batch ended.
pub(super) enum Batch {
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

/// The next batch's transaction, opened in the round trip of the batch
/// before it (after that one's COMMIT), with its bounds read for `size`
/// keys, or why opening it failed.
pub(super) struct Ahead {
    size: u64,
    bounds: Result<Option<BatchBounds>, SqlFailure>,
}

/// What a batch's requests returned.
enum Ran {
    Finished,
    Committed {
        bounds: BatchBounds,
        touched: u64,
        took: Duration,
        total: u64,
        next: Option<Result<Option<BatchBounds>, tokio_postgres::Error>>,
    },
}

/// Why a batch's requests failed; `open`: a transaction may be left open.
struct Failed {
    error: tokio_postgres::Error,
    state_row_gone: bool,
    open: bool,
}

impl Failed {
    fn open(error: tokio_postgres::Error) -> Failed {
        Failed {
            error,
            state_row_gone: false,
            open: true,
        }
    }
}

impl Exec<'_> {
    /// The cursor write, prepared once per walk.
    pub(super) async fn prepare_cursor(&self, step: &Step) -> Result<Statement, SqlFailure> {
        self.client().prepare(CURSOR_SQL).await.map_err(|e| {
            SqlFailure::plain(format!(
                "cannot prepare the cursor of {}: {}",
                step.id,
                SqlFailure::from_pg(&e).message
            ))
        })
    }

    /// One batch in its own transaction with the step's timeouts, writing
    /// the cursor (`cursor_st`) in it. Its transaction and bounds come from
    /// `ahead` when the batch before opened them for this size, else from
    /// a round trip of their own. With `prefetch`, the next batch's
    /// transaction is opened and its bounds read right after this one's
    /// COMMIT, in the same round trip, and left in `ahead`: the caller
    /// runs nothing on this connection before the next batch but
    /// [`Exec::drop_ahead`]. On an error no transaction is left open.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn batch(
        &mut self,
        step: &Step,
        walk: &Walk,
        cursor_st: &Statement,
        cursor: &mut Option<String>,
        progress: &mut Progress,
        size: u64,
        ahead: &mut Option<Ahead>,
        prefetch: bool,
    ) -> Result<Batch, SqlFailure> {
        let setup = super::attempt::local_timeouts("BEGIN", &step.settings);
        let opened = match ahead.take() {
            Some(a) if a.size == size => match a.bounds {
                Ok(bounds) => Some(bounds),
                Err(f) => {
                    let _ = self.client().batch_execute("ROLLBACK").await;
                    return Err(f);
                }
            },
            // Resized since it was opened: read again in a fresh transaction.
            Some(_) => {
                let _ = self.client().batch_execute("ROLLBACK").await;
                None
            }
            None => None,
        };
        let client = &self.s.conn.client;
        let (runbook_id, step_id) = (&self.s.runbook.id, &step.id);
        let (done_before, batches_before) = (progress.done, progress.batches);
        let progress_ref = &*progress;
        let cursor_ref = cursor.as_deref();
        let ran = async {
            let bounds = match opened {
                Some(bounds) => bounds,
                None => {
                    let (began, bounds) = tokio::join!(
                        biased;
                        client.simple_query(&setup),
                        walk.next_batch(client, cursor_ref, size),
                    );
                    began.map_err(Failed::open)?;
                    bounds.map_err(Failed::open)?
                }
            };
            let Some(bounds) = bounds else {
                client.batch_execute("COMMIT").await.map_err(Failed::open)?;
                return Ok::<_, Failed>(Ran::Finished);
            };
            let done = done_before + bounds.walked;
            let total = progress_ref.total_after(done, walk, &bounds.last_text);
            let last = Some(bounds.last_text.clone());
            let (done_i, batches_i, total_i) =
                (done as i64, (batches_before + 1) as i64, Some(total as i64));
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [runbook_id, step_id, &last, &done_i, &batches_i, &total_i];
            let started = Instant::now();
            let (touched, saved, committed, next) = tokio::join!(
                biased;
                async {
                    let t = client
                        .execute(&walk.statement, &[&bounds.first, &bounds.last])
                        .await;
                    (t, started.elapsed())
                },
                client.execute(cursor_st, &params),
                async {
                    // Killed here, the batch's requests may be on their way
                    // but its COMMIT is not.
                    failpoint::point("backfill-batch-before-commit");
                    client.batch_execute("COMMIT").await
                },
                async {
                    if !prefetch {
                        return None;
                    }
                    let (began, bounds) = tokio::join!(
                        biased;
                        client.simple_query(&setup),
                        walk.next_batch(client, Some(&bounds.last_text), size),
                    );
                    Some(began.and(bounds))
                },
            );
            // With `prefetch`, the next BEGIN ran after this COMMIT (or
            // after the rollback a failed COMMIT is): a transaction is open.
            let fail = |error, state_row_gone| Failed {
                error,
                state_row_gone,
                open: prefetch,
            };
            let (touched, took) = (touched.0.map_err(|e| fail(e, false))?, touched.1);
            saved.map_err(|e| {
                let gone = e.code().is_some_and(|c| c.code() == STATE_ROW_GONE);
                fail(e, gone)
            })?;
            committed.map_err(|e| fail(e, false))?;
            Ok(Ran::Committed {
                bounds,
                touched,
                took,
                total,
                next,
            })
        };
        let (ran, cancelled) =
            cancellable(self.io, &self.s.spec, &self.s.conn.cancel, None, ran).await;
        let (bounds, touched, took, total, next) = match ran {
            Ok(Ran::Finished) => return Ok(Batch::Finished),
            Ok(Ran::Committed {
                bounds,
                touched,
                took,
                total,
                next,
            }) => (bounds, touched, took, total, next),
            Err(f) => {
                if f.open {
                    let _ = self.client().batch_execute("ROLLBACK").await;
                }
                if f.state_row_gone {
                    return Err(SqlFailure::plain(format!(
                        "the state row of {} is gone; the batch is rolled back",
                        step.id
                    )));
                }
                return Err(failure(&f.error, cancelled));
            }
        };
        failpoint::point("backfill-batch-committed");
        *ahead = next.map(|bounds| Ahead {
            size,
            bounds: bounds.map_err(|e| failure(&e, cancelled)),
        });
        *cursor = Some(bounds.last_text.clone());
        progress.committed(bounds.walked, total, took);
        Ok(Batch::Committed {
            walked: bounds.walked,
            touched,
            took,
        })
    }

    /// Ends the next batch's transaction opened ahead, before anything
    /// else uses the connection or the walk waits (a pause, an order).
    pub(super) async fn drop_ahead(&mut self, ahead: &mut Option<Ahead>) {
        if ahead.take().is_some() {
            let _ = self.client().batch_execute("ROLLBACK").await;
        }
    }
}
