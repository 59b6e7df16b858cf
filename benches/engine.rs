//! The engine against a real server, next to psql doing the same work.
//! Run it with `scripts/bench-engine`, which starts a throwaway PostgreSQL
//! cluster, passes it in `BENCH_CONNINFO`, and removes it afterwards.
//! Figures go to docs/benchmarks.md.
//!
//! 1. Throughput: a generated runbook of N (1,000) transactional change steps
//!    (`INSERT INTO bench_t VALUES (n)`) by `pgpilot run --headless` with the
//!    audit on (local JSONL, fsynced, plus `pgpilot.audit_log`), versus
//!    `psql -X -q -v ON_ERROR_STOP=1 -f` of the same statements each wrapped
//!    in BEGIN; … COMMIT;. A fresh database for every run; runs alternate
//!    which tool goes first. Then diagnostics of where pgpilot's time goes.
//! 2. Lock stall: a session holds ACCESS SHARE on t for 10 s while
//!    `ALTER TABLE t ADD COLUMN x int` runs via psql (no lock_timeout) or via a
//!    pgpilot step (lock_timeout 1s, retries); two readers on long-lived
//!    connections time every `SELECT count(*) FROM t`.
//!
//! Environment (set by scripts/bench-engine):
//!   BENCH_CONNINFO     `host=… port=… user=…` of the server (required)
//!   BENCH_PSQL         psql binary (default: psql)
//!   BENCH_PGPILOT      pgpilot binary (default: target/release/pgpilot)
//!   BENCH_TMP          directory for runbooks and audit data dirs (default: the system temp dir)
//!   BENCH_SHM          a tmpfs directory for the diagnostic run without disk fsyncs
//!                      (default: /dev/shm if present; empty to skip)
//!   BENCH_STEPS        steps in the throughput runbook (default 1000)
//!   BENCH_RUNS         measured runs per tool (default 5)
//!   BENCH_STALL_RUNS   lock-stall repetitions per tool (default 3)
//!   BENCH_HOLD_SECS    how long the lock holder keeps its lock (default 10)

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

#[path = "support/server.rs"]
mod server;

use server::{
    Stall, Stalled, alter_runbook, connect, drop_db, fresh_db, pgpilot_run, psql_alter, scalar,
};

struct Env {
    conninfo: String,
    psql: String,
    pgpilot: PathBuf,
    tmp: PathBuf,
    shm: Option<PathBuf>,
    steps: usize,
    runs: usize,
    stall_runs: usize,
    hold: Duration,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

impl Env {
    fn from_env() -> Option<Env> {
        let conninfo = std::env::var("BENCH_CONNINFO").ok()?;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shm = match std::env::var("BENCH_SHM") {
            Ok(s) if s.is_empty() => None,
            Ok(s) => Some(PathBuf::from(s)),
            Err(_) => Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()),
        };
        Some(Env {
            conninfo,
            psql: env_or("BENCH_PSQL", "psql"),
            pgpilot: std::env::var("BENCH_PGPILOT")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target/release/pgpilot")),
            tmp: std::env::var("BENCH_TMP")
                .map(PathBuf::from)
                .unwrap_or_else(|_| std::env::temp_dir()),
            shm,
            steps: env_num("BENCH_STEPS", 1000),
            runs: env_num("BENCH_RUNS", 5),
            stall_runs: env_num("BENCH_STALL_RUNS", 3),
            hold: Duration::from_secs(env_num("BENCH_HOLD_SECS", 10) as u64),
        })
    }

    fn db(&self, name: &str) -> String {
        server::db(&self.conninfo, name)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn list(v: &[f64], unit: &str) -> String {
    v.iter()
        .map(|x| format!("{x:.0}{unit}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_ok(what: &str, out: &Output) {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 30),
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
    }
}

/// Runs `cmd` with its output going to files in `dir`, as it would to a
/// log file: through a pipe, every line pgpilot prints per step would wake
/// the harness (psql -q prints nothing). Returns the output and the seconds
/// the command took.
fn output_to_files(mut cmd: Command, dir: &Path) -> (Output, f64) {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    cmd.stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let started = Instant::now();
    let status = cmd.status().expect("spawn");
    let secs = started.elapsed().as_secs_f64();
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    (
        Output {
            status,
            stdout: read(&out),
            stderr: read(&err),
        },
        secs,
    )
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------- throughput

const TABLE: &str = "CREATE TABLE bench_t (id int PRIMARY KEY)";

fn throughput_runbook(steps: usize) -> String {
    let mut s = String::from(
        "[runbook]\nid = \"bench-engine-throughput\"\ntitle = \"Generated: one INSERT per step\"\n\n[[phase]]\nid = \"load\"\n",
    );
    for n in 1..=steps {
        let _ = write!(
            s,
            "\n[[phase.step]]\nid = \"s{n:04}\"\nkind = \"change\"\nsql = \"INSERT INTO bench_t VALUES ({n})\"\n"
        );
    }
    s
}

fn throughput_sql(steps: usize) -> String {
    let mut s = String::new();
    for n in 1..=steps {
        let _ = writeln!(s, "BEGIN;\nINSERT INTO bench_t VALUES ({n});\nCOMMIT;");
    }
    s
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Psql,
    Pgpilot,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Psql => "psql",
            Tool::Pgpilot => "pgpilot",
        }
    }
}

struct Files {
    runbook: PathBuf,
    sql: PathBuf,
}

fn psql_file_cmd(env: &Env, db: &str, sql: &Path) -> Command {
    let mut c = Command::new(&env.psql);
    c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &env.db(db), "-f"])
        .arg(sql)
        .stdin(Stdio::null());
    c
}

fn pgpilot_cmd(env: &Env, runbook: &Path, db: &str, data_dir: &Path) -> Command {
    pgpilot_run(&env.pgpilot, runbook, &env.db(db), data_dir)
}

/// One timed run of one tool on a fresh database; returns seconds.
async fn one_throughput_run(
    env: &Env,
    files: &Files,
    tool: Tool,
    data_parent: &Path,
    keep_audit: Option<&Path>,
) -> f64 {
    let db = format!("bench_{}", tool.name());
    let client = fresh_db(&env.conninfo, &db, TABLE).await;
    let data_dir = tempfile::tempdir_in(data_parent).expect("audit data dir");
    let cmd = match tool {
        Tool::Psql => psql_file_cmd(env, &db, &files.sql),
        Tool::Pgpilot => pgpilot_cmd(env, &files.runbook, &db, data_dir.path()),
    };
    let outputs = tempfile::tempdir_in(data_parent).expect("output dir");
    let (out, secs) = tokio::task::spawn_blocking({
        let dir = outputs.path().to_path_buf();
        move || output_to_files(cmd, &dir)
    })
    .await
    .expect("join");
    check_ok(tool.name(), &out);
    let rows: usize = scalar(&client, "SELECT count(*) FROM bench_t")
        .await
        .parse()
        .unwrap();
    assert_eq!(
        rows,
        env.steps,
        "{}: every step's row is there",
        tool.name()
    );
    if tool == Tool::Pgpilot {
        let local = std::fs::read_to_string(data_dir.path().join("audit.jsonl")).expect("audit");
        let in_db: usize = scalar(&client, "SELECT count(*) FROM pgpilot.audit_log")
            .await
            .parse()
            .unwrap();
        assert_eq!(
            local.lines().count(),
            in_db,
            "the database copy of the audit has every record"
        );
        assert!(
            in_db > 2 * env.steps,
            "a start and a success record per step"
        );
        if let Some(dest) = keep_audit {
            std::fs::copy(data_dir.path().join("audit.jsonl"), dest).expect("keep audit");
        }
    }
    drop(client);
    drop_db(&env.conninfo, &db).await;
    secs
}

/// Timestamps of the local audit log of one run: where the time went.
struct AuditTimes {
    records: usize,
    /// Process start is unknown to the log; from its first record to the first step_start.
    before_first_step: f64,
    /// First step_start to last step_success.
    steps_span: f64,
    /// Median, step_start to the same step's step_success (transaction + start's audit).
    start_to_success: f64,
    /// Median, step_success to the next step_start (success's audit + next step).
    success_to_next: f64,
}

fn audit_times(path: &Path) -> AuditTimes {
    let text = std::fs::read_to_string(path).expect("audit");
    let recs: Vec<(String, f64)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("audit line");
            let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
            (
                v["action"].as_str().unwrap().to_string(),
                ts.timestamp_micros() as f64 / 1e6,
            )
        })
        .collect();
    let first_start = recs.iter().position(|r| r.0 == "step_start").unwrap();
    let last_success = recs.iter().rposition(|r| r.0 == "step_success").unwrap();
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut last_success_ts = None;
    let mut last_start_ts = None;
    for (action, ts) in &recs {
        match action.as_str() {
            "step_start" => {
                if let Some(s) = last_success_ts.take() {
                    b.push((ts - s) * 1e3);
                }
                last_start_ts = Some(*ts);
            }
            "step_success" => {
                if let Some(s) = last_start_ts.take() {
                    a.push((ts - s) * 1e3);
                }
                last_success_ts = Some(*ts);
            }
            _ => {}
        }
    }
    AuditTimes {
        records: recs.len(),
        before_first_step: recs[first_start].1 - recs[0].1,
        steps_span: recs[last_success].1 - recs[first_start].1,
        start_to_success: median(&a),
        success_to_next: median(&b),
    }
}

/// Syscall counts of one run under `strace -f -c`, or None without strace.
async fn strace_counts(env: &Env, files: &Files, tool: Tool) -> Option<Vec<(String, u64)>> {
    let strace = which("strace")?;
    let db = format!("bench_strace_{}", tool.name());
    let client = fresh_db(&env.conninfo, &db, TABLE).await;
    let data_dir = tempfile::tempdir_in(&env.tmp).unwrap();
    let report = data_dir.path().join("strace.txt");
    let inner = match tool {
        Tool::Psql => psql_file_cmd(env, &db, &files.sql),
        Tool::Pgpilot => pgpilot_cmd(env, &files.runbook, &db, data_dir.path()),
    };
    let mut cmd = Command::new(strace);
    cmd.args(["-f", "-c", "-o"])
        .arg(&report)
        .args([
            "-e",
            "trace=sendto,recvfrom,write,fsync,fdatasync,rename,openat,mprotect,futex",
        ])
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("strace"))
        .await
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "(strace run failed, skipped: {})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        drop(client);
        drop_db(&env.conninfo, &db).await;
        return None;
    }
    let text = std::fs::read_to_string(&report).ok()?;
    let mut counts = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "% time  seconds  usecs/call  calls  [errors]  syscall"
        if f.len() >= 5
            && f[0].parse::<f64>().is_ok()
            && let (Ok(calls), Some(name)) = (f[3].parse::<u64>(), f.last())
            && *name != "total"
        {
            counts.push((name.to_string(), calls));
        }
    }
    drop(client);
    drop_db(&env.conninfo, &db).await;
    Some(counts)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// Commits the server counted in the tool's database during one run of it
/// (`pg_stat_database.xact_commit`, read from another database so the reads
/// do not count).
async fn commits_per_run(env: &Env, files: &Files, tool: Tool) -> u64 {
    let db = format!("bench_commits_{}", tool.name());
    drop(fresh_db(&env.conninfo, &db, TABLE).await);
    let admin = connect(&env.db("postgres")).await;
    let q = format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'");
    let idle = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'");
    // Backends report their counts when they exit; wait for quiet, then for a stable value.
    async fn settled(admin: &Client, q: &str, idle: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        loop {
            let busy = scalar(admin, idle).await != "0";
            let v: u64 = scalar(admin, q).await.parse().unwrap();
            if !busy && last == Some(v) || Instant::now() > deadline {
                return v;
            }
            last = (!busy).then_some(v);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let before = settled(&admin, &q, &idle).await;
    let data_dir = tempfile::tempdir_in(&env.tmp).unwrap();
    let mut cmd = match tool {
        Tool::Psql => psql_file_cmd(env, &db, &files.sql),
        Tool::Pgpilot => pgpilot_cmd(env, &files.runbook, &db, data_dir.path()),
    };
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    check_ok(tool.name(), &out);
    let after = settled(&admin, &q, &idle).await;
    drop(admin);
    drop_db(&env.conninfo, &db).await;
    after.saturating_sub(before)
}

async fn throughput(env: &Env) -> ThroughputResult {
    let dir = tempfile::tempdir_in(&env.tmp).expect("tempdir");
    let files = Files {
        runbook: dir.path().join("bench-engine.toml"),
        sql: dir.path().join("bench-engine.sql"),
    };
    std::fs::write(&files.runbook, throughput_runbook(env.steps)).unwrap();
    std::fs::write(&files.sql, throughput_sql(env.steps)).unwrap();
    println!(
        "\n== 1. Throughput: {} transactional change steps (INSERT INTO bench_t VALUES (n)) ==",
        env.steps
    );
    println!(
        "runbook: {} bytes, one phase",
        std::fs::metadata(&files.runbook).unwrap().len()
    );
    println!(
        "audit data dirs under {} ({})",
        env.tmp.display(),
        fs_type(&env.tmp)
    );

    // Warm-up: page cache, binaries, server caches.
    for tool in [Tool::Psql, Tool::Pgpilot] {
        one_throughput_run(env, &files, tool, &env.tmp, None).await;
    }
    let kept = dir.path().join("kept-audit.jsonl");
    let mut psql = Vec::new();
    let mut pgpilot = Vec::new();
    for rep in 0..env.runs {
        let order = if rep % 2 == 0 {
            [Tool::Psql, Tool::Pgpilot]
        } else {
            [Tool::Pgpilot, Tool::Psql]
        };
        for tool in order {
            let keep = (tool == Tool::Pgpilot && rep + 1 == env.runs).then_some(kept.as_path());
            let s = one_throughput_run(env, &files, tool, &env.tmp, keep).await;
            println!("  run {} {:>7}: {:8.1} ms", rep + 1, tool.name(), s * 1e3);
            match tool {
                Tool::Psql => psql.push(s * 1e3),
                Tool::Pgpilot => pgpilot.push(s * 1e3),
            }
        }
    }
    let n = env.steps as f64;
    let (mp, mg) = (median(&psql), median(&pgpilot));
    println!(
        "psql    -f: median {mp:.1} ms (min {:.1}, max {:.1}), {:.3} ms/step; runs: {}",
        min(&psql),
        max(&psql),
        mp / n,
        list(&psql, " ms")
    );
    println!(
        "pgpilot run: median {mg:.1} ms (min {:.1}, max {:.1}), {:.3} ms/step; runs: {}",
        min(&pgpilot),
        max(&pgpilot),
        mg / n,
        list(&pgpilot, " ms")
    );
    let ratio = mg / mp;
    println!(
        "ratio pgpilot/psql (medians): {ratio:.1}x; target <= 1.5x -> {}",
        if ratio <= 1.5 { "MET" } else { "NOT MET" }
    );

    // ---- where pgpilot's time goes
    println!("\n-- diagnostics: where pgpilot's time goes --");
    let t = audit_times(&kept);
    println!(
        "audit timestamps of the last measured run ({} records): first record -> first step_start {:.1} ms; \
         steps {:.1} ms = {:.3} ms/step; per step (medians): step_start -> step_success {:.3} ms, \
         step_success -> next step_start {:.3} ms",
        t.records,
        t.before_first_step * 1e3,
        t.steps_span * 1e3,
        t.steps_span * 1e3 / n,
        t.start_to_success,
        t.success_to_next
    );
    let mut shm_runs = Vec::new();
    if let Some(shm) = &env.shm {
        for _ in 0..3 {
            shm_runs.push(one_throughput_run(env, &files, Tool::Pgpilot, shm, None).await * 1e3);
        }
        println!(
            "pgpilot with its audit data dir on tmpfs ({}, so fsync costs nothing): median {:.1} ms, {:.3} ms/step; runs: {}",
            shm.display(),
            median(&shm_runs),
            median(&shm_runs) / n,
            list(&shm_runs, " ms")
        );
    }
    let commits_psql = commits_per_run(env, &files, Tool::Psql).await;
    let commits_pgpilot = commits_per_run(env, &files, Tool::Pgpilot).await;
    println!(
        "server transactions ended per run (pg_stat_database.xact_commit; counts read-only ones such as an extended-protocol Parse/Sync too): psql {commits_psql} ({:.2}/step), pgpilot {commits_pgpilot} ({:.2}/step)",
        commits_psql as f64 / n,
        commits_pgpilot as f64 / n
    );
    let mut straced = Vec::new();
    for tool in [Tool::Psql, Tool::Pgpilot] {
        if let Some(c) = strace_counts(env, &files, tool).await {
            let per = |name: &str| {
                c.iter()
                    .find(|(s, _)| s == name)
                    .map_or(0.0, |(_, k)| *k as f64 / n)
            };
            println!(
                "strace -f -c {:>7}, calls per step: sendto {:.2} (~ round trips), recvfrom {:.2}, fsync {:.2}, fdatasync {:.2}, rename {:.2}, openat {:.2}, write {:.2}, mprotect {:.2}, futex {:.2}",
                tool.name(),
                per("sendto"),
                per("recvfrom"),
                per("fsync"),
                per("fdatasync"),
                per("rename"),
                per("openat"),
                per("write"),
                per("mprotect"),
                per("futex")
            );
            straced.push((tool, c));
        }
    }
    // On a current-thread runtime of their own, as pgpilot's engine runs.
    let models = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(models(env))
            })
            .join()
            .unwrap()
    });
    ThroughputResult {
        models,
        psql,
        pgpilot,
        shm: shm_runs,
        audit: t,
        commits: (commits_psql, commits_pgpilot),
        straced,
    }
}

// ---------------------------------------------------------------- protocol models

/// Tables of the same shape as pgpilot's `pgpilot.audit_log` and
/// `pgpilot.step_state` (copied from src/audit/db.rs and src/engine/state.rs),
/// in a schema of the bench's own, for the protocol models below.
const MODEL_TABLES: &str = "
CREATE SCHEMA model;
CREATE TABLE model.audit_log (
    session text NOT NULL, seq bigint NOT NULL, ts timestamptz NOT NULL, operator text NOT NULL,
    role text, client_host text NOT NULL, target_host text, target_port integer,
    target_database text, runbook text, runbook_sha256 text, ticket text, phase text, step text,
    action text NOT NULL, sql text, sql_sha256 text, outcome text, duration_ms bigint, rows bigint,
    sqlstate text, message text, attempt bigint, rehearsal boolean NOT NULL, prev_hash text NOT NULL,
    hash text NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (session, seq));
CREATE INDEX ON model.audit_log (runbook, ts);
CREATE TABLE model.step_state (
    runbook_id text NOT NULL, step_id text NOT NULL, status text NOT NULL, step_sha256 text NOT NULL,
    runbook_sha256 text NOT NULL, operator text NOT NULL, role text NOT NULL DEFAULT current_user,
    client_host text NOT NULL, captured text, rows bigint, duration_ms bigint,
    updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (runbook_id, step_id));";

const MODEL_AUDIT_INSERT: &str = "\
INSERT INTO model.audit_log (session, seq, ts, operator, role, client_host,
    target_host, target_port, target_database, runbook, runbook_sha256, ticket,
    phase, step, action, sql, sql_sha256, outcome, duration_ms, rows, sqlstate,
    message, attempt, rehearsal, prev_hash, hash)
VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12,
    $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
ON CONFLICT DO NOTHING";

const MODEL_UPSERT: &str = "
INSERT INTO model.step_state
    (runbook_id, step_id, status, step_sha256, runbook_sha256, operator, client_host, captured, rows, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (runbook_id, step_id) DO UPDATE SET
    status = EXCLUDED.status, step_sha256 = EXCLUDED.step_sha256,
    runbook_sha256 = EXCLUDED.runbook_sha256, operator = EXCLUDED.operator,
    role = current_user, client_host = EXCLUDED.client_host, captured = EXCLUDED.captured,
    rows = EXCLUDED.rows, duration_ms = EXCLUDED.duration_ms, updated_at = now()";

const HASH: &str = "2dc15713c526e8055ee0c27d5d86e94b6b493fcdd3ab168b4df147f53ee72a44";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Model {
    /// BEGIN / the statement / COMMIT as three simple queries: what psql -f sends.
    PsqlLike,
    /// pgpilot's statements per step up to ca02e78, in its order, without
    /// local files: audit insert (unprepared: Parse+Sync then Bind+Execute),
    /// BEGIN + SET LOCALs, the statement, state upsert (unprepared), COMMIT,
    /// audit insert (unprepared). Kept as the "before" of docs/benchmarks.md.
    PgpilotToday,
    /// What the engine sends per step since 676623d, all in one round trip:
    /// the setup (simple query), two audit rows (prepared), the statement
    /// (simple query), the state upsert (prepared), COMMIT. Without the
    /// engine and its local log, so the gap to pgpilot's run is theirs.
    OneTrip,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::PsqlLike => "psql-like (BEGIN; stmt; COMMIT, 3 round trips, 1 commit)",
            Model::PgpilotToday => {
                "pgpilot's sequence up to ca02e78 (9 round trips, 3 write commits + 2 Parse/Sync)"
            }
            Model::OneTrip => "pgpilot's messages since 676623d (1 round trip, 1 commit)",
        }
    }
}

async fn audit_row(
    c: &Client,
    stmt: &tokio_postgres::Statement,
    seq: i64,
    action: &str,
    step: &str,
    sql: Option<&str>,
) {
    let none: Option<&str> = None;
    let none_i: Option<i64> = None;
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    c.execute(
        stmt,
        &[
            &"bench-session",
            &seq,
            &ts,
            &"uid 0",
            &Some("postgres"),
            &"host",
            &Some("127.0.0.1"),
            &Some(5432i32),
            &Some("bench"),
            &Some("bench-engine-throughput"),
            &Some(HASH),
            &none,
            &Some("load"),
            &Some(step),
            &action,
            &sql,
            &sql.map(|_| HASH),
            &none,
            &none_i,
            &none_i,
            &none,
            &none,
            &Some(1i64),
            &false,
            &HASH,
            &HASH,
        ],
    )
    .await
    .expect("audit insert");
}

async fn upsert_row(c: &Client, stmt: &tokio_postgres::Statement, step: &str) {
    let none: Option<&str> = None;
    c.execute(
        stmt,
        &[
            &"bench-engine-throughput",
            &step,
            &"applied",
            &HASH,
            &HASH,
            &"uid 0",
            &"host",
            &none,
            &Some(1i64),
            &Some(1i64),
        ],
    )
    .await
    .expect("upsert");
}

/// Runs `steps` steps of `model` over one connection; returns ms.
async fn run_model(env: &Env, model: Model) -> f64 {
    let db = "bench_model";
    let client = fresh_db(&env.conninfo, db, &format!("{TABLE}; {MODEL_TABLES}")).await;
    let started = Instant::now();
    let mut seq = 0i64;
    for n in 1..=env.steps {
        let step = format!("s{n:04}");
        let sql = format!("INSERT INTO bench_t VALUES ({n})");
        match model {
            Model::PsqlLike => {
                client.simple_query("BEGIN").await.unwrap();
                client.simple_query(&sql).await.unwrap();
                client.simple_query("COMMIT").await.unwrap();
            }
            Model::PgpilotToday => {
                seq += 1;
                let ins = client.prepare(MODEL_AUDIT_INSERT).await.unwrap();
                audit_row(&client, &ins, seq, "step_start", &step, Some(&sql)).await;
                client
                    .simple_query("BEGIN; SET LOCAL lock_timeout = '2000ms'; SET LOCAL statement_timeout = '900000ms'")
                    .await
                    .unwrap();
                client.simple_query(&sql).await.unwrap();
                let up = client.prepare(MODEL_UPSERT).await.unwrap();
                upsert_row(&client, &up, &step).await;
                client.simple_query("COMMIT").await.unwrap();
                seq += 1;
                let ins = client.prepare(MODEL_AUDIT_INSERT).await.unwrap();
                audit_row(&client, &ins, seq, "step_success", &step, None).await;
            }
            Model::OneTrip => unreachable!("run_model_one_trip"),
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    check_model(&client, env.steps).await;
    drop(client);
    drop_db(&env.conninfo, db).await;
    ms
}

async fn run_model_one_trip(env: &Env) -> f64 {
    let db = "bench_model";
    let client = fresh_db(&env.conninfo, db, &format!("{TABLE}; {MODEL_TABLES}")).await;
    let started = Instant::now();
    let ins = client.prepare(MODEL_AUDIT_INSERT).await.unwrap();
    let up = client.prepare(MODEL_UPSERT).await.unwrap();
    let mut seq = 0i64;
    for n in 1..=env.steps {
        let step = format!("s{n:04}");
        let sql = format!("INSERT INTO bench_t VALUES ({n})");
        let (a, b) = (seq + 1, seq + 2);
        seq += 2;
        // tokio-postgres sends each request when its future is first polled
        // and pipelines those in flight together; `biased;` polls them in
        // this order, so COMMIT goes last.
        let setup = async {
            client
                .simple_query("BEGIN; SET LOCAL lock_timeout = '2000ms'; SET LOCAL statement_timeout = '900000ms'")
                .await
                .unwrap()
        };
        let statement = async { client.simple_query(&sql).await.unwrap() };
        let commit = async { client.simple_query("COMMIT").await.unwrap() };
        tokio::join!(
            biased;
            setup,
            audit_row(&client, &ins, a, "step_success", &step, None),
            audit_row(&client, &ins, b, "step_start", &step, Some(&sql)),
            statement,
            upsert_row(&client, &up, &step),
            commit
        );
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    check_model(&client, env.steps).await;
    drop(client);
    drop_db(&env.conninfo, db).await;
    ms
}

/// Every model wrote what it claims: the rows, and (for pgpilot's shape) the
/// state and audit rows.
async fn check_model(client: &Client, steps: usize) {
    let rows = scalar(client, "SELECT count(*) FROM bench_t").await;
    assert_eq!(rows, steps.to_string(), "model: every row");
    let state = scalar(client, "SELECT count(*) FROM model.step_state").await;
    let audit = scalar(client, "SELECT count(*) FROM model.audit_log").await;
    assert!(
        (state == "0" && audit == "0")
            || (state == steps.to_string() && audit == (2 * steps).to_string()),
        "model: state {state}, audit {audit}"
    );
}

async fn models(env: &Env) -> Vec<(Model, f64)> {
    let mut out = Vec::new();
    for model in [Model::PsqlLike, Model::PgpilotToday, Model::OneTrip] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(match model {
                Model::OneTrip => run_model_one_trip(env).await,
                m => run_model(env, m).await,
            });
        }
        let m = median(&runs);
        println!(
            "model, in-process tokio-postgres (current-thread runtime), no local files — {}: median {m:.1} ms, {:.3} ms/step; runs: {}",
            model.name(),
            m / env.steps as f64,
            list(&runs, " ms")
        );
        out.push((model, m));
    }
    out
}

struct ThroughputResult {
    models: Vec<(Model, f64)>,
    psql: Vec<f64>,
    pgpilot: Vec<f64>,
    shm: Vec<f64>,
    audit: AuditTimes,
    commits: (u64, u64),
    straced: Vec<(Tool, Vec<(String, u64)>)>,
}

fn fs_type(p: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype"])
        .arg(p)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown filesystem".into())
}

// ---------------------------------------------------------------- lock stall

const STALL_SETUP: &str = "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)";

/// When the ALTER starts, after the holder took its lock.
const ALTER_AFTER: Duration = Duration::from_millis(500);
/// Readers pause this long between reads.
const READ_EVERY: Duration = Duration::from_millis(100);
const READERS: usize = 2;

struct StallRun {
    worst_ms: f64,
    reads: usize,
    slow_reads: usize,
    median_read_ms: f64,
    alter_done_s: f64,
    attempts: usize,
}

async fn one_stall(env: &Env, tool: Tool, dir: &Path) -> StallRun {
    let db = format!("stall_{}", tool.name());
    let client = fresh_db(&env.conninfo, &db, STALL_SETUP).await;
    let conninfo = env.db(&db);
    let data_dir = tempfile::tempdir_in(dir).unwrap();
    let runbook = dir.join("bench-engine-stall.toml");
    std::fs::write(&runbook, alter_runbook("bench-engine-stall", "")).unwrap();
    let cmd = match tool {
        Tool::Psql => psql_alter(&env.psql, &conninfo),
        Tool::Pgpilot => pgpilot_cmd(env, &runbook, &db, data_dir.path()),
    };
    let stall = Stall {
        readers: READERS,
        read_every: READ_EVERY,
        alter_after: ALTER_AFTER,
        hold: env.hold,
        tail: Duration::from_secs(1),
    };
    let Stalled {
        out,
        held_at,
        done,
        reads_ms: lat,
        ..
    } = stall.run(&conninfo, cmd).await;
    check_ok(tool.name(), &out);
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'x'"
        )
        .await,
        "1",
        "{}: the column was added",
        tool.name()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let attempts = match tool {
        Tool::Psql => 1,
        Tool::Pgpilot => 1 + stdout.lines().filter(|l| l.contains("] attempt ")).count(),
    };
    drop(client);
    drop_db(&env.conninfo, &db).await;
    StallRun {
        worst_ms: max(&lat),
        reads: lat.len(),
        slow_reads: lat.iter().filter(|l| **l > 200.0).count(),
        median_read_ms: median(&lat),
        alter_done_s: (done - held_at).as_secs_f64(),
        attempts,
    }
}

async fn lock_stall(env: &Env) -> (Vec<StallRun>, Vec<StallRun>) {
    println!(
        "\n== 2. Lock stall: ACCESS SHARE on t held {} s; ALTER TABLE t ADD COLUMN x int starts {} ms in; {READERS} readers, one read per {} ms each ==",
        env.hold.as_secs(),
        ALTER_AFTER.as_millis(),
        READ_EVERY.as_millis()
    );
    println!(
        "pgpilot step: lock_timeout = \"1s\", lock_retries = 30, retry_backoff = \"500ms\", on_blockers = \"proceed\" (the headless default without a terminal); psql: no lock_timeout"
    );
    let dir = tempfile::tempdir_in(&env.tmp).unwrap();
    let mut psql = Vec::new();
    let mut pgpilot = Vec::new();
    for rep in 0..env.stall_runs {
        let order = if rep % 2 == 0 {
            [Tool::Psql, Tool::Pgpilot]
        } else {
            [Tool::Pgpilot, Tool::Psql]
        };
        for tool in order {
            let r = one_stall(env, tool, dir.path()).await;
            println!(
                "  run {} {:>7}: worst read {:8.1} ms; {} reads, {} over 200 ms, median read {:.2} ms; ALTER done {:.2} s after the lock was taken, {} attempt(s)",
                rep + 1,
                tool.name(),
                r.worst_ms,
                r.reads,
                r.slow_reads,
                r.median_read_ms,
                r.alter_done_s,
                r.attempts
            );
            match tool {
                Tool::Psql => psql.push(r),
                Tool::Pgpilot => pgpilot.push(r),
            }
        }
    }
    let wp: Vec<f64> = psql.iter().map(|r| r.worst_ms).collect();
    let wg: Vec<f64> = pgpilot.iter().map(|r| r.worst_ms).collect();
    let ratio = median(&wp) / median(&wg);
    println!(
        "worst reader stall, median of {} runs: psql {:.1} ms, pgpilot {:.1} ms; psql/pgpilot {ratio:.1}x; target >= 6x -> {}",
        env.stall_runs,
        median(&wp),
        median(&wg),
        if ratio >= 6.0 { "MET" } else { "NOT MET" }
    );
    println!(
        "ALTER finished (median): psql {:.2} s, pgpilot {:.2} s after the holder took its lock (holder released at {} s)",
        median(&psql.iter().map(|r| r.alter_done_s).collect::<Vec<_>>()),
        median(&pgpilot.iter().map(|r| r.alter_done_s).collect::<Vec<_>>()),
        env.hold.as_secs()
    );
    (psql, pgpilot)
}

// ---------------------------------------------------------------- main

fn main() {
    let Some(env) = Env::from_env() else {
        println!(
            "bench engine: BENCH_CONNINFO is not set; run scripts/bench-engine (it starts a throwaway server)"
        );
        return;
    };
    assert!(
        env.pgpilot.is_file(),
        "{} not found: cargo build --release",
        env.pgpilot.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let admin = connect(&env.db("postgres")).await;
        println!("server: {}", scalar(&admin, "SELECT version()").await);
        let mut settings = String::new();
        for s in [
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "wal_level",
            "lock_timeout",
        ] {
            let _ = write!(
                settings,
                "{s}={} ",
                scalar(&admin, &format!("SHOW {s}")).await
            );
        }
        println!("settings: {}", settings.trim_end());
        let psql_version = Command::new(&env.psql)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        println!("psql: {} ({psql_version})", env.psql);
        println!("pgpilot: {}", env.pgpilot.display());
        drop(admin);

        let tp = throughput(&env).await;
        let (sp, sg) = lock_stall(&env).await;
        summary(&env, &tp, &sp, &sg);
    });
}

fn summary(env: &Env, tp: &ThroughputResult, sp: &[StallRun], sg: &[StallRun]) {
    let n = env.steps as f64;
    let (mp, mg) = (median(&tp.psql), median(&tp.pgpilot));
    println!("\n== Summary (markdown) ==\n");
    println!("| measurement | psql | pgpilot | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} steps, median wall time ({} runs each) | {mp:.1} ms | {mg:.1} ms | pgpilot/psql {:.1}× | ≤ 1.5× | {} |",
        env.steps,
        env.runs,
        mg / mp,
        if mg / mp <= 1.5 { "yes" } else { "**no**" }
    );
    println!("| per step | {:.3} ms | {:.3} ms | | | |", mp / n, mg / n);
    let wp: Vec<f64> = sp.iter().map(|r| r.worst_ms).collect();
    let wg: Vec<f64> = sg.iter().map(|r| r.worst_ms).collect();
    let ratio = median(&wp) / median(&wg);
    println!(
        "| worst reader stall, median of {} runs | {:.0} ms | {:.0} ms | psql/pgpilot {ratio:.1}× | ≥ 6× | {} |",
        env.stall_runs,
        median(&wp),
        median(&wg),
        if ratio >= 6.0 { "yes" } else { "**no**" }
    );
    println!(
        "| ALTER done after lock taken, median | {:.2} s | {:.2} s | | | |",
        median(&sp.iter().map(|r| r.alter_done_s).collect::<Vec<_>>()),
        median(&sg.iter().map(|r| r.alter_done_s).collect::<Vec<_>>())
    );
    println!(
        "\nraw: psql {} | pgpilot {} | pgpilot (audit on tmpfs) {} | stall worst psql {} | stall worst pgpilot {}",
        list(&tp.psql, " ms"),
        list(&tp.pgpilot, " ms"),
        list(&tp.shm, " ms"),
        list(&wp, " ms"),
        list(&wg, " ms")
    );
    for (m, ms) in &tp.models {
        println!("model {}: {:.3} ms/step", m.name(), ms / n);
    }
    println!(
        "diagnostics: before first step {:.1} ms; steps {:.3} ms/step; xact_commit/step psql {:.2} pgpilot {:.2}; straced: {}",
        tp.audit.before_first_step * 1e3,
        tp.audit.steps_span * 1e3 / n,
        tp.commits.0 as f64 / n,
        tp.commits.1 as f64 / n,
        tp.straced
            .iter()
            .map(|(t, c)| format!(
                "{} {} syscalls",
                t.name(),
                c.iter().map(|x| x.1).sum::<u64>()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
