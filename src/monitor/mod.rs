//! The live view of the server: one query per poll, on a connection of its
//! own, turned into a [`Snapshot`] of who blocks whom and which transactions
//! run long.

mod query;
mod signal;
pub mod text;
mod tree;
mod watcher;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::analysis::{LockMode, RelationName};
pub use signal::{Signal, SignalAudit, SignalOutcome, SignalReport, send_audited, signal_backend};
pub use tree::{TreeNode, blocking_tree};
pub use watcher::{APPLICATION_NAME, Feed, News, Watcher};

/// One backend of the current database that is doing something or holds a
/// transaction open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    pub pid: i32,
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
        if let Some(w) = self.waiting_for.as_mut() {
            w.relation = w.relation.as_deref().map(shown);
        }
        self
    }
}

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
    /// Sessions waiting, directly or not, behind this one.
    pub queued_behind: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongTransaction {
    pub pid: i32,
    pub state: String,
    pub user: Option<String>,
    pub application: Option<String>,
    pub xact_age_s: f64,
    pub query_age_s: Option<f64>,
    pub query: String,
    pub idle_in_transaction: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
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
    /// How long the poll's query took on the server round trip.
    pub poll_ms: f64,
    #[serde(skip)]
    pub backends: Vec<Backend>,
}

/// A monitor session: its own connection, with short timeouts so that it can
/// never be the one stalling the server.
pub struct Monitor {
    client: Client,
    sql: String,
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
        Ok(Monitor {
            sql: query::poll_sql(row.try_get("version_num")?),
            pid: row.try_get("pid")?,
            client,
            long_transaction,
            executor_pid: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The query each poll sends (for this server's version).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One poll: one query.
    pub async fn poll(&self) -> Result<Snapshot, tokio_postgres::Error> {
        let started = std::time::Instant::now();
        let rows = self.client.query(self.sql.as_str(), &[]).await?;
        let poll_ms = started.elapsed().as_secs_f64() * 1000.0;
        let backends = rows.iter().map(backend).collect::<Result<Vec<_>, _>>()?;
        Ok(build(
            backends,
            self.long_transaction,
            self.executor_pid,
            self.pid,
            poll_ms,
        ))
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
    Ok(Backend {
        pid: r.try_get("pid")?,
        user: r.try_get("user_name")?,
        application: r.try_get("application")?,
        client: r.try_get("client")?,
        state: r.try_get("state")?,
        wait_event_type: r.try_get("wait_event_type")?,
        wait_event: r.try_get("wait_event")?,
        xact_age_s: r.try_get("xact_age_s")?,
        query_age_s: r.try_get("query_age_s")?,
        state_age_s: r.try_get("state_age_s")?,
        query: r.try_get::<_, Option<String>>("query")?.unwrap_or_default(),
        blocked_by: r.try_get("blocked_by")?,
        waiting_for,
    })
}

/// A snapshot from the poll's rows: pure, so it is tested without a server.
pub fn build(
    backends: Vec<Backend>,
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
                user: b.user.clone(),
                application: b.application.clone(),
                xact_age_s: age,
                query_age_s: b.query_age_s,
                query: b.query.clone(),
                idle_in_transaction: b.state.starts_with("idle in transaction"),
            })
        })
        .collect();
    long_transactions.sort_by(|a, b| b.xact_age_s.total_cmp(&a.xact_age_s));
    let summary = Summary {
        sessions: backends.len(),
        active: backends.iter().filter(|b| b.state == "active").count(),
        idle_in_transaction: backends
            .iter()
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
        poll_ms,
        backends,
    }
}

/// A session holding a lock that a step is about to need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    pub pid: i32,
    pub user: Option<String>,
    pub application: String,
    pub client: String,
    pub state: String,
    pub mode: String,
    /// The relation in SQL form (`public."Orders"`), as the step names it.
    pub relation: String,
    pub xact_age_s: Option<f64>,
    pub query: String,
}

impl Holder {
    /// `pid 123 (nightly-report)`: the pid and the name the session gave
    /// itself (application_name), else its user.
    pub fn named(&self) -> String {
        let name = if self.application.is_empty() {
            self.user.as_deref().unwrap_or("?")
        } else {
            &self.application
        };
        format!("pid {} ({name})", self.pid)
    }

    /// As [`Backend::made_safe`].
    fn made_safe(mut self) -> Holder {
        self.query = shown(&self.query);
        self.user = self.user.as_deref().map(shown);
        self.application = shown(&self.application);
        self.client = shown(&self.client);
        self.state = shown(&self.state);
        self.relation = shown(&self.relation);
        self
    }
}

/// Sessions that hold locks on `relation` conflicting with `mode`: they would
/// make a step wait, and every later query on the table wait behind it.
pub async fn holders(
    client: &Client,
    relation: &RelationName,
    mode: LockMode,
) -> Result<Vec<Holder>, tokio_postgres::Error> {
    let conflicting: Vec<String> = LockMode::ALL
        .into_iter()
        .filter(|m| m.conflicts_with(mode))
        .map(|m| m.name().to_string())
        .collect();
    // The SQL form is what to_regclass reads back to this very relation.
    let relation = relation.to_string();
    let rows = client
        .query(query::HOLDERS_SQL, &[&relation, &conflicting])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Holder {
                pid: r.try_get("pid")?,
                user: r.try_get("user_name")?,
                application: r.try_get("application")?,
                client: r.try_get("client")?,
                state: r.try_get("state")?,
                mode: r.try_get("mode")?,
                relation: relation.clone(),
                xact_age_s: r.try_get("xact_age_s")?,
                query: r.try_get::<_, Option<String>>("query")?.unwrap_or_default(),
            })
        })
        .map(|h| h.map(Holder::made_safe))
        .collect()
}
