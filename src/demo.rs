//! `pgpilot demo`: a throwaway cluster with a streaming standby, the demo
//! schema with ~100k readings, a workload that keeps the table busy and now
//! and then holds it in a reporting transaction, and the demo runbook in the
//! TUI (or headless for scripts). During the runbook's backfill the standby's
//! replay stops for a few seconds, so the walk waits for it. Leaving stops the
//! workload and removes both clusters.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::engine::{Mode, RunOptions};
use crate::exit;
use crate::sandbox::Sandbox;
use crate::session::{drive_session, prepare_drive, runtime};

const RUNBOOK: &str = include_str!("../runbooks/demo.toml");
const DATA: &str = include_str!("../assets/demo-data.sql");
const DATABASE: &str = "pgpilot_demo";

/// After its first, staged report, how long the reporting job holds its
/// transaction, and how often it runs.
const REPORT_HOLD: f64 = 3.0;
const REPORT_EVERY: Duration = Duration::from_secs(30);
/// The staged report gives up after this long without pgpilot meeting it.
const STAGED_LIMIT: Duration = Duration::from_secs(600);
/// The demo's standby (its application_name in pg_stat_replication).
const STANDBY: &str = "standby1";
/// The runbook's backfill, and how far it walks before the standby's
/// replay stops; how long replay stays stopped once the standby is behind.
const BACKFILL_STEP: &str = "backfill-battery";
const LAG_AFTER_ROWS: i64 = 20_000;
const REPLAY_HELD: Duration = Duration::from_secs(4);

pub fn run(rehearse: bool, headless: bool, confirm: &[String]) -> u8 {
    let mut options = RunOptions {
        mode: Mode::Run { from: None },
        env: Some("demo".into()),
        rehearse,
        interactive: false,
        emergency: None,
        principal: None,
    };
    let driving = match prepare_drive(headless, confirm, &mut options) {
        Ok(d) => d,
        Err(code) => return code,
    };
    eprintln!("pgpilot demo: starting a throwaway PostgreSQL cluster…");
    let sandbox = match Sandbox::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pgpilot demo: {e}");
            return exit::FAILED;
        }
    };
    if let Err(e) = sandbox.create_database(DATABASE) {
        eprintln!("pgpilot demo: {e}");
        return exit::FAILED;
    }
    // A standby makes the replicas panel and the backfill's lag pause real;
    // without pg_basebackup the demo goes on without them.
    let standby = match sandbox.start_standby(STANDBY) {
        Ok(s) => {
            eprintln!("pgpilot demo: streaming replica {STANDBY} started");
            Some(s)
        }
        Err(e) => {
            eprintln!("pgpilot demo: no streaming replica ({e}); going on without one");
            None
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pgpilot demo: cannot make a temporary directory: {e}");
            return exit::FAILED;
        }
    };
    let path = dir.path().join("demo.toml");
    if let Err(e) = std::fs::write(&path, RUNBOOK) {
        eprintln!("pgpilot demo: cannot write the demo runbook: {e}");
        return exit::FAILED;
    }
    let checked = match crate::check::check_file(&path) {
        Ok(c) => c,
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return exit::FAILED;
        }
    };
    let Some(rt) = runtime() else {
        return exit::FAILED;
    };
    let conninfo = format!("{} application_name=pgpilot", sandbox.conninfo(DATABASE));
    let code = rt.block_on(async {
        let admin = match connect(&sandbox.conninfo(DATABASE), "pgpilot-demo-setup").await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("pgpilot demo: {e}");
                return exit::FAILED;
            }
        };
        eprintln!("pgpilot demo: loading the demo schema and 100,000 readings…");
        if let Err(e) = admin.batch_execute(DATA).await {
            eprintln!("pgpilot demo: loading the demo data failed: {e}");
            return exit::FAILED;
        }
        let standby_conninfo = standby.as_ref().map(|s| s.conninfo("postgres"));
        let workload =
            match Workload::start(&sandbox.conninfo(DATABASE), standby_conninfo.as_deref()).await {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("pgpilot demo: {e}");
                    return exit::FAILED;
                }
            };
        // The reporting job's first transaction is open before the run starts,
        // so the first ALTER meets it: the lock panel, the blocker guard and
        // lock_timeout retries are seen for real.
        workload.report_started(&admin).await;
        eprintln!(
            "pgpilot demo: workload running (readers, writers, a reporting job every {}s)",
            REPORT_EVERY.as_secs()
        );
        let mut driving = driving;
        driving.interval = Duration::from_millis(500);
        let code = drive_session(checked, Some(conninfo), options, driving).await;
        workload.stop();
        code
    });
    eprintln!("pgpilot demo: stopping the cluster and removing it");
    drop(standby);
    drop(sandbox);
    code
}

async fn connect(conninfo: &str, application: &str) -> Result<Client, String> {
    let (client, conn) =
        tokio_postgres::connect(&format!("{conninfo} application_name={application}"), NoTls)
            .await
            .map_err(|e| format!("cannot connect to the demo cluster: {e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// The demo's application: steady writers and readers, and a reporting job.
struct Workload {
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    async fn start(conninfo: &str, standby: Option<&str>) -> Result<Workload, String> {
        let writer = connect(conninfo, "demo-app-writer").await?;
        let reader = connect(conninfo, "demo-app-reader").await?;
        // Named pgpilot-… so the runbook's long-transaction check passes over
        // it; the pre-step guard and the lock panel still show it.
        let report = connect(conninfo, "pgpilot-demo-report").await?;
        let watcher = connect(conninfo, "pgpilot-demo-watcher").await?;
        let mut tasks = vec![
            tokio::spawn(async move {
                loop {
                    let _ = writer.simple_query("SELECT demo_traffic_tick(5)").await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }),
            tokio::spawn(async move {
                loop {
                    let _ = reader
                        .simple_query("SELECT count(*), avg(temperature_c) FROM equipment_readings WHERE equipment_id = 1 + (random() * 499)::int")
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }),
            tokio::spawn(async move {
                staged_report(&report, &watcher).await;
                loop {
                    tokio::time::sleep(REPORT_EVERY).await;
                    let _ = report
                        .simple_query(&format!("SELECT demo_long_report({REPORT_HOLD})"))
                        .await;
                }
            }),
        ];
        // After the reporting job's start: its staged report must be open
        // before the run begins.
        if let Some(standby) = standby {
            let primary = connect(conninfo, "pgpilot-demo-lag").await?;
            let standby = connect(standby, "pgpilot-demo-lag").await?;
            tasks.push(tokio::spawn(async move {
                staged_lag(&primary, &standby).await;
            }));
        }
        Ok(Workload { tasks })
    }

    /// Waits until the reporting job holds its lock (a few seconds at most).
    async fn report_started(&self, admin: &Client) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let active = admin
                .query_one(
                    "SELECT count(*) AS sessions FROM pg_stat_activity WHERE application_name = 'pgpilot-demo-report' AND state = 'idle in transaction'",
                    &[],
                )
                .await
                .and_then(|r| r.try_get::<_, i64>("sessions"))
                .is_ok_and(|n| n > 0);
            if active {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// The reporting job's first report: it reads equipment_readings in a
/// transaction and keeps it open until pgpilot's first ALTER has met it, waited
/// out its lock_timeout and retried, so every walk-through shows the blocker in
/// the lock panel and a retry in the log. An operator who answers the blocker
/// prompt with `w` (wait for the blockers to finish) makes pgpilot look for
/// them again every second instead of waiting on the lock: after a few such
/// looks the report ends, so waiting leads on, as it would with a real
/// report that finishes.
async fn staged_report(report: &Client, watcher: &Client) {
    if report
        .batch_execute("BEGIN; SELECT count(*) FROM equipment_readings")
        .await
        .is_err()
    {
        return;
    }
    let started = Instant::now();
    let mut waits = 0;
    let mut was_waiting = false;
    let mut looks = 0;
    let mut last_look: Option<String> = None;
    while started.elapsed() < STAGED_LIMIT {
        // Watched from another session, so the report's own last query stays
        // what the lock panel shows.
        let Ok(row) = watcher.query_one(WATCH_EXECUTOR, &[]).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let waiting = row.try_get::<_, i64>("waiting").is_ok_and(|n| n > 0);
        if waiting && !was_waiting {
            waits += 1;
        }
        was_waiting = waiting;
        // A third wait means two timed out and were retried: long enough to
        // be seen in the lock panel.
        if waits >= 3 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
        let look = row.try_get::<_, Option<String>>("looked").ok().flatten();
        if look.is_some() && look != last_look {
            looks += 1;
            last_look = look;
        }
        // The guard's first look is before its question; more mean `w`.
        if looks >= WAITED_LOOKS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = report.batch_execute("COMMIT").await;
}

/// How many times pgpilot's blocker guard looks for the report before the
/// report gives way: its first look, then two of its once-a-second polls.
const WAITED_LOOKS: usize = 3;

/// pgpilot's executor: whether it waits on a lock, and when it last started
/// a query on pg_locks (the blocker guard's look for sessions holding locks).
const WATCH_EXECUTOR: &str = "
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
       max(query_start) FILTER (WHERE query LIKE '%pg_locks%')::text AS looked
  FROM pg_stat_activity
 WHERE application_name = 'pgpilot' AND backend_type = 'client backend'";

/// The standby falls behind during the backfill: once the walk has filled
/// `LAG_AFTER_ROWS` readings, replay stops until the primary sees the standby
/// more than the step's `max_replica_lag` behind (so the walk waits), stays
/// stopped `REPLAY_HELD` longer for the operator to see the wait, then goes
/// on. A rehearsal saves no cursor outside its transaction: nothing is staged.
async fn staged_lag(primary: &Client, standby: &Client) {
    loop {
        let filled = primary
            .query_opt(
                "SELECT rows_done FROM pgpilot.step_state WHERE step_id = $1 AND status = 'in_progress'",
                &[&BACKFILL_STEP],
            )
            .await
            .ok()
            .flatten()
            .and_then(|r| r.try_get::<_, Option<i64>>("rows_done").ok().flatten());
        if filled.is_some_and(|n| n >= LAG_AFTER_ROWS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .is_err()
    {
        return;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let behind = primary
            .query_opt(
                "SELECT 1 AS behind FROM pg_stat_replication WHERE application_name = $1 AND replay_lag > interval '1.5 seconds'",
                &[&STANDBY],
            )
            .await
            .is_ok_and(|r| r.is_some());
        if behind {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(REPLAY_HELD).await;
    let _ = standby.batch_execute("SELECT pg_wal_replay_resume()").await;
}
