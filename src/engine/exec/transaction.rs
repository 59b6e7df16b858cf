//! A step in a transaction: one try, the one-round-trip form, and COMMIT
//! together with its state row.

use std::time::Instant;

use tokio_postgres::Client;

use super::Exec;
use super::attempt::local_timeouts;
use super::expect::{StepResult, evaluate, last_result};
use super::sql::{SqlFailure, Watched, cancellable, failure};
use super::state_row::{StateWrite, upsert_state};
use crate::engine::failpoint;
use crate::engine::recorder::TxnCopies;
use crate::engine::state::Status;
use crate::runbook::{Settings, Step, StepKind};

/// The audit copies inside a step's transaction, if any.
pub(super) async fn insert_copies(
    client: &Client,
    copies: Option<&TxnCopies>,
) -> Result<(), tokio_postgres::Error> {
    match copies {
        Some(c) => c.insert(client).await,
        None => Ok(()),
    }
}

/// A failed audit copy inside the step's transaction lets the step run
/// again without it, unless the operator cancelled.
pub(super) fn check_copied(
    copied: Result<(), tokio_postgres::Error>,
    cancelled: bool,
) -> Result<(), Attempt> {
    match copied {
        Ok(()) => Ok(()),
        Err(e) if !cancelled => Err(Attempt::AuditCopy(e)),
        Err(e) => Err(failure(&e, cancelled).into()),
    }
}

/// Why one try of a transactional step ended without it.
pub(super) enum Attempt {
    Failed(SqlFailure),
    /// The audit copies sent first in its transaction failed, so nothing of
    /// the step ran; it can run again without them.
    AuditCopy(tokio_postgres::Error),
}

impl From<SqlFailure> for Attempt {
    fn from(f: SqlFailure) -> Attempt {
        Attempt::Failed(f)
    }
}

impl Attempt {
    pub(super) fn into_failure(self) -> SqlFailure {
        match self {
            Attempt::Failed(f) => f,
            Attempt::AuditCopy(e) => SqlFailure::from_pg(&e),
        }
    }
}

impl Exec<'_> {
    pub(super) async fn transaction_once(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
    ) -> Result<StepResult, SqlFailure> {
        let raced;
        let sql = if failpoint::yield_at("after-statements") {
            // A yield's cancel arriving once the statements have their locks
            // and are done, before COMMIT: the backend cancels itself there.
            self.queue.yielded = Some(super::queue::Yielded::default());
            raced = format!("{sql};\nSELECT pg_cancel_backend(pg_backend_pid())");
            raced.as_str()
        } else {
            sql
        };
        let copies = if self.rehearsal_open || !self.target_confirmed || !self.txn_copies {
            None
        } else {
            self.s.recorder.unsynced_copies(&self.s.conn.client)
        };
        if copies.is_some() {
            match self.transaction_try(step, sql, settings, copies).await {
                Err(Attempt::Failed(f)) => return Err(f),
                Ok(r) => return Ok(r),
                Err(Attempt::AuditCopy(e)) => {
                    // Nothing of the step ran. From now on its records are
                    // synced locally before each COMMIT instead.
                    self.txn_copies = false;
                    self.warn(vec![format!(
                        "the audit copy inside the step's transaction failed ({}); the step runs again, its audit records synced locally before COMMIT",
                        SqlFailure::from_pg(&e).message
                    )]);
                }
            }
        }
        self.transaction_try(step, sql, settings, None)
            .await
            .map_err(Attempt::into_failure)
    }

    /// One try of a transactional step. Its setup, the audit `copies` (see
    /// `Recorder::unsynced_copies`) and its statements are sent together,
    /// each a message of its own, so the SET LOCALs bind the statements on
    /// any server version. A failure (or a cancel) anywhere aborts the
    /// transaction and the rest fails with it: the statements never run
    /// outside it, nor unless the audit copies succeeded.
    ///
    /// When nothing has to be seen before COMMIT (no `expect`, no `capture`,
    /// and no audit record that is neither on disk nor among the copies),
    /// the state row and COMMIT go in the same round trip: if anything
    /// before them failed, the server ends the transaction as a rollback.
    /// Otherwise the results are checked first ([`Exec::commit_with_state`]).
    pub(super) async fn transaction_try(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
        copies: Option<TxnCopies>,
    ) -> Result<StepResult, Attempt> {
        let (begin, commit, abort) = if self.rehearsal_open {
            (
                "SAVEPOINT pgpilot_step",
                "RELEASE SAVEPOINT pgpilot_step",
                "ROLLBACK TO SAVEPOINT pgpilot_step",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        let setup = local_timeouts(begin, settings);
        let status = if matches!(step.kind, StepKind::Check | StepKind::Verify) {
            Status::Passed
        } else {
            Status::Applied
        };
        let copied_upto = copies.as_ref().map_or(0, TxnCopies::upto);
        let one_trip = !self.rehearsal_open
            && step.expect.is_none()
            && step.capture.is_none()
            && self.s.recorder.may_commit(copied_upto);
        if one_trip {
            // Prepared before the transaction: a failure leaves nothing open.
            let upsert = self.upsert_statement().await?;
            // The state row's rows are known only after COMMIT here: they
            // are in the step's success record.
            let w = StateWrite {
                timed_by_server: true,
                ..self.state_params(step, status, None, None)
            };
            return self
                .one_trip(sql, &setup, copies.as_ref(), &upsert, &w)
                .await;
        }
        let started = Instant::now();
        let in_txn = copies.as_ref();
        let client = &self.s.conn.client;
        let watched = Watched {
            queue: &mut self.queue,
            executor: &self.s.conn.target,
            pid: self.s.conn_pid,
        };
        let ((setup_done, copied, messages), cancelled) = cancellable(
            self.io,
            &self.s.spec,
            &self.s.conn.cancel,
            Some(watched),
            async {
                tokio::join!(
                    biased;
                    client.simple_query(&setup),
                    insert_copies(client, in_txn),
                    client.simple_query(sql),
                )
            },
        )
        .await;
        failpoint::point("in-transaction");
        let outcome = async {
            setup_done.map_err(|e| failure(&e, cancelled))?;
            check_copied(copied, cancelled)?;
            let messages = messages.map_err(|e| failure(&e, cancelled))?;
            failpoint::point("after-statements");
            let result = evaluate(
                step,
                &messages,
                &mut self.captured,
                self.pinned_capture.as_deref(),
                &self.fresh_captures,
            )?;
            let w = self.state_params(step, status, Some(result.rows), Some(started.elapsed()));
            if self.rehearsal_open {
                if !self.s.recorder.durable().await {
                    return Err(self.unrecorded().into());
                }
                self.exec_state(&w).await?;
                failpoint::point("before-commit");
                return Ok((result, None));
            }
            Ok((result, Some(w)))
        }
        .await;
        match outcome {
            Ok((r, None)) => {
                self.query(commit).await?;
                failpoint::point("after-commit");
                Ok(r)
            }
            Ok((r, Some(w))) => {
                self.commit_with_state(&w, copies.as_ref()).await?;
                failpoint::point("after-commit");
                Ok(r)
            }
            Err(f) => {
                let _ = self.client().batch_execute(abort).await;
                Err(f)
            }
        }
    }

    /// The whole transaction in one round trip (see `transaction_try`):
    /// setup, audit copies, statements, state row, COMMIT, and then the
    /// audit's copies of records on disk, as in `commit_with_state`.
    pub(super) async fn one_trip(
        &mut self,
        sql: &str,
        setup: &str,
        copies: Option<&TxnCopies>,
        upsert: &tokio_postgres::Statement,
        w: &StateWrite,
    ) -> Result<StepResult, Attempt> {
        let client = &self.s.conn.client;
        let recorder = &mut self.s.recorder;
        let watched = Watched {
            queue: &mut self.queue,
            executor: &self.s.conn.target,
            pid: self.s.conn_pid,
        };
        let ((setup_done, copied, messages, state, commit, notes, ()), cancelled) = cancellable(
            self.io,
            &self.s.spec,
            &self.s.conn.cancel,
            Some(watched),
            async {
                tokio::join!(
                    biased;
                    client.simple_query(setup),
                    insert_copies(client, copies),
                    client.simple_query(sql),
                    upsert_state(client, upsert, w),
                    client.simple_query("COMMIT"),
                    recorder.copy_after_commit(client, copies),
                    async {
                        // Once the connection task has had its turn to
                        // send: killed here, the server still commits.
                        if failpoint::armed() {
                            tokio::task::yield_now().await;
                            failpoint::point("commit-sent");
                        }
                    },
                )
            },
        )
        .await;
        self.warn(notes);
        let outcome = async {
            setup_done.map_err(|e| failure(&e, cancelled))?;
            check_copied(copied, cancelled)?;
            let messages = messages.map_err(|e| failure(&e, cancelled))?;
            state?;
            commit.map_err(|e| failure(&e, cancelled))?;
            Ok(last_result(&messages))
        }
        .await;
        if outcome.is_err() {
            // COMMIT has ended the transaction as a rollback, unless it was
            // never reached (a broken connection): then this does.
            let _ = self.client().batch_execute("ROLLBACK").await;
        } else if let Some(c) = copies {
            self.s.recorder.copied(c);
        }
        failpoint::point("after-commit");
        outcome
    }

    /// The state row, then COMMIT, in one round trip: tokio-postgres sends
    /// each request when its future is first polled, and `join!(biased; …)`
    /// polls them in this order. COMMIT is sent once every audit record
    /// written is on disk or among the `copies` made in this transaction;
    /// when it must wait for the local sync, the state row is written
    /// meanwhile. If the state row fails, the transaction is aborted and
    /// COMMIT ends it as a rollback; if the sync fails, ROLLBACK does. Then
    /// the audit's database copies of records on disk go to the copier's
    /// connection or, without one, follow COMMIT in the same round trip in a
    /// transaction of their own; either way they can neither undo the step
    /// nor be undone by it (see `Recorder::copy_after_commit`).
    pub(super) async fn commit_with_state(
        &mut self,
        w: &StateWrite,
        copies: Option<&TxnCopies>,
    ) -> Result<(), SqlFailure> {
        let upsert = match self.upsert_statement().await {
            Ok(u) => u,
            Err(f) => {
                // Prepared inside the step's transaction, which it aborted.
                let _ = self.client().batch_execute("ROLLBACK").await;
                return Err(f);
            }
        };
        let copied_upto = copies.map_or(0, TxnCopies::upto);
        let client = &self.s.conn.client;
        let recorder = &mut self.s.recorder;
        let (state, ended) = tokio::join!(
            biased;
            upsert_state(client, &upsert, w),
            async move {
                if !recorder.ready_to_commit(copied_upto).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return None;
                }
                failpoint::point("before-commit");
                let (commit, notes) = tokio::join!(
                    biased;
                    client.simple_query("COMMIT"),
                    recorder.copy_after_commit(client, copies),
                );
                if commit.is_ok()
                    && let Some(c) = copies
                {
                    recorder.copied(c);
                }
                Some((commit, notes))
            },
        );
        let Some((commit, notes)) = ended else {
            return Err(self.unrecorded());
        };
        self.warn(notes);
        state?;
        commit.map_err(|e| SqlFailure::from_pg(&e))?;
        Ok(())
    }

    /// Why a step was rolled back when its start record could not be synced.
    pub(super) fn unrecorded(&self) -> SqlFailure {
        SqlFailure::plain(format!(
            "cannot write the local audit log ({}); rolled back: pgpilot changes nothing it cannot record",
            self.s.recorder.local_error().unwrap_or_default()
        ))
    }
}
