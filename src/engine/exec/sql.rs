//! Running SQL on the executor's connection under the operator's cancel,
//! and the failures it reports.

use std::time::Duration;

use tokio_postgres::{CancelToken, SimpleQueryMessage};

use super::Exec;
use super::queue::{QueueWatch, Verdict, WATCH_INTERVAL};
use crate::engine::EngineIo;
use crate::pg::{ConnSpec, Target};

/// SQLSTATE lock_not_available: lock_timeout expired.
pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE query_canceled: a cancel request or statement_timeout.
pub(super) const QUERY_CANCELED: &str = "57014";
/// SQLSTATE no_active_sql_transaction: the WARNING of a ROLLBACK outside one.
pub(super) const NO_ACTIVE_TRANSACTION: &str = "25P01";

/// A statement's or step's failure, as the server reported it.
#[derive(Debug)]
pub(super) struct SqlFailure {
    pub(super) sqlstate: Option<String>,
    pub(super) message: String,
    pub(super) cancelled_by_operator: bool,
}

impl SqlFailure {
    pub(super) fn from_pg(e: &tokio_postgres::Error) -> SqlFailure {
        let (sqlstate, message) = match e.as_db_error() {
            Some(db) => (Some(db.code().code().to_string()), db.message().to_string()),
            None => (None, crate::pg::redact(&e.to_string())),
        };
        SqlFailure {
            sqlstate,
            message,
            cancelled_by_operator: false,
        }
    }

    pub(super) fn plain(message: impl Into<String>) -> SqlFailure {
        SqlFailure {
            sqlstate: None,
            message: message.into(),
            cancelled_by_operator: false,
        }
    }
}

/// A failed statement as a step failure; `cancelled`: the operator had asked.
pub(super) fn failure(e: &tokio_postgres::Error, cancelled: bool) -> SqlFailure {
    let mut f = SqlFailure::from_pg(e);
    f.cancelled_by_operator = cancelled && f.sqlstate.as_deref() == Some(QUERY_CANCELED);
    if f.cancelled_by_operator {
        f.message = "cancelled by the operator".into();
    }
    f
}

/// The queue watch of a statement (see queue.rs): the executor's host and pid.
pub(super) struct Watched<'a> {
    pub(super) queue: &'a mut QueueWatch,
    pub(super) executor: &'a Target,
    pub(super) pid: i32,
}

/// Waits for `requests` on the executor's connection; if the operator
/// cancels meanwhile, the running statement gets the protocol's cancel
/// request. The second value says whether it did. While an attempt is
/// watched, the queue behind a lock wait is looked at every
/// [`WATCH_INTERVAL`]; a yield sends the same cancel request (and is
/// recorded in the watch, not in the second value). The cancel is sent
/// before the result is looked at again, so it cannot outlive the attempt
/// unseen (see `QueueWatch::yielded`).
pub(super) async fn cancellable<T>(
    io: &mut EngineIo,
    spec: &ConnSpec,
    token: &CancelToken,
    mut watched: Option<Watched<'_>>,
    requests: impl Future<Output = T>,
) -> (T, bool) {
    tokio::pin!(requests);
    let mut cancelled = false;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + WATCH_INTERVAL, WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let watching = !cancelled && watched.as_ref().is_some_and(|w| w.queue.active());
        tokio::select! {
            biased;
            r = &mut requests => return (r, cancelled),
            () = io.cancelled(), if !cancelled => {
                cancelled = true;
                let _ = spec.cancel_query(token).await;
            }
            _ = tick.tick(), if watching => {
                if let Some(w) = watched.as_mut()
                    && let Verdict::Yield = w.queue.look(spec, w.executor, w.pid, &io.events).await
                {
                    let _ = spec.cancel_query(token).await;
                }
            }
        }
    }
}

impl Exec<'_> {
    /// Sleeps, unless the operator cancels first (true).
    pub(super) async fn sleep_or_cancel(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            () = self.io.cancelled() => true,
        }
    }

    /// Runs SQL, sending a protocol cancel request if the operator cancels.
    pub(super) async fn query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, SqlFailure> {
        let watched = Watched {
            queue: &mut self.queue,
            executor: &self.s.conn.target,
            pid: self.s.conn_pid,
        };
        let (result, cancelled) = cancellable(
            self.io,
            &self.s.spec,
            &self.s.conn.cancel,
            Some(watched),
            self.s.conn.client.simple_query(sql),
        )
        .await;
        result.map_err(|e| failure(&e, cancelled))
    }
}
