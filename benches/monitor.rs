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
//!    Monitor polling every second; then, because a 1 s poll costs far less
//!    than run-to-run noise on a shared machine, the same with the Monitor
//!    polling every 10 ms (`-T 10`), whose drop divided by its polls per
//!    second estimates one poll a second. Each run records the CPU that other
//!    processes used meanwhile (/proc/stat minus this benchmark's processes)
//!    and the on-CPU time of the monitor's backend.
//!
//! Knobs (environment): BENCH_MONITOR_POLLS (default 200),
//! BENCH_MONITOR_EXPLAINS (200), BENCH_MONITOR_PAIRS (5 runs on, 6 off),
//! BENCH_MONITOR_SECONDS (30 s per pgbench run), BENCH_MONITOR_AMP_PAIRS (3 on, 4 off),
//! BENCH_MONITOR_AMP_SECONDS (10), BENCH_MONITOR_THROUGHPUT (1; 0 skips part 2),
//! PGBENCH (path of pgbench).
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing.

use std::time::{Duration, Instant};

#[path = "support/monitor.rs"]
mod support;

use pgpilot::monitor::Monitor;
use pgpilot::sandbox::{Sandbox, SandboxOptions};
use support::{
    Crowd, NAIVE_SQL, WAITERS, connect, count, env_usize, loadavg, machine, median, ms,
    pgbench_path, quantile, run_pgbench, tps,
};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A pgbench run counts as undisturbed when other processes used less than
/// this share of the machine's CPU during it.
const CLEAN_PCT: f64 = 8.0;
/// Scenario sizes: sessions connected to the benchmark database, holder and
/// waiters included (the bench's two measuring connections come on top).
const SIZES: [usize; 2] = [50, 250];

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

const NAMES: [&str; 3] = [
    "pgpilot poll (`Monitor::poll`)",
    "pg_activity blocking query",
    "naive `pg_blocking_pids()` on every row",
];

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
) -> ([QueryFigures; 3], Vec<f64>) {
    let mut figs: [QueryFigures; 3] = std::array::from_fn(|_| QueryFigures {
        client_ms: Vec::new(),
        exec_ms: Vec::new(),
        plan_ms: Vec::new(),
        rows: 0,
    });
    // A waiter woken by its deadlock check (deadlock_timeout, 1 s) shows no
    // wait event until it sleeps again, a moment that a starved CPU can
    // stretch over a poll: start once the poll sees every waiter.
    let deadline = Instant::now() + Duration::from_secs(30);
    while monitor.poll().await.expect("pgpilot poll").blocking.len() != WAITERS {
        assert!(Instant::now() < deadline, "the poll never saw every waiter");
    }
    let warmup = 10;
    for round in 0..warmup + polls {
        for k in 0..3 {
            let q = (round + k) % 3;
            let started = Instant::now();
            let rows = match q {
                0 => {
                    let snap = monitor.poll().await.expect("pgpilot poll");
                    assert_eq!(
                        snap.blocking.len(),
                        WAITERS,
                        "pgpilot sees the waiters: {:?}",
                        snap.backends
                            .iter()
                            .map(|b| (b.pid, &b.state, &b.wait_event_type, &b.blocked_by))
                            .collect::<Vec<_>>()
                    );
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
    // The poll as it runs while the waits are known (its parameter: their
    // keys), and as it runs when every wait is read from pg_locks (a new
    // wait, or every REREAD_AFTER-th poll).
    let mut tries = 0;
    while monitor.sql_as_run(true).contains("ARRAY[]") && tries < 20 {
        monitor.poll().await.expect("pgpilot poll");
        tries += 1;
    }
    let steady = monitor.sql_as_run(true);
    assert!(!steady.contains("ARRAY[]"), "the monitor knows the waits");
    let first_sight = monitor.sql_as_run(false);
    let mut full = Vec::new();
    for round in 0..explains + 3 {
        for k in 0..4 {
            let q = (round + k) % 4;
            let (plan, exec) = match q {
                0 => server_ms(monitor.client(), &steady).await,
                1 => server_ms(probe, PG_ACTIVITY_SQL).await,
                2 => server_ms(probe, NAIVE_SQL).await,
                _ => server_ms(monitor.client(), &first_sight).await,
            };
            if round < 3 {
                continue;
            }
            if q == 3 {
                full.push(exec);
            } else {
                figs[q].plan_ms.push(plan);
                figs[q].exec_ms.push(exec);
            }
        }
    }
    (figs, full)
}

fn report_poll_costs(size: usize, backends_seen: i64, figs: &[QueryFigures; 3], full: &[f64]) {
    println!();
    println!(
        "### {size} sessions ({WAITERS} waiting on a lock; {backends_seen} client backends in pg_stat_activity incl. the bench's own)"
    );
    println!();
    println!(
        "| query | rows | client median | client p95 | server exec (median) | server exec (p95) | server planning (median) | median vs pgpilot | p95 vs pgpilot | exec vs pgpilot |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let base = (
        median(&figs[0].client_ms),
        quantile(&figs[0].client_ms, 0.95),
        median(&figs[0].exec_ms),
    );
    for (name, f) in NAMES.iter().zip(figs) {
        let (m, p, e, ep, pl) = (
            median(&f.client_ms),
            quantile(&f.client_ms, 0.95),
            median(&f.exec_ms),
            quantile(&f.exec_ms, 0.95),
            median(&f.plan_ms),
        );
        println!(
            "| {name} | {} | {m:.3} ms | {p:.3} ms | {e:.3} ms | {ep:.3} ms | {pl:.3} ms | {:.2}× | {:.2}× | {:.2}× |",
            f.rows,
            m / base.0,
            p / base.1,
            e / base.2
        );
    }
    // Issue 13's target: pgpilot's server execution within 1.5x the naive
    // query's, planning excluded (the poll is prepared once per connection).
    let (pe, ne) = (median(&figs[0].exec_ms), median(&figs[2].exec_ms));
    let (pp, np) = (
        quantile(&figs[0].exec_ms, 0.95),
        quantile(&figs[2].exec_ms, 0.95),
    );
    let (fe, fp) = (median(full), quantile(full, 0.95));
    let every = f64::from(pgpilot::monitor::REREAD_AFTER);
    let amortized = (fe + (every - 1.0) * pe) / every;
    println!();
    println!(
        "server execution, pgpilot (waits known) / naive: median {pe:.3} / {ne:.3} ms = {:.2}x, p95 {pp:.3} / {np:.3} ms = {:.2}x",
        pe / ne,
        pp / np,
    );
    println!(
        "server execution, pgpilot reading every wait from pg_locks (a new wait; every {every}th poll) / naive: median {fe:.3} / {ne:.3} ms = {:.2}x, p95 {fp:.3} / {np:.3} ms = {:.2}x",
        fe / ne,
        fp / np,
    );
    println!(
        "pgpilot over {every} polls of an unchanged wait (1 read + {} known): {amortized:.3} ms per poll = {:.2}x naive (target <= 1.5x at 250 sessions: {})",
        every - 1.0,
        amortized / ne,
        if amortized / ne <= 1.5 {
            "met"
        } else {
            "NOT met"
        }
    );
}

struct PollerStats {
    polls: usize,
    errors: usize,
    poll_ms: Vec<f64>,
}

/// Polls every `every` until `stop` fires, like `pgpilot monitor --interval 1s`.
fn start_poller(
    monitor: Monitor,
    every: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> JoinHandle<(Monitor, PollerStats)> {
    tokio::spawn(async move {
        let mut stats = PollerStats {
            polls: 0,
            errors: 0,
            poll_ms: Vec::new(),
        };
        let mut tick = tokio::time::interval(every);
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
    /// Jiffies of the whole machine (/proc/stat): spent in processes (user,
    /// nice, system), in interrupts (irq, softirq: loopback traffic is
    /// mostly here and belongs to no process), stolen by the hypervisor, and
    /// in all.
    machine_process: u64,
    machine_irq: u64,
    machine_steal: u64,
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
        let f = |i: usize| fields.get(i).copied().unwrap_or(0);
        CpuSample {
            machine_process: f(0) + f(1) + f(2),
            machine_irq: f(5) + f(6),
            machine_steal: f(7),
            machine_total: fields.iter().sum(),
            ours: proc_ticks(&postmaster.to_string(), true)
                + proc_ticks("self", true)
                + proc_ticks(&monitor_pid.to_string(), false),
            monitor_ns: schedstat_ns(&monitor_pid.to_string()),
            bench_ns: schedstat_ns("self"),
        }
    }

    /// Percentages of all cores' time since `before`: used outside this
    /// benchmark's processes, in interrupts, stolen.
    fn since(&self, before: &CpuSample) -> (f64, f64, f64) {
        let total = self.machine_total.saturating_sub(before.machine_total) as f64;
        if total == 0.0 {
            return (0.0, 0.0, 0.0);
        }
        let pct = |now: u64, then: u64| now.saturating_sub(then) as f64 / total * 100.0;
        // This kernel's per-task times include the softirq work done in the
        // task's context (loopback traffic), which /proc/stat books under
        // softirq when CONFIG_IRQ_TIME_ACCOUNTING is off (as here): compare
        // our processes with process + interrupt time.
        let busy = pct(self.machine_process, before.machine_process)
            + pct(self.machine_irq, before.machine_irq);
        let ours = pct(self.ours, before.ours);
        (
            (busy - ours).max(0.0),
            pct(self.machine_irq, before.machine_irq),
            pct(self.machine_steal, before.machine_steal),
        )
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

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("monitor bench: skipped (run it with `cargo bench --bench monitor`)");
        return;
    }
    let polls = env_usize("BENCH_MONITOR_POLLS", 200);
    let explains = env_usize("BENCH_MONITOR_EXPLAINS", 200);
    let pairs = env_usize("BENCH_MONITOR_PAIRS", 5);
    let seconds = env_usize("BENCH_MONITOR_SECONDS", 30).to_string();
    let amp_pairs = env_usize("BENCH_MONITOR_AMP_PAIRS", 3);
    let amp_seconds = env_usize("BENCH_MONITOR_AMP_SECONDS", 10).to_string();
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
    let probe = connect(&db, "bench-probe").await;

    println!();
    println!(
        "## Poll cost ({polls} polls per query after 10 warm-up rounds, interleaved; server times: {explains} EXPLAIN (ANALYZE, TIMING OFF) each; pgpilot's poll is prepared once per connection, the others are parsed and planned on each call)"
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
        let (figs, full) = measure(&monitor, &probe, polls, explains).await;
        report_poll_costs(size, backends, &figs, &full);
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
    if env_usize("BENCH_MONITOR_THROUGHPUT", 1) == 0 {
        println!();
        println!("throughput part skipped (BENCH_MONITOR_THROUGHPUT=0)");
        println!("bench wall time: {:.0} s", started.elapsed().as_secs_f64());
        return;
    }
    let init_started = Instant::now();
    run_pgbench(&sb, &["-i", "-q", "-s", "10"]).await;
    println!();
    println!(
        "## Throughput: pgbench -S -c 8 -j 2 (scale 10, initialised in {:.0} s), after a 10 s warm-up run",
        init_started.elapsed().as_secs_f64()
    );
    run_pgbench(&sb, &["-S", "-c", "8", "-j", "2", "-T", "10"]).await;
    let mut bench = Throughput {
        postmaster: postmaster_pid(&sb),
        monitor_pid: monitor.pid(),
        monitor: Some(monitor),
        sb: &sb,
    };
    let main = bench
        .series(pairs, &seconds, Duration::from_secs(1), "every 1 s")
        .await;
    let amplified = bench
        .series(
            amp_pairs,
            &amp_seconds,
            Duration::from_millis(10),
            "every 10 ms (amplified)",
        )
        .await;

    println!();
    println!("### Summary");
    println!();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "cost of polling once a second, measured in the 'on' runs: monitor backend {:.2} ms CPU/s, bench process main thread (the Monitor's client side, plus waiting on pgbench) {:.2} ms CPU/s; together {:.3} % of the machine's {cores} cores",
        main.monitor_ms_s,
        main.client_ms_s,
        (main.monitor_ms_s + main.client_ms_s) / 1000.0 / cores * 100.0
    );
    println!(
        "expected from the poll's own server time ({pgpilot_server_ms:.2} ms planning + execution at 250 sessions, once a second, on {cores} cores): {:.3} % of server CPU",
        pgpilot_server_ms / 1000.0 / cores * 100.0
    );
    let per_poll = amplified.mean_drop / amplified.polls_per_s;
    let per_poll_se = amplified.se_drop / amplified.polls_per_s;
    println!(
        "amplified: {:.0} polls/s cost {:.2} % ± {:.2} % of tps (mean ± standard error over its on runs); linearly, one poll a second costs {:.3} % ± {:.3} %",
        amplified.polls_per_s, amplified.mean_drop, amplified.se_drop, per_poll, per_poll_se
    );
    let noise = main.spread;
    println!(
        "target (< 1 % drop at 1 poll/s): {}",
        if noise < 1.0 {
            if main.median_drop < 1.0 {
                "met"
            } else {
                "NOT met"
            }
            .to_string()
        } else {
            format!(
                "not resolved directly: run-to-run spread ({noise:.1} %) exceeds the 1 % target (median drop {:.2} %, mean drop of the on runs {:.2} % ± {:.2} %); {}",
                main.median_drop,
                main.mean_drop,
                main.se_drop,
                if per_poll + 2.0 * per_poll_se < 1.0 {
                    "met by the amplified measurement (extrapolated drop + 2 standard errors under 1 %)"
                } else {
                    "the amplified measurement does not settle it either"
                }
            )
        }
    );
    println!();
    println!("bench wall time: {:.0} s", started.elapsed().as_secs_f64());
}

/// The throughput half: pgbench runs without and with a polling Monitor.
struct Throughput<'a> {
    sb: &'a Sandbox,
    postmaster: i32,
    monitor_pid: i32,
    monitor: Option<Monitor>,
}

struct Run {
    tps: f64,
    secs: f64,
    /// % of all cores: other processes, interrupts, steal.
    other: f64,
    irq: f64,
    steal: f64,
    monitor_ns: u64,
    client_ns: u64,
    stats: Option<PollerStats>,
}

struct SeriesSummary {
    median_drop: f64,
    mean_drop: f64,
    se_drop: f64,
    spread: f64,
    polls_per_s: f64,
    monitor_ms_s: f64,
    client_ms_s: f64,
}

impl Throughput<'_> {
    /// One `pgbench -S -c 8 -j 2 -T seconds`, with a Monitor polling every
    /// `poll_every` if given.
    async fn run(&mut self, seconds: &str, poll_every: Option<Duration>) -> Run {
        let poller = poll_every.map(|every| {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let task = start_poller(self.monitor.take().expect("monitor"), every, stop_rx);
            (stop_tx, task)
        });
        let before = CpuSample::take(self.postmaster, self.monitor_pid);
        let wall = Instant::now();
        let tps = tps(&run_pgbench(self.sb, &["-S", "-c", "8", "-j", "2", "-T", seconds]).await);
        // Let the postmaster reap pgbench's backends, so that their CPU time
        // lands in its children's account before the second sample.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = CpuSample::take(self.postmaster, self.monitor_pid);
        let secs = wall.elapsed().as_secs_f64();
        let stats = match poller {
            Some((stop_tx, task)) => {
                let _ = stop_tx.send(());
                let (m, stats) = task.await.expect("poller task");
                self.monitor = Some(m);
                Some(stats)
            }
            None => None,
        };
        let (other, irq, steal) = after.since(&before);
        Run {
            tps,
            secs,
            other,
            irq,
            steal,
            monitor_ns: after.monitor_ns.saturating_sub(before.monitor_ns),
            client_ns: after.bench_ns.saturating_sub(before.bench_ns),
            stats,
        }
    }

    /// `pairs` on runs, each between two off runs; prints a table per run and
    /// a summary.
    async fn series(
        &mut self,
        pairs: usize,
        seconds: &str,
        every: Duration,
        label: &str,
    ) -> SeriesSummary {
        println!();
        println!(
            "### Monitor polling {label}: pgbench -S -c 8 -j 2 -T {seconds}, alternating off/on, {} runs off and {pairs} on",
            pairs + 1
        );
        println!();
        println!(
            "| run | monitor | tps | CPU used outside this benchmark | irq+softirq | steal | monitor backend CPU | bench main thread CPU | polls |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut runs: Vec<(bool, Run)> = Vec::new();
        // off, on, off, …, on, off: every on run has an off run on each side.
        for n in 1..=2 * pairs + 1 {
            let on = n % 2 == 0;
            let r = self.run(seconds, on.then_some(every)).await;
            println!(
                "| {n} | {} | {:.0} | {:.1} % | {:.1} % | {:.1} % | {:.2} ms/s | {:.2} ms/s | {} |",
                if on { "on" } else { "off" },
                r.tps,
                r.other,
                r.irq,
                r.steal,
                r.monitor_ns as f64 / 1e6 / r.secs,
                r.client_ns as f64 / 1e6 / r.secs,
                r.stats.as_ref().map_or("–".to_string(), |s| format!(
                    "{} ({} errors)",
                    s.polls, s.errors
                )),
            );
            runs.push((on, r));
        }
        let off: Vec<f64> = runs
            .iter()
            .filter(|(on, _)| !on)
            .map(|(_, r)| r.tps)
            .collect();
        let on: Vec<f64> = runs
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, r)| r.tps)
            .collect();
        let (m_off, m_on) = (median(&off), median(&on));
        let median_drop = (m_off - m_on) / m_off * 100.0;
        // Each on run against the mean of the off runs on either side of it,
        // which cancels a steady drift of the machine's speed.
        let pair_drops: Vec<f64> = on
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let base = (off[i] + off[i + 1]) / 2.0;
                (base - t) / base * 100.0
            })
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
        println!("| on | {m_on:.0} | {on_lo:.0} | {on_hi:.0} | {on_spread:.1} % |");
        println!();
        let mean = pair_drops.iter().sum::<f64>() / pair_drops.len() as f64;
        let sd = (pair_drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>()
            / (pair_drops.len().saturating_sub(1).max(1)) as f64)
            .sqrt();
        // Undefined from a single on run (NaN fails every comparison below).
        let se = if pair_drops.len() < 2 {
            f64::NAN
        } else {
            sd / (pair_drops.len() as f64).sqrt()
        };
        println!(
            "drop of median tps: {median_drop:.2} %; each on run against the mean of the off runs around it: {}; mean {mean:.2} % ± {se:.2} % (standard error)",
            pair_drops
                .iter()
                .map(|d| format!("{d:.2} %"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let foreign: Vec<f64> = runs.iter().map(|(_, r)| r.other).collect();
        println!(
            "CPU used outside this benchmark during the runs (% of all cores): median {:.1} %, max {:.1} %",
            median(&foreign),
            foreign.iter().copied().fold(0.0, f64::max)
        );
        // Comparisons during which nothing else took a noticeable share of the
        // machine (in the on run and both off runs around it).
        let clean: Vec<f64> = pair_drops
            .iter()
            .enumerate()
            .filter(|(i, _)| foreign[2 * i..=2 * i + 2].iter().all(|f| *f < CLEAN_PCT))
            .map(|(_, d)| *d)
            .collect();
        if clean.is_empty() {
            println!(
                "no on run had other work under {CLEAN_PCT} % CPU in it and in both off runs around it"
            );
        } else {
            println!(
                "on runs with other work under {CLEAN_PCT} % CPU in them and in both off runs around them: {} of {pairs}, drops {}",
                clean.len(),
                clean
                    .iter()
                    .map(|d| format!("{d:.2} %"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        let on_runs: Vec<&Run> = runs.iter().filter(|(on, _)| *on).map(|(_, r)| r).collect();
        let on_secs: f64 = on_runs.iter().map(|r| r.secs).sum();
        let polls: usize = on_runs
            .iter()
            .filter_map(|r| r.stats.as_ref())
            .map(|s| s.polls)
            .sum();
        let poll_ms: Vec<f64> = on_runs
            .iter()
            .filter_map(|r| r.stats.as_ref())
            .flat_map(|s| s.poll_ms.iter().copied())
            .collect();
        let errors: usize = on_runs
            .iter()
            .filter_map(|r| r.stats.as_ref())
            .map(|s| s.errors)
            .sum();
        if !poll_ms.is_empty() {
            println!(
                "monitor during the 'on' runs: {polls} polls ({:.1}/s), {errors} errors, poll latency median {:.2} ms, p95 {:.2} ms",
                polls as f64 / on_secs,
                median(&poll_ms),
                quantile(&poll_ms, 0.95)
            );
        }
        SeriesSummary {
            median_drop,
            mean_drop: mean,
            se_drop: se,
            spread: off_spread.max(on_spread),
            polls_per_s: polls as f64 / on_secs,
            monitor_ms_s: on_runs.iter().map(|r| r.monitor_ns).sum::<u64>() as f64 / 1e6 / on_secs,
            client_ms_s: on_runs.iter().map(|r| r.client_ns).sum::<u64>() as f64 / 1e6 / on_secs,
        }
    }
}
