//! What a monitor's poll costs a server whose sessions churn locks
//! (issue 13, item 10), against the naive `pg_blocking_pids()` on every row.
//!
//! Run with `scripts/bench-monitor` (after the poll-cost benchmark) or
//! `cargo bench --bench monitor_contention`. On a throwaway cluster: 250
//! sessions in the database (one holding ACCESS EXCLUSIVE on `locked`, 20
//! waiting for it, the rest idle, one in four idle in a transaction), then
//! pgbench with two lock-churning scripts, short transactions that each lock
//! a row (`SELECT … FOR UPDATE; UPDATE`) or the table (`LOCK TABLE … IN ROW
//! EXCLUSIVE MODE; UPDATE`), `-c 8 -j 2 -T 20`, in three modes: no poller,
//! pgpilot's poll (`Monitor::poll`) every 100 ms, the naive query every
//! 100 ms (prepared too). The modes rotate over the rounds, each run after
//! a VACUUM of the churned table; the TPS drop of each poller is reported
//! against the no-poller runs.
//!
//! Knobs: BENCH_CONTENTION_ROUNDS (3), BENCH_CONTENTION_SECONDS (20),
//! BENCH_CONTENTION_EVERY_MS (100), PGBENCH.

#[path = "support/monitor.rs"]
mod support;

use std::time::{Duration, Instant};

use pgpilot::monitor::Monitor;
use pgpilot::sandbox::{Sandbox, SandboxOptions};
use support::{
    Crowd, NAIVE_SQL, connect, env_usize, loadavg, machine, median, pgbench_path, run_pgbench, tps,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

const ROW_SCRIPT: &str = "\\set id random(1, 1000)
BEGIN;
SELECT n FROM churn WHERE id = :id FOR UPDATE;
UPDATE churn SET n = n + 1 WHERE id = :id;
COMMIT;
";

const TABLE_SCRIPT: &str = "\\set id random(1, 1000)
BEGIN;
LOCK TABLE churn IN ROW EXCLUSIVE MODE;
UPDATE churn SET n = n + 1 WHERE id = :id;
COMMIT;
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    None,
    Pgpilot,
    Naive,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::None, Mode::Pgpilot, Mode::Naive];

    fn name(self) -> &'static str {
        match self {
            Mode::None => "no poller",
            Mode::Pgpilot => "pgpilot poll",
            Mode::Naive => "naive query",
        }
    }
}

/// Polls every `every` until `stop` fires; the poll latencies, in ms.
fn poller(
    mode: Mode,
    monitor: Monitor,
    naive: Client,
    every: Duration,
    mut stop: oneshot::Receiver<()>,
) -> JoinHandle<(Monitor, Client, Vec<f64>, usize)> {
    tokio::spawn(async move {
        let statement = naive.prepare(NAIVE_SQL).await.expect("prepare naive");
        let mut latencies = Vec::new();
        let mut errors = 0;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    let started = Instant::now();
                    let ok = match mode {
                        Mode::Pgpilot => monitor.poll().await.is_ok(),
                        Mode::Naive => naive.query(&statement, &[]).await.is_ok(),
                        Mode::None => true,
                    };
                    latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                    if !ok {
                        errors += 1;
                    }
                }
            }
        }
        (monitor, naive, latencies, errors)
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "monitor contention bench: skipped (run it with `cargo bench --bench monitor_contention`)"
        );
        return;
    }
    let rounds = env_usize("BENCH_CONTENTION_ROUNDS", 3);
    let seconds = env_usize("BENCH_CONTENTION_SECONDS", 20).to_string();
    let every = Duration::from_millis(env_usize("BENCH_CONTENTION_EVERY_MS", 100) as u64);
    let started = Instant::now();

    let sb = Sandbox::start_with(SandboxOptions::default().max_connections(400))
        .expect("start a sandbox cluster");
    sb.create_database("bench").expect("create database bench");
    let db = sb.conninfo("bench");
    println!("machine: {}", machine());
    println!("1-min load average at start: {}", loadavg());
    println!(
        "PostgreSQL {} (sandbox, max_connections 400, fsync off), pgbench {}",
        sb.server_version().expect("server version"),
        pgbench_path(&sb).display()
    );
    let observer = connect(&db, "bench-observer").await;
    observer
        .batch_execute(
            "CREATE TABLE locked (id int); INSERT INTO locked VALUES (1);
             CREATE TABLE other (id int); INSERT INTO other VALUES (1);
             CREATE TABLE churn (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO churn SELECT g, 0 FROM generate_series(1, 1000) g;
             ANALYZE churn",
        )
        .await
        .expect("tables");
    let mut crowd = Crowd::start(&db, &observer).await;
    crowd.grow_to(&db, 250).await;
    let scripts = tempfile::tempdir().expect("tempdir");
    let rows = scripts.path().join("rows.sql");
    let table = scripts.path().join("table.sql");
    std::fs::write(&rows, ROW_SCRIPT).expect("script");
    std::fs::write(&table, TABLE_SCRIPT).expect("script");
    let (rows, table) = (
        rows.to_str().expect("utf-8").to_string(),
        table.to_str().expect("utf-8").to_string(),
    );
    let args = |t: &str| -> Vec<String> {
        [
            "-n", "-f", &rows, "-f", &table, "-c", "8", "-j", "2", "-T", t,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let mut monitor = Some(
        Monitor::new(
            connect(&db, "pgpilot-monitor").await,
            Duration::from_secs(5),
        )
        .await
        .expect("monitor session"),
    );
    let mut naive = Some(connect(&db, "bench-naive").await);
    let warm: Vec<String> = args("5");
    let warm: Vec<&str> = warm.iter().map(String::as_str).collect();
    run_pgbench(&sb, &warm).await;

    println!();
    println!(
        "## Lock churn: pgbench -n -f rows.sql -f table.sql -c 8 -j 2 -T {seconds}, 250 sessions in the database ({} waiting), a poller every {} ms",
        support::WAITERS,
        every.as_millis()
    );
    println!();
    println!("| run | round | poller | tps | polls | poll latency median | errors |");
    println!("|---|---|---|---|---|---|---|");
    let mut results: Vec<(usize, Mode, f64)> = Vec::new();
    let mut run = 0;
    for round in 0..rounds {
        for k in 0..3 {
            let mode = Mode::ALL[(round + k) % 3];
            run += 1;
            // Every run starts from the same table: without this the dead
            // rows of the runs before slow the later ones down.
            observer
                .batch_execute("VACUUM churn")
                .await
                .expect("vacuum");
            let (stop_tx, stop_rx) = oneshot::channel();
            let task = poller(
                mode,
                monitor.take().expect("monitor"),
                naive.take().expect("naive client"),
                every,
                stop_rx,
            );
            let a = args(&seconds);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let t = tps(&run_pgbench(&sb, &a).await);
            let _ = stop_tx.send(());
            let (m, n, latencies, errors) = task.await.expect("poller");
            monitor = Some(m);
            naive = Some(n);
            let (polls, lat) = if mode == Mode::None {
                ("–".to_string(), "–".to_string())
            } else {
                (
                    latencies.len().to_string(),
                    format!("{:.2} ms", median(&latencies)),
                )
            };
            println!(
                "| {run} | {} | {} | {t:.0} | {polls} | {lat} | {errors} |",
                round + 1,
                mode.name()
            );
            results.push((round, mode, t));
        }
    }
    let tps_of = |mode: Mode| -> Vec<f64> {
        results
            .iter()
            .filter(|(_, m, _)| *m == mode)
            .map(|(_, _, t)| *t)
            .collect()
    };
    let base = median(&tps_of(Mode::None));
    println!();
    println!(
        "| poller | median tps | drop vs no poller (medians) | drop in each round vs that round's no-poller run |"
    );
    println!("|---|---|---|---|");
    let mut drops = [0.0; 3];
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        let m = median(&tps_of(mode));
        let per_round: Vec<String> = (0..rounds)
            .map(|r| {
                let of = |mode: Mode| {
                    results
                        .iter()
                        .find(|(rr, mm, _)| *rr == r && *mm == mode)
                        .map(|(_, _, t)| *t)
                        .unwrap_or(f64::NAN)
                };
                let b = of(Mode::None);
                format!("{:.2} %", (b - of(mode)) / b * 100.0)
            })
            .collect();
        drops[i] = (base - m) / base * 100.0;
        println!(
            "| {} | {m:.0} | {:.2} % | {} |",
            mode.name(),
            drops[i],
            per_round.join(", ")
        );
    }
    println!();
    println!(
        "TPS drop, pgpilot's poll {:.2} % against the naive query's {:.2} % (polling every {} ms)",
        drops[1],
        drops[2],
        every.as_millis()
    );
    crowd.release().await;
    println!();
    println!("bench wall time: {:.0} s", started.elapsed().as_secs_f64());
}
