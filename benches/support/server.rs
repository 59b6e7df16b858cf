#![allow(dead_code)] // each bench uses a part
//! Shared by the benchmarks against a real server (`benches/engine.rs`,
//! `benches/queue_stall.rs`): connections, throwaway databases, and the
//! lock-stall scenario both measure: a session holds ACCESS SHARE on t
//! while an `ALTER TABLE t` waits behind it and readers queue behind that.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// `server` (`host=… port=… user=…`) with `dbname=name`.
pub fn db(server: &str, name: &str) -> String {
    format!("{server} dbname={name}")
}

pub async fn connect(conninfo: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(connection);
    client
}

/// The first column of the first row, as text.
pub async fn scalar(client: &Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Drops and creates `name` on `server`, then runs `setup` in it.
pub async fn fresh_db(server: &str, name: &str, setup: &str) -> Client {
    let admin = connect(&db(server, "postgres")).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop database");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let client = connect(&db(server, name)).await;
    client.batch_execute(setup).await.expect("setup");
    client
}

pub async fn drop_db(server: &str, name: &str) {
    let admin = connect(&db(server, "postgres")).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// The statement both benches time: it waits for ACCESS EXCLUSIVE on t.
pub const ALTER: &str = "ALTER TABLE t ADD COLUMN x int";

/// The pgpilot step both benches time: the ALTER with lock_timeout 1s and
/// 30 retries 500 ms apart, going ahead past blockers (the headless default
/// without a terminal); `settings` adds lines to `[settings]`.
pub fn alter_runbook(id: &str, settings: &str) -> String {
    format!(
        r#"[runbook]
id = "{id}"
title = "Add a column to a busy table"

[settings]
lock_timeout = "1s"
lock_retries = 30
retry_backoff = "500ms"
on_blockers = "proceed"
{settings}

[[phase]]
id = "p"

  [[phase.step]]
  id = "add-x"
  kind = "change"
  sql = "{ALTER}"
  rollback = "ALTER TABLE t DROP COLUMN x"
"#
    )
}

/// `psql -X -q -v ON_ERROR_STOP=1 -d CONNINFO -c ALTER`: psql with no
/// lock_timeout, the baseline.
pub fn psql_alter(psql: &str, conninfo: &str) -> Command {
    let mut c = Command::new(psql);
    c.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        conninfo,
        "-c",
        ALTER,
    ])
    .stdin(Stdio::null());
    c
}

/// `pgpilot run RUNBOOK --headless --db CONNINFO` with its audit and state
/// in `data_dir`, no colour, and no test failpoint from the environment.
pub fn pgpilot_run(pgpilot: &Path, runbook: &Path, conninfo: &str, data_dir: &Path) -> Command {
    let mut c = Command::new(pgpilot);
    c.arg("run")
        .arg(runbook)
        .args(["--headless", "--db", conninfo])
        .env("PGPILOT_DATA_DIR", data_dir)
        .env("NO_COLOR", "1")
        .env_remove("PGPILOT_TEST_KILL_AT")
        .stdin(Stdio::null());
    c
}

const READ: &str = "SELECT count(*) FROM t";

/// The lock-stall scenario: a session holds ACCESS SHARE on t for `hold`;
/// `readers` sessions on long-lived connections each read t once per
/// `read_every` (staggered evenly across it); the ALTER starts
/// `alter_after` in; reading goes on for `tail` after the ALTER ends.
pub struct Stall {
    pub readers: usize,
    pub read_every: Duration,
    pub alter_after: Duration,
    pub hold: Duration,
    pub tail: Duration,
}

/// What one run of [`Stall`] saw.
pub struct Stalled {
    /// The ALTER's command's output.
    pub out: Output,
    /// When the holder took its lock, let it go, and the ALTER ended.
    pub held_at: Instant,
    pub released: Instant,
    pub done: Instant,
    /// Every read's latency, in ms.
    pub reads_ms: Vec<f64>,
}

impl Stall {
    /// Runs the scenario on the database at `conninfo` (t in it), `alter`
    /// being the command that runs the ALTER.
    pub async fn run(&self, conninfo: &str, mut alter: Command) -> Stalled {
        let holder = connect(conninfo).await;
        let mut readers = Vec::new();
        for _ in 0..self.readers {
            readers.push(connect(conninfo).await);
        }
        // Warm the readers' connections.
        for r in &readers {
            r.simple_query(READ).await.expect("warm");
        }
        holder
            .batch_execute("BEGIN; SELECT count(*) FROM t")
            .await
            .expect("hold");
        let held_at = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (every, n) = (self.read_every, self.readers as u32);
        let mut tasks = Vec::new();
        for (i, r) in readers.into_iter().enumerate() {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(every * i as u32 / n).await;
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    r.simple_query(READ).await.expect("read");
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    tokio::time::sleep(every).await;
                }
                lat
            }));
        }

        tokio::time::sleep_until((held_at + self.alter_after).into()).await;
        let child = tokio::task::spawn_blocking(move || {
            let out = alter.output().expect("spawn");
            (out, Instant::now())
        });
        tokio::time::sleep_until((held_at + self.hold).into()).await;
        holder.batch_execute("COMMIT").await.expect("commit");
        let released = Instant::now();
        let (out, done) = child.await.expect("join");
        // Keep reading a little after the ALTER, then stop.
        tokio::time::sleep(self.tail).await;
        stop.store(true, Ordering::Relaxed);
        let mut reads_ms = Vec::new();
        for t in tasks {
            reads_ms.extend(t.await.expect("reader"));
        }
        Stalled {
            out,
            held_at,
            released,
            done,
            reads_ms,
        }
    }
}
