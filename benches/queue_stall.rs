//! Issue 17, yielding the lock queue (`max_queue_stall`): how long readers
//! and writers stall behind a waiting `ALTER TABLE`. Figures go to
//! docs/benchmarks.md ("Issue 17: yielding the lock queue").
//!
//! 1. Stall: a session holds ACCESS SHARE on t for `BENCH_HOLD_SECS` (10 s);
//!    500 ms in, `ALTER TABLE t ADD COLUMN x int` runs via psql (no
//!    lock_timeout), via pgpilot with lock_timeout alone (`1s`,
//!    `max_queue_stall = "0"`) and via pgpilot with the defaults
//!    (`max_queue_stall` 200ms); two readers time every `SELECT count(*)`,
//!    one per 100 ms each (the scenario of benches/engine.rs).
//! 2. Busy table: `pgbench -c 8` point updates on the table for
//!    `BENCH_BUSY_SECS` (10 s), once alone and once with the ALTER started
//!    2 s in behind a 3 s report: pgbench's p99 latency both ways, whether
//!    the ALTER completed, and its yields.
//!
//! Runs on its own throwaway cluster (pgpilot's sandbox) unless
//! `BENCH_CONNINFO` names a server. `BENCH_PGPILOT`: the binary measured
//! (default target/release/pgpilot, else target/debug/pgpilot).
//! Run: `cargo bench --bench queue_stall` (or `scripts/bench-engine`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_postgres::Client;

#[path = "support/server.rs"]
mod server;

use server::{Stall, alter_runbook, connect, pgpilot_run, psql_alter, scalar};

#[derive(Clone, Copy)]
enum Tool {
    Psql,
    LockTimeoutAlone,
    Defaults,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Psql => "psql",
            Tool::LockTimeoutAlone => "pgpilot lock_timeout alone",
            Tool::Defaults => "pgpilot defaults",
        }
    }

    fn runbook(self) -> String {
        let stall = match self {
            Tool::Psql | Tool::Defaults => "",
            Tool::LockTimeoutAlone => "max_queue_stall = \"0\"",
        };
        alter_runbook("bench-queue-stall", stall)
    }
}

struct Env {
    conninfo: String,
    pgpilot: PathBuf,
    psql: String,
    pgbench: String,
    hold: Duration,
    busy: Duration,
    tmp: tempfile::TempDir,
}

impl Env {
    fn db(&self, name: &str) -> String {
        server::db(&self.conninfo, name)
    }
}

/// t with 10,000 rows, in a fresh database `name`.
async fn fresh_db(env: &Env, name: &str) -> Client {
    server::fresh_db(
        &env.conninfo,
        name,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
         INSERT INTO t (id) SELECT generate_series(1, 10000)",
    )
    .await
}

fn alter_cmd(env: &Env, tool: Tool, db: &str, dir: &Path) -> Command {
    match tool {
        Tool::Psql => psql_alter(&env.psql, &env.db(db)),
        _ => {
            let rb = dir.join("queue-stall.toml");
            std::fs::write(&rb, tool.runbook()).expect("runbook");
            pgpilot_run(&env.pgpilot, &rb, &env.db(db), dir)
        }
    }
}

struct StallRun {
    worst_ms: f64,
    reads: usize,
    done_after_holder_s: f64,
    yields: usize,
}

fn yields_in(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.contains(": yielded: ")).count()
}

async fn one_stall(env: &Env, tool: Tool) -> StallRun {
    let db = "queue_stall";
    let _client = fresh_db(env, db).await;
    let dir = tempfile::tempdir_in(env.tmp.path()).expect("tmp");
    let stall = Stall {
        readers: 2,
        read_every: Duration::from_millis(100),
        alter_after: Duration::from_millis(500),
        hold: env.hold,
        tail: Duration::from_millis(500),
    };
    let s = stall
        .run(&env.db(db), alter_cmd(env, tool, db, dir.path()))
        .await;
    assert!(s.out.status.success(), "{}: {:?}", tool.name(), s.out);
    StallRun {
        worst_ms: s.reads_ms.iter().copied().fold(0f64, f64::max),
        reads: s.reads_ms.len(),
        done_after_holder_s: s.done.saturating_duration_since(s.released).as_secs_f64(),
        yields: yields_in(&String::from_utf8_lossy(&s.out.stdout)),
    }
}

/// pgbench's p99 latency (ms) and transactions, from its per-transaction log.
fn p99(log_dir: &Path) -> (f64, usize) {
    let mut lat: Vec<f64> = Vec::new();
    for e in std::fs::read_dir(log_dir).expect("logs").flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            // client_id transaction_no time script_no time_epoch time_us
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
            {
                lat.push(us / 1e3);
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    let at = ((lat.len() as f64) * 0.99).ceil() as usize;
    (
        lat.get(at.saturating_sub(1)).copied().unwrap_or(0.0),
        lat.len(),
    )
}

struct Busy {
    p99_ms: f64,
    transactions: usize,
    alter_ok: Option<bool>,
    yields: usize,
}

async fn one_busy(env: &Env, with_alter: bool) -> Busy {
    let db = "queue_busy";
    let client = fresh_db(env, db).await;
    let script = env.tmp.path().join("update.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 10000)\nUPDATE t SET v = v + 1 WHERE id = :id;\n",
    )
    .expect("script");
    let logs = tempfile::tempdir_in(env.tmp.path()).expect("logs");
    let mut bench = Command::new(&env.pgbench);
    bench
        .args(["-n", "-c", "8", "-j", "2", "-l", "-T"])
        .arg(env.busy.as_secs().to_string())
        .arg("-f")
        .arg(&script)
        .arg("-d")
        .arg(env.db(db))
        .current_dir(logs.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let bench = tokio::task::spawn_blocking(move || bench.status());
    let mut alter = None;
    if with_alter {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = connect(&env.db(db)).await;
        report
            .batch_execute("BEGIN; SELECT count(*) FROM t")
            .await
            .expect("report");
        let dir = tempfile::tempdir_in(env.tmp.path()).expect("tmp");
        let mut cmd = alter_cmd(env, Tool::Defaults, db, dir.path());
        let child = tokio::task::spawn_blocking(move || (cmd.output().expect("spawn"), dir));
        tokio::time::sleep(Duration::from_secs(3)).await;
        report.batch_execute("COMMIT").await.expect("commit");
        alter = Some(child.await.expect("join").0);
    }
    let _ = bench.await;
    let (p99_ms, transactions) = p99(logs.path());
    let added = scalar(
        &client,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x'",
    )
    .await;
    Busy {
        p99_ms,
        transactions,
        alter_ok: alter.as_ref().map(|o| o.status.success() && added == "1"),
        yields: alter
            .map(|o| yields_in(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or(0),
    }
}

fn main() {
    let sandbox;
    let conninfo = match std::env::var("BENCH_CONNINFO") {
        Ok(c) => c,
        Err(_) => {
            sandbox = pgpilot::sandbox::Sandbox::start().expect("a throwaway cluster");
            sandbox
                .conninfo("postgres")
                .replace("dbname=postgres", "")
                .trim()
                .to_string()
        }
    };
    let pgpilot = std::env::var("BENCH_PGPILOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let release = PathBuf::from("target/release/pgpilot");
            if release.is_file() {
                release
            } else {
                PathBuf::from("target/debug/pgpilot")
            }
        });
    let secs = |k: &str, d: u64| {
        Duration::from_secs(
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d),
        )
    };
    let env = Env {
        conninfo,
        pgpilot,
        psql: std::env::var("BENCH_PSQL").unwrap_or_else(|_| "psql".into()),
        pgbench: std::env::var("BENCH_PGBENCH").unwrap_or_else(|_| "pgbench".into()),
        hold: secs("BENCH_HOLD_SECS", 10),
        busy: secs("BENCH_BUSY_SECS", 10),
        tmp: tempfile::tempdir().expect("tmp"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("pgpilot: {}", env.pgpilot.display());
        println!(
            "\n== 1. Stall: ACCESS SHARE held {} s, ALTER 500 ms in, 2 readers every 100 ms ==",
            env.hold.as_secs()
        );
        let mut worst = Vec::new();
        for tool in [Tool::Psql, Tool::LockTimeoutAlone, Tool::Defaults] {
            let s = one_stall(&env, tool).await;
            println!(
                "  {:<28} worst read {:8.1} ms over {} reads; ALTER done {:.2} s after the holder left; {} yield(s)",
                tool.name(),
                s.worst_ms,
                s.reads,
                s.done_after_holder_s,
                s.yields
            );
            worst.push(s.worst_ms);
        }
        println!(
            "  psql/defaults {:.1}x; lock_timeout alone/defaults {:.1}x",
            worst[0] / worst[2],
            worst[1] / worst[2]
        );
        println!(
            "\n== 2. Busy table: pgbench -c 8 point updates for {} s ==",
            env.busy.as_secs()
        );
        let alone = one_busy(&env, false).await;
        println!(
            "  pgbench alone:               p99 {:.2} ms over {} transactions",
            alone.p99_ms, alone.transactions
        );
        let with = one_busy(&env, true).await;
        println!(
            "  pgbench + ALTER (defaults):  p99 {:.2} ms over {} transactions; ALTER completed: {}; {} yield(s)",
            with.p99_ms,
            with.transactions,
            with.alter_ok.unwrap_or(false),
            with.yields
        );
    });
}
