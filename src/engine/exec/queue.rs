//! `max_queue_stall`: while a step's statement waits for a lock, the
//! sessions queued behind it are watched; once the oldest of them has
//! waited longer than the limit, pgpilot cancels its own statement (the
//! protocol's cancel request), the queue drains, and the attempt loop
//! retries after a backoff (see attempt.rs). PostgreSQL queues a lock
//! request behind every *waiting* request it conflicts with, not only
//! behind the holders (Explicit Locking, 13.3), so a DDL waiting for ACCESS
//! EXCLUSIVE stalls every later reader of the table: this bounds that harm
//! directly instead of through lock_timeout.
//!
//! Cost: one query every [`WATCH_INTERVAL`] on a connection of its own
//! (`application_name` `pgpilot watch`, opened the first time a watched
//! statement runs longer than one interval), and only while a step's
//! statement runs. It reads the executor's own row of `pg_stat_activity`;
//! `pg_locks` and `pg_blocking_pids()` are read only while the executor
//! waits on a lock (`wait_event_type = 'Lock'`), inside a CASE branch the
//! server does not evaluate otherwise.

use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::SimpleQueryMessage;

use crate::engine::EngineEvent;
use crate::pg::{ConnSpec, Connection, Target};
use crate::runbook::format_duration;

/// How often the queue behind a waiting statement is looked at.
pub(super) const WATCH_INTERVAL: Duration = Duration::from_millis(50);

/// The watch's own bounds: it must never queue or run long itself.
const SETUP: &str = "SET statement_timeout = '1s'; SET lock_timeout = '200ms'";

/// What one look saw. `$1` is the executor's pid. The wait of each queued
/// session is from `pg_locks.waitstart` (PostgreSQL 14+; null for a moment
/// after the wait began, then counted as 0) or, before 14, from the start
/// of its statement.
fn look_sql(pid: i32, waitstart: bool) -> String {
    let since = if waitstart {
        "coalesce(l.waitstart, clock_timestamp())"
    } else {
        "a.query_start"
    };
    format!(
        "SELECT coalesce(me.wait_event_type, '') AS wait_type, coalesce(me.wait_event, '') AS wait_event,
  CASE WHEN me.wait_event_type = 'Lock' THEN json_build_object(
    'queued', (SELECT coalesce(json_agg(json_build_object(
        'pid', a.pid,
        'ms', greatest(0, (extract(epoch FROM clock_timestamp() - {since}) * 1000))::bigint,
        'application', coalesce(a.application_name, ''),
        'user', coalesce(a.usename::text, '')) ORDER BY {since}), '[]'::json)
      FROM pg_stat_activity a
      LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
     WHERE a.wait_event_type = 'Lock' AND a.pid <> {pid}
       AND {pid} = ANY (pg_blocking_pids(a.pid))),
    'holders', (SELECT coalesce(json_agg(json_build_object(
        'pid', b.pid,
        'application', coalesce(b.application_name, ''),
        'user', coalesce(b.usename::text, ''),
        'state', coalesce(b.state, ''))), '[]'::json)
      FROM pg_stat_activity b
     WHERE b.pid = ANY (pg_blocking_pids({pid}))))::text END AS queue
  FROM pg_stat_activity me WHERE me.pid = {pid}"
    )
}

/// A session waiting for a lock behind the executor.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(super) struct Queued {
    pub(super) pid: i32,
    pub(super) ms: u64,
    pub(super) application: String,
    pub(super) user: String,
}

/// A session holding a lock the executor waits for.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(super) struct Holder {
    pub(super) pid: i32,
    pub(super) application: String,
    pub(super) user: String,
    pub(super) state: String,
}

#[derive(Debug, Default, Deserialize)]
struct Queue {
    queued: Vec<Queued>,
    holders: Vec<Holder>,
}

/// One look at the executor and the queue behind it.
#[derive(Debug, Default)]
pub(super) struct Look {
    /// The executor waits for a lock, on this kind of object
    /// (`relation`, `transactionid`, `virtualxid`, …).
    pub(super) waiting_on: Option<String>,
    pub(super) queued: Vec<Queued>,
    pub(super) holders: Vec<Holder>,
}

impl Look {
    fn oldest(&self) -> Duration {
        Duration::from_millis(self.queued.iter().map(|q| q.ms).max().unwrap_or(0))
    }
}

fn parse_look(messages: &[SimpleQueryMessage]) -> Option<Look> {
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })?;
    let wait_type = row.try_get("wait_type").ok().flatten().unwrap_or_default();
    let wait_event = row.try_get("wait_event").ok().flatten().unwrap_or_default();
    let queue: Queue = row
        .try_get("queue")
        .ok()
        .flatten()
        .and_then(|q| serde_json::from_str(q).ok())
        .unwrap_or_default();
    Some(Look {
        waiting_on: (wait_type == "Lock").then(|| wait_event.to_string()),
        queued: queue.queued,
        holders: queue.holders,
    })
}

/// `pid 4242 (nightly-report, alice)`, its texts made safe for a terminal.
fn named(pid: i32, application: &str, user: &str) -> String {
    let parts: Vec<String> = [application, user]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(crate::text::one_line)
        .collect();
    if parts.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({})", parts.join(", "))
    }
}

/// Why pgpilot cancelled its own statement: who waited behind it and who
/// held what it waited for.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Yielded {
    pub(super) queued: Vec<Queued>,
    pub(super) oldest: Duration,
    pub(super) holders: Vec<Holder>,
}

impl Yielded {
    /// What held the table, for the message of a step that never got it.
    pub(super) fn held_by(&self) -> String {
        if self.holders.is_empty() {
            return "a session that ended meanwhile".into();
        }
        self.holders
            .iter()
            .map(|h| {
                let state = if h.state.is_empty() {
                    String::new()
                } else {
                    format!(", {}", crate::text::one_line(&h.state))
                };
                format!("{}{state}", named(h.pid, &h.application, &h.user))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// "yielded: 3 sessions waited 210ms behind us (pid 7 (app, bob), …);
    /// the lock is held by pid 4242 (nightly-report, alice), idle in transaction".
    pub(super) fn describe(&self, limit: Duration) -> String {
        let n = self.queued.len();
        if n == 0 {
            return "yielded: cancelled its own statement".into();
        }
        let mut who: Vec<String> = self
            .queued
            .iter()
            .take(3)
            .map(|q| named(q.pid, &q.application, &q.user))
            .collect();
        if n > 3 {
            who.push("…".into());
        }
        format!(
            "yielded: {n} session{} waited {} behind us ({}), over max_queue_stall = {}; the lock is held by {}",
            if n == 1 { "" } else { "s" },
            format_duration(Duration::from_millis(self.oldest.as_millis() as u64)),
            who.join(", "),
            format_duration(limit),
            self.held_by()
        )
    }
}

/// What a watched statement is allowed to yield.
#[derive(Debug, Clone, Copy)]
pub(super) struct Watching {
    pub(super) limit: Duration,
    /// Outside a transaction (CONCURRENTLY): only a wait for a table lock
    /// is yielded. A build's later waits (for old snapshots, `virtualxid`)
    /// are its final phases, never cancelled by pgpilot: the lock it holds
    /// then (SHARE UPDATE EXCLUSIVE) queues neither readers nor writers.
    pub(super) autocommit: bool,
}

/// The watch's connection and what the current attempt saw.
#[derive(Default)]
pub(super) struct QueueWatch {
    conn: Option<Connection>,
    waitstart: bool,
    /// Connecting failed once: the session goes on with lock_timeout alone.
    unavailable: bool,
    /// Set by `attempts` around one attempt of a step or a rollback.
    pub(super) watching: Option<Watching>,
    pub(super) step: String,
    /// The cancel pgpilot sent in this attempt, once it did.
    pub(super) yielded: Option<Yielded>,
    /// The queue last shown, to tell the driver only of changes.
    shown: Option<(usize, u64)>,
    /// The step's yields before this attempt.
    yields: u32,
}

/// Whether a statement waiting on a lock of kind `waiting_on` (None: not
/// waiting) yields to `queued` sessions the oldest of which waited `oldest`.
fn must_yield(waiting_on: Option<&str>, w: Watching, queued: usize, oldest: Duration) -> bool {
    let yieldable = match waiting_on {
        None => false,
        Some("relation") => true,
        // A CONCURRENTLY build's final waits (virtualxid): never cancelled.
        Some(_) => !w.autocommit,
    };
    yieldable && queued > 0 && oldest > w.limit
}

/// What the caller of [`QueueWatch::look`] must do.
pub(super) enum Verdict {
    Wait,
    Yield,
}

impl QueueWatch {
    /// Whether a statement running now is watched.
    pub(super) fn active(&self) -> bool {
        self.watching.is_some() && self.yielded.is_none() && !self.unavailable
    }

    async fn connect(
        &mut self,
        spec: &ConnSpec,
        executor: &Target,
        events: &tokio::sync::mpsc::UnboundedSender<EngineEvent>,
    ) -> bool {
        if self.conn.as_ref().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() && !self.unavailable {
            let spec = spec.with_application_name("pgpilot watch");
            match spec.connect().await {
                Ok(c) if c.target == *executor && c.client.batch_execute(SETUP).await.is_ok() => {
                    let version = c
                        .client
                        .simple_query("SHOW server_version_num")
                        .await
                        .ok()
                        .and_then(|m| {
                            m.iter().find_map(|m| match m {
                                SimpleQueryMessage::Row(r) => {
                                    r.try_get(0).ok().flatten().and_then(|v| v.parse().ok())
                                }
                                _ => None,
                            })
                        })
                        .unwrap_or(0u32);
                    self.waitstart = version >= 140_000;
                    self.conn = Some(c);
                }
                other => {
                    self.unavailable = true;
                    let why = match other {
                        Err(e) => crate::pg::redact(&e.to_string()),
                        Ok(_) => {
                            "it did not reach the executor's server, or its setup failed".into()
                        }
                    };
                    let _ = events.send(EngineEvent::Notice {
                        step: Some(self.step.clone()),
                        severity: crate::pg::Severity::Warning,
                        message: format!(
                            "max_queue_stall: could not open the watch connection ({why}); for the rest of the session lock_timeout alone bounds the wait"
                        ),
                    });
                }
            }
        }
        self.conn.is_some()
    }

    /// One look; `Yield` once the oldest session queued behind the
    /// executor's lock wait has waited longer than the limit (recorded in
    /// `yielded`: the caller sends the cancel).
    pub(super) async fn look(
        &mut self,
        spec: &ConnSpec,
        executor: &Target,
        pid: i32,
        events: &tokio::sync::mpsc::UnboundedSender<EngineEvent>,
    ) -> Verdict {
        let Some(w) = self.watching else {
            return Verdict::Wait;
        };
        if !self.connect(spec, executor, events).await {
            return Verdict::Wait;
        }
        let Some(conn) = self.conn.as_ref() else {
            return Verdict::Wait;
        };
        let sql = look_sql(pid, self.waitstart);
        let Some(look) = conn
            .client
            .simple_query(&sql)
            .await
            .ok()
            .and_then(|m| parse_look(&m))
        else {
            return Verdict::Wait;
        };
        let oldest = look.oldest();
        let shown = (look.queued.len(), oldest.as_millis() as u64 / 50);
        if self.shown != Some(shown) && (look.waiting_on.is_some() || self.shown.is_some()) {
            self.shown = Some(shown);
            let _ = events.send(EngineEvent::QueueBehind {
                step: self.step.clone(),
                sessions: look.queued.len(),
                oldest,
                limit: w.limit,
                yields: self.yields,
            });
        }
        if must_yield(look.waiting_on.as_deref(), w, look.queued.len(), oldest) {
            self.yielded = Some(Yielded {
                queued: look.queued,
                oldest,
                holders: look.holders,
            });
            return Verdict::Yield;
        }
        Verdict::Wait
    }

    /// Starts watching one attempt (a zero limit watches nothing).
    pub(super) fn begin(&mut self, step: &str, limit: Duration, autocommit: bool, yields: u32) {
        self.yielded = None;
        self.yields = yields;
        self.shown = None;
        self.step = step.to_string();
        self.watching = (!limit.is_zero()).then_some(Watching { limit, autocommit });
    }

    /// Ends the attempt's watch; tells the driver the queue is gone if it
    /// showed one.
    pub(super) fn end(&mut self, events: &tokio::sync::mpsc::UnboundedSender<EngineEvent>) {
        if let (Some(w), Some(_)) = (self.watching.take(), self.shown.take()) {
            let _ = events.send(EngineEvent::QueueBehind {
                step: self.step.clone(),
                sessions: 0,
                oldest: Duration::ZERO,
                limit: w.limit,
                yields: self.yields,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yield_names_who_waited_and_who_held_the_lock_safely() {
        let y = Yielded {
            queued: (1..=4)
                .map(|i| Queued {
                    pid: i,
                    ms: 200 + i as u64,
                    application: format!("reader\x1b[2J{i}"),
                    user: "bob".into(),
                })
                .collect(),
            oldest: Duration::from_millis(204),
            holders: vec![Holder {
                pid: 4242,
                application: "nightly-report".into(),
                user: "alice".into(),
                state: "idle in transaction".into(),
            }],
        };
        let m = y.describe(Duration::from_millis(200));
        assert!(
            m.starts_with("yielded: 4 sessions waited 204ms behind us (pid 1 (reader"),
            "{m}"
        );
        assert!(!m.contains('\x1b'), "{m}");
        assert!(m.contains(", …)"), "{m}");
        assert!(m.contains("max_queue_stall = 200ms"), "{m}");
        assert!(
            m.ends_with("held by pid 4242 (nightly-report, alice), idle in transaction"),
            "{m}"
        );
    }

    #[test]
    fn a_concurrent_build_yields_only_while_it_waits_for_its_table_lock() {
        let limit = Duration::from_millis(200);
        let build = Watching {
            limit,
            autocommit: true,
        };
        let txn = Watching {
            limit,
            autocommit: false,
        };
        let long = Duration::from_millis(201);
        assert!(must_yield(Some("relation"), build, 1, long));
        // Its final waits, for older transactions: pgpilot waits them out.
        assert!(!must_yield(Some("virtualxid"), build, 1, long));
        assert!(!must_yield(Some("transactionid"), build, 1, long));
        // A step in a transaction yields whatever it waits for.
        assert!(must_yield(Some("transactionid"), txn, 1, long));
        assert!(must_yield(Some("tuple"), txn, 1, long));
        // Not waiting, nobody queued, or not long enough: no yield.
        assert!(!must_yield(None, txn, 3, long));
        assert!(!must_yield(Some("relation"), txn, 0, long));
        assert!(!must_yield(Some("relation"), txn, 3, limit));
    }

    #[test]
    fn the_look_reads_pg_locks_only_while_the_executor_waits_on_a_lock() {
        let sql = look_sql(42, true);
        let case = sql
            .find("CASE WHEN me.wait_event_type = 'Lock'")
            .unwrap_or(usize::MAX);
        for costly in ["pg_locks", "pg_blocking_pids"] {
            assert!(sql.find(costly).is_some_and(|at| at > case), "{costly}");
        }
        assert!(sql.contains("l.waitstart"));
        assert!(!look_sql(42, false).contains("waitstart"));
    }
}
