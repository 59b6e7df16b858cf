//! The live view of the server: one query per poll, on a connection of its
//! own, turned into a [`Snapshot`] of who blocks whom and which transactions
//! run long.

mod eta;
mod holders;
mod progress;
mod query;
mod replicas;
mod signal;
pub mod text;
mod tree;
mod waits;
mod watcher;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use tokio_postgres::{Client, Statement};

pub use eta::{Tracker as EtaTracker, position, weights};
pub use holders::{Holder, holders};
pub use progress::{CommandProgress, Locker, progress_sql, worth_reading};
pub use replicas::{Replica, replica_lag_over, replicas};
pub use signal::{Signal, SignalAudit, SignalOutcome, SignalReport, send_audited, signal_backend};
pub use tree::{NOT_LISTED, TreeNode, blocking_tree};
pub use waits::REREAD_AFTER;
pub use watcher::{APPLICATION_NAME, Feed, News, Watcher};

/// The `backend_type` of a client's session (pg_stat_activity).
pub const CLIENT_BACKEND: &str = "client backend";

/// One backend of the current database that is doing something or holds a
/// transaction open (or any backend of it that is not a client's session:
/// an autovacuum worker, a parallel worker).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    pub pid: i32,
    /// pg_stat_activity.backend_type: `client backend`, `autovacuum worker`,
    /// `parallel worker`, …
    pub backend_type: String,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client: String,
    pub state: String,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub xact_age_s: Option<f64>,
    pub query_age_s: Option<f64>,
    pub state_age_s: Option<f64>,
    /// `<insufficient privilege>` for other roles' sessions without pg_read_all_stats.
    pub query: String,
    pub blocked_by: Vec<i32>,
    pub waiting_for: Option<LockWait>,
}

impl Backend {
    /// The texts other sessions chose (their query, user and application
    /// names, state) as they may be shown: passwords masked, controls made
    /// visible. Applied to every backend a poll reads, before any view.
    pub fn made_safe(mut self) -> Backend {
        self.query = shown(&self.query);
        self.user = self.user.as_deref().map(shown);
        self.application = self.application.as_deref().map(shown);
        self.client = shown(&self.client);
        self.state = shown(&self.state);
        self.backend_type = shown(&self.backend_type);
        self.wait_event_type = self.wait_event_type.as_deref().map(shown);
        self.wait_event = self.wait_event.as_deref().map(shown);
        if let Some(w) = self.waiting_for.as_mut() {
            w.relation = w.relation.as_deref().map(shown);
        }
        self
    }
}

/// Made safe for a terminal and redacted: every text another session chose.
fn shown(text: &str) -> String {
    crate::text::for_terminal(&crate::text::redact(text)).into_owned()
}

/// The heavyweight lock a backend waits for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockWait {
    pub mode: String,
    pub locktype: String,
    pub relation: Option<String>,
    pub wait_s: Option<f64>,
}

/// Who a session is, as the server names it: on every entry of the tree,
/// the `blocking` list and the long transactions (flattened into them in
/// JSON), made safe like every text from other sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionName {
    /// application_name (`None` when the server shows none).
    pub application: Option<String>,
    pub user: Option<String>,
    /// The client's address, `local` for a Unix-domain socket.
    pub client: String,
    pub backend_type: String,
    /// What it waits for now (`Lock`/`relation`, `Client`/`ClientRead`, …).
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
}

impl SessionName {
    /// As [`Backend::made_safe`].
    fn made_safe(self) -> SessionName {
        let opt = |t: Option<String>| t.as_deref().map(shown);
        SessionName {
            application: opt(self.application),
            user: opt(self.user),
            client: shown(&self.client),
            backend_type: shown(&self.backend_type),
            wait_event_type: opt(self.wait_event_type),
            wait_event: opt(self.wait_event),
        }
    }

    pub fn of(b: &Backend) -> SessionName {
        SessionName {
            application: b.application.clone().filter(|a| !a.is_empty()),
            user: b.user.clone(),
            client: b.client.clone(),
            backend_type: b.backend_type.clone(),
            wait_event_type: b.wait_event_type.clone(),
            wait_event: b.wait_event.clone(),
        }
    }
}

/// A waiter in the contract's `blocking` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocked {
    pub pid: i32,
    pub blocked_by: Vec<i32>,
    pub mode: Option<String>,
    pub relation: Option<String>,
    pub wait_s: Option<f64>,
    pub query: String,
    pub state: String,
    #[serde(flatten)]
    pub name: SessionName,
    /// Sessions waiting, directly or not, behind this one.
    pub queued_behind: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongTransaction {
    pub pid: i32,
    pub state: String,
    #[serde(flatten)]
    pub name: SessionName,
    pub xact_age_s: f64,
    pub query_age_s: Option<f64>,
    pub query: String,
    pub idle_in_transaction: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Client sessions connected to the database (backend_type `client
    /// backend`, idle ones included), the monitor's own not counted.
    pub sessions: usize,
    pub active: usize,
    pub idle_in_transaction: usize,
    pub waiting: usize,
    pub longest_xact_s: Option<f64>,
}

/// The executor's own backend, when it is known and visible.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorView {
    pub pid: i32,
    pub waiting_for: Option<LockWait>,
    pub blocked_by: Vec<i32>,
    /// Sessions queued behind the executor's lock request.
    pub queued_behind: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub blocking: Vec<Blocked>,
    pub tree: Vec<TreeNode>,
    pub long_transactions: Vec<LongTransaction>,
    pub summary: Summary,
    pub executor: Option<ExecutorView>,
    pub monitor_pid: i32,
    /// Long statements reporting progress (CREATE INDEX, VACUUM, CLUSTER,
    /// ANALYZE, COPY): read only when the poll shows one may run.
    pub progress: Vec<CommandProgress>,
    /// How long the poll's query took on the server round trip, in ms,
    /// rounded to 0.1 ms (a finer figure is noise).
    #[serde(serialize_with = "tenth")]
    pub poll_ms: f64,
    /// The standbys, when the poll was asked for them (a second query; see
    /// replicas.rs); empty otherwise.
    pub replicas: Vec<Replica>,
    #[serde(skip)]
    pub backends: Vec<Backend>,
}

fn tenth<S: Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((ms * 10.0).round() / 10.0)
}

/// A monitor session: its own connection, with short timeouts so that it can
/// never be the one stalling the server, and its poll prepared once (parsed
/// and planned once per connection, one round trip per poll).
pub struct Monitor {
    client: Client,
    sql: String,
    statement: Statement,
    /// The waits read from pg_locks at earlier polls (its own lock: a
    /// poll is `&self`; never held across an await).
    waits: std::sync::Mutex<waits::KnownWaits>,
    /// The progress query for this server's version, when it could be
    /// prepared (a server before PostgreSQL 12 has not the views).
    progress: Option<Statement>,
    /// The first sample of each long statement's phase, for its ETA.
    eta: std::sync::Mutex<eta::Tracker>,
    /// The clock of the ETA samples.
    born: std::time::Instant,
    pid: i32,
    pub long_transaction: Duration,
    pub executor_pid: Option<i32>,
}

impl Monitor {
    /// Sets up the monitor's session on a connection opened for it
    /// (application_name `pgpilot-monitor`).
    pub async fn new(
        client: Client,
        long_transaction: Duration,
    ) -> Result<Monitor, tokio_postgres::Error> {
        client
            .batch_execute("SET statement_timeout = '500ms'; SET lock_timeout = '100ms'; SET idle_in_transaction_session_timeout = '5s'")
            .await?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int AS version_num, \
                        pg_backend_pid() AS pid",
                &[],
            )
            .await?;
        let version: i32 = row.try_get("version_num")?;
        let sql = query::poll_sql(version);
        let statement = client.prepare(&sql).await?;
        let progress = client.prepare(&progress::progress_sql(version)).await.ok();
        Ok(Monitor {
            sql,
            statement,
            waits: std::sync::Mutex::default(),
            progress,
            eta: std::sync::Mutex::default(),
            born: std::time::Instant::now(),
            pid: row.try_get("pid")?,
            client,
            long_transaction,
            executor_pid: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The query each poll sends (for this server's version), with its
    /// parameter (the waits already known, see [`waits`]).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The query as the next poll runs it, its parameter written in (the
    /// keys of the waits known now, or none when `known` is false: a poll
    /// that reads every wait from pg_locks), for `EXPLAIN`.
    pub fn sql_as_run(&self, known: bool) -> String {
        let keys = if known { self.known_keys() } else { Vec::new() };
        let literal = keys
            .iter()
            .map(|k| format!("'{}'", k.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        self.sql
            .replace(query::KNOWN_WAITS, &format!("ARRAY[{literal}]::text[]"))
    }

    fn known_keys(&self) -> Vec<String> {
        self.waits.lock().map(|w| w.keys()).unwrap_or_default()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A poll and, when `with_replicas`, a second query for the standbys.
    /// A failure of that second query keeps the snapshot and counts as a
    /// standby whose lag is unknown (fail closed).
    pub async fn poll_with(&self, with_replicas: bool) -> Result<Snapshot, tokio_postgres::Error> {
        let mut snapshot = self.poll().await?;
        if with_replicas {
            snapshot.replicas = match replicas(&self.client).await {
                Ok(r) => r,
                Err(e) => vec![Replica {
                    name: "replicas".into(),
                    state: None,
                    replay_lag_s: None,
                    replay_lag_bytes: None,
                    slot: None,
                    why_over: Some(format!(
                        "cannot read pg_stat_replication: {}",
                        shown(&e.to_string())
                    )),
                }],
            };
        }
        Ok(snapshot)
    }

    /// One poll: one query.
    pub async fn poll(&self) -> Result<Snapshot, tokio_postgres::Error> {
        let started = std::time::Instant::now();
        let keys = self.known_keys();
        let rows = self.client.query(&self.statement, &[&keys]).await?;
        let poll_ms = started.elapsed().as_secs_f64() * 1000.0;
        let read = rows
            .iter()
            .map(|r| {
                Ok(waits::Row {
                    backend: backend(r)?,
                    key: r.try_get("wait_key")?,
                    start_s: r.try_get("wait_start_s")?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let now_s = match rows.first() {
            Some(r) => r.try_get::<_, f64>("now_s")?,
            None => 0.0,
        };
        let backends = match self.waits.lock() {
            Ok(mut known) => known.update(read, now_s),
            // A poll that panicked midway: start afresh.
            Err(poisoned) => {
                let mut known = poisoned.into_inner();
                *known = waits::KnownWaits::default();
                known.update(read, now_s)
            }
        };
        // Every backend of the database, the monitor's own included, from
        // the same snapshot of the backend table as the rows.
        let in_database = match rows.first() {
            Some(r) => r.try_get::<_, i32>("db_backends")?,
            None => 1,
        };
        let others = backends
            .iter()
            .filter(|b| b.backend_type != CLIENT_BACKEND)
            .count();
        let sessions = usize::try_from(in_database)
            .unwrap_or(0)
            .saturating_sub(1 + others);
        let backends = backends
            .into_iter()
            .filter(|b| b.backend_type != CLIENT_BACKEND || b.is_busy())
            .collect();
        let mut snapshot = build_with_sessions(
            backends,
            Some(sessions),
            self.long_transaction,
            self.executor_pid,
            self.pid,
            poll_ms,
        );
        snapshot.progress = self.read_progress(&snapshot.backends).await;
        Ok(snapshot)
    }

    /// The progress of long statements, when the poll saw one that may
    /// report it; a failure here leaves the list empty, never the poll
    /// failed (the lock panels matter more).
    async fn read_progress(&self, backends: &[Backend]) -> Vec<CommandProgress> {
        let Some(statement) = self.progress.as_ref() else {
            return Vec::new();
        };
        if !progress::worth_reading(backends) {
            if let Ok(mut t) = self.eta.lock() {
                t.update(&mut [], self.born.elapsed().as_secs_f64());
            }
            return Vec::new();
        }
        let mut read = progress::read(&self.client, statement)
            .await
            .unwrap_or_default();
        if let Ok(mut t) = self.eta.lock() {
            t.update(&mut read, self.born.elapsed().as_secs_f64());
        }
        read
    }
}

/// One row of the poll, by column name; a column the server did not send
/// as expected is an error of the poll, not a panic.
fn backend(r: &tokio_postgres::Row) -> Result<Backend, tokio_postgres::Error> {
    let waiting_for = match r.try_get::<_, Option<String>>("wait_mode")? {
        Some(mode) => Some(LockWait {
            mode,
            locktype: r
                .try_get::<_, Option<String>>("wait_locktype")?
                .unwrap_or_default(),
            relation: r.try_get("wait_relation")?,
            wait_s: r.try_get("wait_s")?,
        }),
        None => None,
    };
    let client: Option<std::net::IpAddr> = r.try_get("client_addr")?;
    Ok(Backend {
        pid: r.try_get("pid")?,
        backend_type: r
            .try_get::<_, Option<String>>("backend_type")?
            .unwrap_or_default(),
        user: r.try_get("user_name")?,
        application: r.try_get("application")?,
        client: client.map_or_else(|| "local".to_string(), |a| a.to_string()),
        state: r.try_get("state")?,
        wait_event_type: r.try_get("wait_event_type")?,
        wait_event: r.try_get("wait_event")?,
        xact_age_s: r.try_get("xact_age_s")?,
        query_age_s: r.try_get("query_age_s")?,
        state_age_s: r.try_get("state_age_s")?,
        query: r.try_get::<_, Option<String>>("query")?.unwrap_or_default(),
        blocked_by: r
            .try_get::<_, Option<Vec<i32>>>("blocked_by")?
            .unwrap_or_default(),
        waiting_for,
    })
}

impl Backend {
    /// Doing something or holding a transaction open: an idle session
    /// without a transaction is only counted.
    fn is_busy(&self) -> bool {
        self.state != "idle" || self.xact_age_s.is_some()
    }
}

/// A snapshot from the poll's rows: pure, so it is tested without a server.
/// `sessions` in its summary counts the client sessions among `backends`.
pub fn build(
    backends: Vec<Backend>,
    long: Duration,
    executor_pid: Option<i32>,
    monitor_pid: i32,
    poll_ms: f64,
) -> Snapshot {
    build_with_sessions(backends, None, long, executor_pid, monitor_pid, poll_ms)
}

/// As [`build`], with the count of client sessions when the server gave it
/// (idle ones are counted there, not returned).
fn build_with_sessions(
    backends: Vec<Backend>,
    sessions: Option<usize>,
    long: Duration,
    executor_pid: Option<i32>,
    monitor_pid: i32,
    poll_ms: f64,
) -> Snapshot {
    let backends: Vec<Backend> = backends.into_iter().map(Backend::made_safe).collect();
    let tree = blocking_tree(&backends);
    let downstream = tree::downstream_counts(&backends);
    let blocking = backends
        .iter()
        .filter(|b| !b.blocked_by.is_empty())
        .map(|b| Blocked {
            pid: b.pid,
            blocked_by: b.blocked_by.clone(),
            mode: b.waiting_for.as_ref().map(|w| w.mode.clone()),
            relation: b.waiting_for.as_ref().and_then(|w| w.relation.clone()),
            wait_s: b.waiting_for.as_ref().and_then(|w| w.wait_s),
            query: b.query.clone(),
            state: b.state.clone(),
            name: SessionName::of(b),
            queued_behind: downstream.get(&b.pid).copied().unwrap_or(0),
        })
        .collect();
    let mut long_transactions: Vec<LongTransaction> = backends
        .iter()
        .filter_map(|b| {
            let age = b.xact_age_s?;
            (age >= long.as_secs_f64()).then(|| LongTransaction {
                pid: b.pid,
                state: b.state.clone(),
                name: SessionName::of(b),
                xact_age_s: age,
                query_age_s: b.query_age_s,
                query: b.query.clone(),
                idle_in_transaction: b.state.starts_with("idle in transaction"),
            })
        })
        .collect();
    long_transactions.sort_by(|a, b| b.xact_age_s.total_cmp(&a.xact_age_s));
    let clients = || backends.iter().filter(|b| b.backend_type == CLIENT_BACKEND);
    let summary = Summary {
        sessions: sessions.unwrap_or_else(|| clients().count()),
        active: clients().filter(|b| b.state == "active").count(),
        idle_in_transaction: clients()
            .filter(|b| b.state.starts_with("idle in transaction"))
            .count(),
        waiting: backends.iter().filter(|b| !b.blocked_by.is_empty()).count(),
        longest_xact_s: backends
            .iter()
            .filter_map(|b| b.xact_age_s)
            .max_by(f64::total_cmp),
    };
    let executor = executor_pid.and_then(|pid| {
        let b = backends.iter().find(|b| b.pid == pid)?;
        Some(ExecutorView {
            pid,
            waiting_for: b.waiting_for.clone(),
            blocked_by: b.blocked_by.clone(),
            queued_behind: downstream.get(&pid).copied().unwrap_or(0),
        })
    });
    Snapshot {
        at: Utc::now(),
        blocking,
        tree,
        long_transactions,
        summary,
        executor,
        monitor_pid,
        progress: Vec::new(),
        poll_ms,
        replicas: Vec::new(),
        backends,
    }
}
