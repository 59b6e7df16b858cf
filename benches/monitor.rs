//! What the live monitor costs the server it watches.
//!
//! Run with `scripts/bench-monitor` (or `cargo bench --bench monitor`); the
//! figures go to docs/benchmarks.md, section "Monitor". In one run, on a
//! throwaway cluster of its own:
//!
//! 1. Poll cost with 50 and with 250 sessions connected to the database, 20 of
//!    them waiting on a lock: pgpilot's poll (`Monitor::poll`), pg_activity's
//!    blocking-sessions query and the naive "pg_blocking_pids() on every row"
//!    query, each timed from the client (median, p95) and on the server
//!    (`EXPLAIN (ANALYZE, TIMING OFF)` Execution and Planning Time, medians).
//! 2. Throughput: `pgbench -S -c 8 -j 2 -T 30` alternately without and with a
//!    Monitor polling every second.
//!
//! Knobs (environment): BENCH_MONITOR_POLLS (default 200),
//! BENCH_MONITOR_EXPLAINS (50), BENCH_MONITOR_PAIRS (5 off/on pairs),
//! BENCH_MONITOR_SECONDS (30 s per pgbench run), PGBENCH (path of pgbench).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgpilot::monitor::Monitor;
use pgpilot::sandbox::{Sandbox, SandboxOptions};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Sessions waiting on the lock in every scenario.
const WAITERS: usize = 20;
/// Scenario sizes: sessions connected to the benchmark database, holder and
/// waiters included (the bench's two measuring connections come on top).
const SIZES: [usize; 2] = [50, 250];

/// pgpilot's poll query as `src/monitor/query.rs::poll_sql` builds it for
/// PostgreSQL >= 14 (copied: `poll_sql` is private). Used only for EXPLAIN;
/// the client-side figures call `Monitor::poll` itself. `check_poll_sql_copy`
/// compares it with what the monitor really sent and stops the bench if the
/// copy is stale.
const PGPILOT_SQL: &str = "WITH act AS (
    SELECT pid, usename, application_name, client_addr, state, wait_event_type, wait_event,
           xact_start, query_start, state_change, query, datname
      FROM pg_stat_activity
     WHERE pid <> pg_backend_pid()
       AND backend_type = 'client backend'
       AND datname = current_database()
       AND (state IS DISTINCT FROM 'idle' OR xact_start IS NOT NULL)
), blocked AS (
    SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM act WHERE wait_event_type = 'Lock'
)
SELECT a.pid,
       a.usename::text,
       a.application_name,
       coalesce(host(a.client_addr), 'local'),
       coalesce(a.state, ''),
       a.wait_event_type,
       a.wait_event,
       extract(epoch FROM now() - a.xact_start)::float8,
       extract(epoch FROM now() - a.query_start)::float8,
       extract(epoch FROM now() - a.state_change)::float8,
       left(a.query, 2000),
       coalesce(b.blocked_by, '{}'::int[]),
       w.mode,
       w.locktype,
       w.relation::regclass::text,
       CASE WHEN w.pid IS NOT NULL THEN extract(epoch FROM now() - coalesce(w.waitstart, a.state_change))::float8 END,
       a.datname::text
  FROM act a
  LEFT JOIN blocked b ON b.pid = a.pid
  LEFT JOIN LATERAL (
       SELECT l.* FROM pg_locks l
        WHERE l.pid = a.pid AND NOT l.granted AND b.pid IS NOT NULL
        ORDER BY l.locktype = 'relation' DESC
        LIMIT 1
  ) w ON true";

/// pg_activity's blocking-sessions query for PostgreSQL >= 14,
/// pgactivity/queries/get_blocking_post_140000.sql (dalibo/pg_activity,
/// commit 2906474927b04e611dca224e54227f0fe78fc482), with its placeholders
/// filled as pg_activity fills them by default: duration_column = query_start,
/// min_duration = 0, dbname_filter = NULL.
const PG_ACTIVITY_SQL: &str = r"SELECT
      pid,
      application_name,
      sq.datname AS database,
      usename AS user,
      client,
      relation,
      mode,
      locktype AS type,
      duration,
      state,
      sq.query AS query,
      pg_catalog.pg_encoding_to_char(b.encoding) AS encoding,
      wait_event as wait,
      query_id
  FROM
      (
      -- Transaction id lock
      SELECT
            blocking.pid,
            pg_stat_activity.application_name,
            pg_stat_activity.query,
            blocking.mode,
            pg_stat_activity.datname,
            pg_stat_activity.datid,
            pg_stat_activity.usename,
            pg_stat_activity.client_addr AS client,
            blocking.locktype,
            EXTRACT(epoch FROM (NOW() - pg_stat_activity.query_start)) AS duration,
            pg_stat_activity.state as state,
            blocking.relation::regclass AS relation,
            pg_stat_activity.wait_event,
            pg_stat_activity.query_id
        FROM
            pg_locks AS blocking
            JOIN pg_locks AS blocked ON (blocking.transactionid = blocked.transactionid AND blocking.locktype = blocked.locktype)
            JOIN pg_stat_activity ON (blocking.pid = pg_stat_activity.pid)
       WHERE
            blocking.granted
        AND NOT blocked.granted
        AND CASE WHEN 0 = 0
                THEN true
                ELSE extract(epoch from now() - query_start) > 0
            END
        AND CASE WHEN NULL::text IS NULL THEN true
            ELSE datname ~* NULL::text
            END
      UNION ALL
      -- VirtualXid Lock
      SELECT
            blocking.pid,
            pg_stat_activity.application_name,
            pg_stat_activity.query,
            blocking.mode,
            pg_stat_activity.datname,
            pg_stat_activity.datid,
            pg_stat_activity.usename,
            pg_stat_activity.client_addr AS client,
            blocking.locktype,
            EXTRACT(epoch FROM (NOW() - pg_stat_activity.query_start)) AS duration,
            pg_stat_activity.state as state,
            blocking.relation::regclass AS relation,
            pg_stat_activity.wait_event,
            pg_stat_activity.query_id
        FROM
            pg_locks AS blocking
            JOIN pg_locks AS blocked ON (blocking.virtualxid = blocked.virtualxid AND blocking.locktype = blocked.locktype)
            JOIN pg_stat_activity ON (blocking.pid = pg_stat_activity.pid)
       WHERE
            blocking.granted
        AND NOT blocked.granted
        AND CASE WHEN 0 = 0
                THEN true
                ELSE extract(epoch from now() - query_start) > 0
            END
        AND CASE WHEN NULL::text IS NULL THEN true
            ELSE datname ~* NULL::text
            END
      UNION ALL
      -- Relation or tuple Lock
      SELECT
            blocking.pid,
            pg_stat_activity.application_name,
            pg_stat_activity.query,
            blocking.mode,
            pg_stat_activity.datname,
            pg_stat_activity.datid,
            pg_stat_activity.usename,
            pg_stat_activity.client_addr AS client,
            blocking.locktype,
            EXTRACT(epoch FROM (NOW() - pg_stat_activity.query_start)) AS duration,
            pg_stat_activity.state as state,
            blocking.relation::regclass AS relation,
            pg_stat_activity.wait_event,
            pg_stat_activity.query_id
        FROM
            pg_locks AS blocking
            JOIN pg_locks AS blocked ON (blocking.database = blocked.database AND blocking.relation = blocked.relation AND blocking.locktype = blocked.locktype)
            JOIN pg_stat_activity ON (blocking.pid = pg_stat_activity.pid)
       WHERE
            blocking.granted
        AND NOT blocked.granted
        AND blocked.relation IS NOT NULL
        AND CASE WHEN 0 = 0
                THEN true
                ELSE extract(epoch from now() - query_start) > 0
            END
        AND CASE WHEN NULL::text IS NULL THEN true
            ELSE datname ~* NULL::text
            END
      ) AS sq
      LEFT OUTER JOIN pg_database b ON sq.datid = b.oid
GROUP BY
      pid,
      application_name,
      database,
      usename,
      client,
      relation,
      mode,
      locktype,
      duration,
      state,
      query,
      encoding,
      wait_event,
      query_id
ORDER BY
      duration DESC";

/// pg_blocking_pids() on every row of pg_stat_activity.
const NAIVE_SQL: &str = "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity";

const NAMES: [&str; 3] = [
    "pgpilot poll (`Monitor::poll`)",
    "pg_activity blocking query",
    "naive `pg_blocking_pids()` on every row",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect(conninfo: &str, application: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(&format!("{conninfo} application_name={application}"), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {conninfo}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Value at quantile `q` (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The poll SQL the monitor really sent, as pg_stat_activity shows it
/// (truncated to track_activity_query_size), must begin PGPILOT_SQL.
async fn check_poll_sql_copy(observer: &Client, monitor: &Monitor) {
    monitor.poll().await.expect("first poll");
    let row = observer
        .query_one(
            "SELECT query, current_setting('track_activity_query_size') FROM pg_stat_activity WHERE pid = $1",
            &[&monitor.pid()],
        )
        .await
        .expect("monitor's last query");
    let sent: String = row.get(0);
    let limit: String = row.get(1);
    assert!(
        sent.len() > 500 && PGPILOT_SQL.starts_with(&sent),
        "benches/monitor.rs PGPILOT_SQL no longer matches src/monitor/query.rs; \
         the monitor sent (first {limit} bytes):\n{sent}"
    );
}

/// The sessions of a scenario: one holder of ACCESS EXCLUSIVE on `locked`,
/// WAITERS sessions blocked reading it, and the rest idle, one in four of
/// them idle in a transaction that read `other`.
struct Crowd {
    holder: Client,
    waiters: Vec<JoinHandle<Result<(), tokio_postgres::Error>>>,
    others: Vec<Client>,
}

impl Crowd {
    async fn start(db: &str, observer: &Client) -> Crowd {
        let holder = connect(db, "bench-holder").await;
        holder
            .batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("take the lock");
        let mut waiters = Vec::new();
        for _ in 0..WAITERS {
            let c = connect(db, "bench-waiter").await;
            waiters.push(tokio::spawn(async move {
                c.batch_execute("SELECT count(*) FROM locked").await
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .await
            < WAITERS as i64
        {
            assert!(Instant::now() < deadline, "waiters never queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Crowd {
            holder,
            waiters,
            others: Vec::new(),
        }
    }

    fn sessions(&self) -> usize {
        1 + self.waiters.len() + self.others.len()
    }

    async fn grow_to(&mut self, db: &str, total: usize) {
        while self.sessions() < total {
            let c = connect(db, "bench-idle").await;
            if self.others.len().is_multiple_of(4) {
                c.batch_execute("BEGIN; SELECT count(*) FROM other")
                    .await
                    .expect("idle in transaction");
            }
            self.others.push(c);
        }
    }

    async fn release(self) {
        self.holder.batch_execute("COMMIT").await.expect("commit");
        for w in self.waiters {
            w.await.expect("waiter task").expect("waiter query");
        }
        drop(self.others);
        drop(self.holder);
    }
}

struct QueryFigures {
    client_ms: Vec<f64>,
    exec_ms: Vec<f64>,
    plan_ms: Vec<f64>,
    rows: usize,
}

/// (Planning Time, Execution Time) of `EXPLAIN (ANALYZE, TIMING OFF, FORMAT
/// JSON) sql`, in ms.
async fn server_ms(client: &Client, sql: &str) -> (f64, f64) {
    let messages = client
        .simple_query(&format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"))
        .await
        .expect("explain analyze");
    let text = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("explain output");
    let plan: serde_json::Value = serde_json::from_str(&text).expect("explain json");
    let field = |name: &str| {
        plan[0][name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in the plan"))
    };
    (field("Planning Time"), field("Execution Time"))
}

/// The three queries, interleaved (round i starts with query i mod 3) so that
/// drift on the machine hits all three alike.
async fn measure(
    monitor: &Monitor,
    probe: &Client,
    polls: usize,
    explains: usize,
) -> [QueryFigures; 3] {
    let mut figs: [QueryFigures; 3] = std::array::from_fn(|_| QueryFigures {
        client_ms: Vec::new(),
        exec_ms: Vec::new(),
        plan_ms: Vec::new(),
        rows: 0,
    });
    let warmup = 10;
    for round in 0..warmup + polls {
        for k in 0..3 {
            let q = (round + k) % 3;
            let started = Instant::now();
            let rows = match q {
                0 => {
                    let snap = monitor.poll().await.expect("pgpilot poll");
                    assert_eq!(snap.blocking.len(), WAITERS, "pgpilot sees the waiters");
                    snap.backends.len()
                }
                1 => probe
                    .query(PG_ACTIVITY_SQL, &[])
                    .await
                    .expect("pg_activity")
                    .len(),
                _ => probe.query(NAIVE_SQL, &[]).await.expect("naive").len(),
            };
            let elapsed = ms(started.elapsed());
            if round >= warmup {
                figs[q].client_ms.push(elapsed);
                figs[q].rows = rows;
            }
        }
    }
    for round in 0..explains + 3 {
        for k in 0..3 {
            let q = (round + k) % 3;
            let (plan, exec) = match q {
                0 => server_ms(monitor.client(), PGPILOT_SQL).await,
                1 => server_ms(probe, PG_ACTIVITY_SQL).await,
                _ => server_ms(probe, NAIVE_SQL).await,
            };
            if round >= 3 {
                figs[q].plan_ms.push(plan);
                figs[q].exec_ms.push(exec);
            }
        }
    }
    figs
}

fn report_poll_costs(size: usize, backends_seen: i64, figs: &[QueryFigures; 3]) {
    println!();
    println!(
        "### {size} sessions ({WAITERS} waiting on a lock; {backends_seen} client backends in pg_stat_activity incl. the bench's own)"
    );
    println!();
    println!(
        "| query | rows | client median | client p95 | server exec (median) | server planning (median) | median vs pgpilot | p95 vs pgpilot | exec vs pgpilot |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let base = (
        median(&figs[0].client_ms),
        quantile(&figs[0].client_ms, 0.95),
        median(&figs[0].exec_ms),
    );
    for (name, f) in NAMES.iter().zip(figs) {
        let (m, p, e, pl) = (
            median(&f.client_ms),
            quantile(&f.client_ms, 0.95),
            median(&f.exec_ms),
            median(&f.plan_ms),
        );
        println!(
            "| {name} | {} | {m:.3} ms | {p:.3} ms | {e:.3} ms | {pl:.3} ms | {:.2}× | {:.2}× | {:.2}× |",
            f.rows,
            m / base.0,
            p / base.1,
            e / base.2
        );
    }
}

/// $PGBENCH, or the `pgbench` next to the sandbox's server binaries (where
/// `initdb` really lives when the sandbox found it through a symlink, e.g.
/// /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb).
fn pgbench_path(sb: &Sandbox) -> PathBuf {
    if let Some(p) = std::env::var_os("PGBENCH") {
        return PathBuf::from(p);
    }
    let beside_initdb = std::fs::canonicalize(sb.bin_dir().join("initdb"))
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("pgbench")));
    [Some(sb.bin_dir().join("pgbench")), beside_initdb]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pgbench not found in {} nor beside its initdb; set PGBENCH",
                sb.bin_dir().display()
            )
        })
}

fn pgbench_command(sb: &Sandbox, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(pgbench_path(sb));
    for var in [
        "PGDATABASE",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGOPTIONS",
        "PGSERVICE",
    ] {
        cmd.env_remove(var);
    }
    let port = sb.port().to_string();
    cmd.args(["-h", sb.host(), "-p", &port, "-U", "postgres"])
        .args(args)
        .arg("bench")
        .kill_on_drop(true);
    cmd
}

async fn run_pgbench(sb: &Sandbox, args: &[&str]) -> String {
    let out = pgbench_command(sb, args)
        .output()
        .await
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn tps(output: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps line in pgbench output:\n{output}"))
}

struct PollerStats {
    polls: usize,
    errors: usize,
    poll_ms: Vec<f64>,
}

/// Polls every second until `stop` fires, like `pgpilot monitor --interval 1s`.
fn start_poller(
    monitor: Monitor,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> JoinHandle<(Monitor, PollerStats)> {
    tokio::spawn(async move {
        let mut stats = PollerStats {
            polls: 0,
            errors: 0,
            poll_ms: Vec::new(),
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    stats.polls += 1;
                    match monitor.poll().await {
                        Ok(snap) => stats.poll_ms.push(snap.poll_ms),
                        Err(_) => stats.errors += 1,
                    }
                }
            }
        }
        (monitor, stats)
    })
}

/// CPU accounting around a pgbench run, to tell this benchmark's work (server,
/// pgbench, bench process) from whatever else runs on the machine.
struct CpuSample {
    /// Busy and total jiffies of the whole machine (/proc/stat).
    machine_busy: u64,
    machine_total: u64,
    /// Jiffies of the postmaster and its reaped children (the backends), the
    /// bench process and its reaped children (pgbench), and the monitor's
    /// backend (alive, so not yet in the postmaster's account).
    ours: u64,
    /// On-CPU nanoseconds of the monitor's backend and of this process's main
    /// thread (/proc/PID/schedstat).
    monitor_ns: u64,
    bench_ns: u64,
}

impl CpuSample {
    fn take(postmaster: i32, monitor_pid: i32) -> CpuSample {
        let line = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = line
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: u64 = fields.iter().sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        CpuSample {
            machine_busy: total.saturating_sub(idle),
            machine_total: total,
            ours: proc_ticks(&postmaster.to_string(), true)
                + proc_ticks("self", true)
                + proc_ticks(&monitor_pid.to_string(), false),
            monitor_ns: schedstat_ns(&monitor_pid.to_string()),
            bench_ns: schedstat_ns("self"),
        }
    }

    /// Percentage of all cores' time used by processes not of this benchmark.
    fn foreign_pct_since(&self, before: &CpuSample) -> f64 {
        let total = self.machine_total.saturating_sub(before.machine_total) as f64;
        let busy = self.machine_busy.saturating_sub(before.machine_busy) as f64;
        let ours = self.ours.saturating_sub(before.ours) as f64;
        if total == 0.0 {
            0.0
        } else {
            ((busy - ours) / total * 100.0).max(0.0)
        }
    }
}

/// utime + stime (+ cutime + cstime) of /proc/PID/stat, in jiffies.
fn proc_ticks(pid: &str, children: bool) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11) // state .. cmajflt: fields 3..13
        .take(4) // utime stime cutime cstime: fields 14..17
        .filter_map(|v| v.parse().ok())
        .collect();
    let n = if children { 4 } else { 2 };
    f.iter().take(n).sum()
}

/// Time on CPU of a task (for "self", the main thread), in nanoseconds.
fn schedstat_ns(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn postmaster_pid(sb: &Sandbox) -> i32 {
    std::fs::read_to_string(sb.data_dir().join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        .expect("postmaster.pid")
}

/// The 1-minute load average: other work on the machine shows up here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpus} CPUs (nproc), {:.1} GiB RAM, {model}",
        mem_kib / 1024.0 / 1024.0
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("monitor bench: skipped (run it with `cargo bench --bench monitor`)");
        return;
    }
    let polls = env_usize("BENCH_MONITOR_POLLS", 200);
    let explains = env_usize("BENCH_MONITOR_EXPLAINS", 50);
    let pairs = env_usize("BENCH_MONITOR_PAIRS", 5);
    let seconds = env_usize("BENCH_MONITOR_SECONDS", 30).to_string();
    let started = Instant::now();

    let sb = Sandbox::start_with(SandboxOptions::default().max_connections(400))
        .expect("start a sandbox cluster");
    sb.create_database("bench").expect("create database bench");
    let db = sb.conninfo("bench");
    let version = sb.server_version().expect("server version");
    println!("machine: {}", machine());
    let load = loadavg();
    println!("1-min load average at start: {load}");
    if load.parse::<f64>().is_ok_and(|l| l > 1.0) {
        println!("WARNING: the machine is busy (load {load}); throughput figures will be noisy");
    }
    println!(
        "PostgreSQL {version} (sandbox, max_connections 400, fsync off), pgbench {}",
        pgbench_path(&sb).display()
    );

    // ---- 1. poll cost -------------------------------------------------------
    let observer = connect(&db, "bench-observer").await;
    observer
        .batch_execute(
            "CREATE TABLE locked (id int); INSERT INTO locked VALUES (1);
             CREATE TABLE other (id int); INSERT INTO other VALUES (1)",
        )
        .await
        .expect("tables");
    let monitor = Monitor::new(
        connect(&db, "pgpilot-monitor").await,
        Duration::from_secs(5),
    )
    .await
    .expect("monitor session");
    check_poll_sql_copy(&observer, &monitor).await;
    let probe = connect(&db, "bench-probe").await;

    println!();
    println!(
        "## Poll cost ({polls} polls per query after 10 warm-up rounds, interleaved; server times: medians of {explains} EXPLAIN (ANALYZE, TIMING OFF); every query is parsed and planned on each poll)"
    );
    let mut crowd = Crowd::start(&db, &observer).await;
    let mut pgpilot_server_ms = 0.0;
    for size in SIZES {
        crowd.grow_to(&db, size).await;
        let backends = count(
            &observer,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .await;
        let figs = measure(&monitor, &probe, polls, explains).await;
        report_poll_costs(size, backends, &figs);
        pgpilot_server_ms = median(&figs[0].plan_ms) + median(&figs[0].exec_ms);
    }
    crowd.release().await;
    drop(probe);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &observer,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .await
        > 2
    {
        assert!(Instant::now() < deadline, "crowd sessions did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(observer);

    // ---- 2. throughput ------------------------------------------------------
    let init_started = Instant::now();
    run_pgbench(&sb, &["-i", "-q", "-s", "10"]).await;
    println!();
    println!(
        "## Throughput: pgbench -S -c 8 -j 2 -T {seconds} (scale 10, initialised in {:.0} s), {pairs} off/on pairs, alternating, after a 10 s warm-up run",
        init_started.elapsed().as_secs_f64()
    );
    run_pgbench(&sb, &["-S", "-c", "8", "-j", "2", "-T", "10"]).await;
    let bench_args = ["-S", "-c", "8", "-j", "2", "-T", seconds.as_str()];
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut monitor = Some(monitor);
    let mut poller = PollerStats {
        polls: 0,
        errors: 0,
        poll_ms: Vec::new(),
    };
    println!();
    let postmaster = postmaster_pid(&sb);
    let monitor_pid = monitor.as_ref().map_or(0, Monitor::pid);
    let mut foreign = Vec::new();
    let (mut monitor_ns, mut client_ns, mut on_seconds) = (0u64, 0u64, 0.0);
    println!(
        "| run | monitor | tps | CPU used by other processes (% of all cores) | monitor backend CPU | bench process main thread CPU |"
    );
    println!("|---|---|---|---|---|---|");
    for run in 1..=2 * pairs {
        let on_run = run % 2 == 0;
        let poll = on_run.then(|| {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let task = start_poller(monitor.take().expect("monitor"), stop_rx);
            (stop_tx, task)
        });
        let before = CpuSample::take(postmaster, monitor_pid);
        let wall = Instant::now();
        let t = tps(&run_pgbench(&sb, &bench_args).await);
        // Let the postmaster reap pgbench's backends, so that their CPU time
        // lands in its children's account before the second sample.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = CpuSample::take(postmaster, monitor_pid);
        let secs = wall.elapsed().as_secs_f64();
        if let Some((stop_tx, task)) = poll {
            let _ = stop_tx.send(());
            let (m, stats) = task.await.expect("poller task");
            monitor = Some(m);
            poller.polls += stats.polls;
            poller.errors += stats.errors;
            poller.poll_ms.extend(stats.poll_ms);
        }
        let other = after.foreign_pct_since(&before);
        let m_ns = after.monitor_ns.saturating_sub(before.monitor_ns);
        let c_ns = after.bench_ns.saturating_sub(before.bench_ns);
        println!(
            "| {run} | {} | {t:.0} | {other:.1} % | {:.2} ms/s | {:.2} ms/s |",
            if on_run { "on" } else { "off" },
            m_ns as f64 / 1e6 / secs,
            c_ns as f64 / 1e6 / secs,
        );
        foreign.push(other);
        if on_run {
            on.push(t);
            monitor_ns += m_ns;
            client_ns += c_ns;
            on_seconds += secs;
        } else {
            off.push(t);
        }
    }
    let (m_off, m_on) = (median(&off), median(&on));
    let drop_pct = (m_off - m_on) / m_off * 100.0;
    let pair_drops: Vec<f64> = off
        .iter()
        .zip(&on)
        .map(|(a, b)| (a - b) / a * 100.0)
        .collect();
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi, (hi - lo) / median(v) * 100.0)
    };
    let (off_lo, off_hi, off_spread) = spread(&off);
    let (on_lo, on_hi, on_spread) = spread(&on);
    println!();
    println!("| monitor | median tps | min | max | spread (max-min)/median |");
    println!("|---|---|---|---|---|");
    println!("| off | {m_off:.0} | {off_lo:.0} | {off_hi:.0} | {off_spread:.1} % |");
    println!("| on (poll every 1 s) | {m_on:.0} | {on_lo:.0} | {on_hi:.0} | {on_spread:.1} % |");
    println!();
    println!("drop of median tps with the monitor on: {drop_pct:.2} %");
    println!(
        "per-pair drops (on vs the off run before it): {} ; median {:.2} %",
        pair_drops
            .iter()
            .map(|d| format!("{d:.2} %"))
            .collect::<Vec<_>>()
            .join(", "),
        median(&pair_drops)
    );
    if !poller.poll_ms.is_empty() {
        println!(
            "monitor during the 'on' runs: {} polls, {} errors, poll latency median {:.2} ms, p95 {:.2} ms",
            poller.polls,
            poller.errors,
            median(&poller.poll_ms),
            quantile(&poller.poll_ms, 0.95)
        );
    }
    let mean = pair_drops.iter().sum::<f64>() / pair_drops.len() as f64;
    let sd = (pair_drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>()
        / (pair_drops.len().saturating_sub(1).max(1)) as f64)
        .sqrt();
    let se = sd / (pair_drops.len() as f64).sqrt();
    println!("per-pair drop: mean {mean:.2} %, standard error {se:.2} %");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let (monitor_ms_s, client_ms_s) = (
        monitor_ns as f64 / 1e6 / on_seconds,
        client_ns as f64 / 1e6 / on_seconds,
    );
    println!(
        "measured cost of polling once a second (the 'on' runs): monitor backend {monitor_ms_s:.2} ms CPU/s, bench process main thread (the Monitor's client side, plus waiting on pgbench) {client_ms_s:.2} ms CPU/s; together {:.3} % of the machine's {cores} cores",
        (monitor_ms_s + client_ms_s) / 1000.0 / cores * 100.0
    );
    println!(
        "CPU used by other processes during the runs: median {:.1} %, max {:.1} % of all cores",
        median(&foreign),
        foreign.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "expected from the poll's own server time ({pgpilot_server_ms:.2} ms planning + execution at 250 sessions, once a second, on {cores} cores): {:.3} % of server CPU",
        pgpilot_server_ms / 1000.0 / cores * 100.0
    );
    let noise = off_spread.max(on_spread);
    println!(
        "target (< 1 % drop): {}",
        if noise < 1.0 && drop_pct < 1.0 {
            "met".to_string()
        } else if noise < 1.0 {
            "NOT met".to_string()
        } else {
            format!(
                "not resolved by this run: run-to-run spread ({noise:.1} %) exceeds the 1 % target; \
                 median drop {drop_pct:.2} %, per-pair mean {mean:.2} % ± {se:.2} % (standard error)"
            )
        }
    );
    println!();
    println!("bench wall time: {:.0} s", started.elapsed().as_secs_f64());
}
