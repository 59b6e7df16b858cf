//! `max_queue_stall`: while a step's ALTER waits for its lock, nobody
//! queued behind it waits much longer than the limit: pgpilot cancels its
//! own statement, lets the queue drain and retries (audited like a
//! lock_timeout retry), and gets through once the holder leaves. With the
//! setting at "0", lock_timeout alone bounds the wait, as before.

mod common;

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::screen::drawn;
use common::{Lab, Ran, connect, eventually, scalar};
use pgpilot::audit::AuditRecord;
use pgpilot::audit::record::Action;
use tokio::task::JoinHandle;

const ALTER: &str = r#"
[runbook]
id = "queue-yield"
title = "Add a column to a table others read"

[settings]
lock_timeout = "LOCK_TIMEOUT"
lock_retries = RETRIES
retry_backoff = "300ms"
max_queue_stall = "STALL"
on_blockers = "proceed"

[[phase]]
id = "p"

  [[phase.step]]
  id = "add-c"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c int"
  rollback = "ALTER TABLE t DROP COLUMN c"
"#;

fn runbook(dir: &tempfile::TempDir, lock_timeout: &str, retries: u32, stall: &str) -> String {
    let path = dir.path().join("queue.toml");
    let text = ALTER
        .replace("LOCK_TIMEOUT", lock_timeout)
        .replace("RETRIES", &retries.to_string())
        .replace("STALL", stall);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Sessions that each run `sql` on t again and again, a short pause
/// between; each keeps its longest wait.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Duration>>,
}

impl Load {
    async fn start(lab: &Lab, db: &str, sessions: usize, sql: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let c = connect(&format!("{} application_name=app-{i}", lab.conninfo(db))).await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let id = fastrand::i32(1..=1000).to_string();
                    c.batch_execute(&sql.replace("$ID", &id)).await.unwrap();
                    worst = worst.max(t0.elapsed());
                    // Pacing of the load (a query every ~20 ms per session), not synchronisation.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                worst
            }));
        }
        Load { stop, tasks }
    }

    /// The longest any of its queries took.
    async fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        let mut worst = Duration::ZERO;
        for t in self.tasks {
            worst = worst.max(t.await.unwrap());
        }
        worst
    }
}

/// The setting of every scenario: database `db` on a lab of its own with
/// t (1,000 rows), and the runbook that adds a column to t with these
/// settings.
struct Scenario {
    lab: Lab,
    db: &'static str,
    client: tokio_postgres::Client,
    rb: String,
    _dir: tempfile::TempDir,
}

impl Scenario {
    async fn new(db: &'static str, lock_timeout: &str, retries: u32, stall: &str) -> Scenario {
        let lab = Lab::new();
        let client = lab.database(db, &[]).await;
        client
            .batch_execute(
                "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
                 INSERT INTO t (id) SELECT g FROM generate_series(1, 1000) g",
            )
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rb = runbook(&dir, lock_timeout, retries, stall);
        Scenario {
            lab,
            db,
            client,
            rb,
            _dir: dir,
        }
    }

    /// A transaction of `nightly-report` holding ACCESS SHARE on t, then
    /// `sessions` sessions running `sql` on t (they queue behind any ALTER
    /// that waits for the report).
    async fn contended(
        &self,
        sessions: usize,
        sql: &'static str,
    ) -> (tokio_postgres::Client, Load) {
        let holder = connect(&format!(
            "{} application_name=nightly-report",
            self.lab.conninfo(self.db)
        ))
        .await;
        holder
            .batch_execute("BEGIN; SELECT count(*) FROM t")
            .await
            .unwrap();
        let load = Load::start(&self.lab, self.db, sessions, sql).await;
        (holder, load)
    }

    /// `pgpilot run RUNBOOK [ARGS] --headless` against the scenario's
    /// database, started; `yield_at` names a failpoint.
    fn start(&self, args: &[&str], yield_at: Option<&str>) -> Child {
        let db = self.lab.conninfo(self.db);
        let mut all = vec!["run", self.rb.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--headless", "--db", &db]);
        let mut c = self.lab.command(&all);
        if let Some(at) = yield_at {
            c.env("PGPILOT_TEST_YIELD_AT", at);
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn records(&self) -> Vec<AuditRecord> {
        if !self.lab.audit_file().exists() {
            return Vec::new();
        }
        pgpilot::audit::query::read_records(&self.lab.audit_file()).unwrap_or_default()
    }

    /// The audit's `retry` records of yields.
    fn yields(&self) -> Vec<AuditRecord> {
        self.records()
            .into_iter()
            .filter(|r| {
                r.action == Action::Retry
                    && r.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("yielded"))
            })
            .collect()
    }

    /// "1" once the step's column is there, "0" before.
    async fn has_column(&self) -> String {
        scalar(
            &self.client,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'c' AND NOT attisdropped",
        )
        .await
    }
}

async fn finished(child: Child) -> Ran {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Ran::from(out)
}

const READ: &str = "SELECT count(*) FROM t";
const WRITE: &str = "UPDATE t SET v = v + 1 WHERE id = $ID";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_behind_a_waiting_alter_never_wait_much_past_max_queue_stall() {
    let s = Scenario::new("qy_readers", "1min", 50, "200ms").await;
    let (holder, readers) = s.contended(4, READ).await;

    let run = s.start(&[], None);
    eventually(
        "two yields in the audit",
        Duration::from_secs(60),
        || async { s.yields().len() >= 2 },
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    let ran = finished(run).await;
    let worst = readers.stop().await;

    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(s.has_column().await, "1");
    assert!(ran.stdout.contains("yielded: "), "{ran}");
    assert!(ran.stdout.contains("got its locks after"), "{ran}");
    let y = s.yields();
    let m = y[0].message.as_deref().unwrap_or_default();
    assert!(m.contains("behind us (pid "), "{m}");
    assert!(
        m.contains("held by pid") && m.contains("nightly-report"),
        "{m}"
    );
    // max_queue_stall plus the watch's interval, three times over: a
    // generous bound (docs/benchmarks.md has the measured figure). A
    // lock_timeout of a minute alone would have let them wait until COMMIT.
    assert!(
        worst < Duration::from_millis(3 * 250),
        "a reader waited {worst:?} behind the ALTER\n{ran}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_queue_stall_zero_leaves_lock_timeout_alone_in_charge() {
    let s = Scenario::new("qy_off", "1500ms", 0, "0").await;
    let (holder, readers) = s.contended(2, READ).await;

    let ran = finished(s.start(&[], None)).await;
    let worst = readers.stop().await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stdout.contains("55P03"), "{ran}");
    assert!(s.yields().is_empty());
    assert_eq!(s.has_column().await, "0");
    // Today's behaviour: the readers queued for the ALTER's whole wait.
    assert!(
        worst >= Duration::from_secs(1),
        "worst wait {worst:?}\n{ran}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_table_gets_its_alter_in_a_gap_and_yields_are_counted() {
    let s = Scenario::new("qy_busy", "1min", 50, "200ms").await;
    // Short write transactions all the time; a report holding the table
    // at first, so that the ALTER has to yield before it finds a gap.
    let (holder, writers) = s.contended(8, WRITE).await;

    let run = s.start(&[], None);
    eventually("a yield in the audit", Duration::from_secs(60), || async {
        !s.yields().is_empty()
    })
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    let ran = finished(run).await;
    let worst = writers.stop().await;

    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(s.has_column().await, "1");
    let n = s.yields().len();
    assert!(
        ran.stdout
            .contains(&format!("got its locks after {n} yield")),
        "{n} yields\n{ran}"
    );
    assert!(worst < Duration::from_millis(3 * 250), "{worst:?}\n{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_its_retries_spent_the_step_fails_naming_what_held_the_table() {
    let s = Scenario::new("qy_spent", "1min", 2, "200ms").await;
    let (holder, readers) = s.contended(2, READ).await;

    let ran = finished(s.start(&[], None)).await;
    readers.stop().await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(ran.code, 1, "{ran}");
    assert_eq!(s.yields().len(), 3, "{ran}");
    assert!(
        ran.stdout
            .contains("did not get its locks in 3 attempts: yielded 3 times"),
        "{ran}"
    );
    assert!(ran.stdout.contains("nightly-report"), "{ran}");
    assert_eq!(s.has_column().await, "0");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_grant_leaves_nothing_half_applied_and_the_retry_applies_once() {
    let s = Scenario::new("qy_race", "2s", 3, "200ms").await;

    let ran = finished(s.start(&[], Some("after-statements"))).await;

    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(s.yields().len(), 1, "{ran}");
    assert!(ran.stdout.contains("attempt 1/4: yielded"), "{ran}");
    assert_eq!(s.has_column().await, "1");
    let state = common::column(
        &s.client,
        "SELECT status FROM pgpilot.step_state WHERE step_id = 'add-c'",
    )
    .await;
    assert_eq!(state, ["applied"]);
    let starts = s
        .records()
        .into_iter()
        .filter(|r| r.action == Action::StepSuccess)
        .count();
    assert_eq!(starts, 1);
}

/// `pgpilot plan RUNBOOK [ARGS]`'s standard output.
fn plan(rb: &str, args: &[&str]) -> Vec<u8> {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .arg("plan")
        .arg(rb)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
        .stdout
}

#[test]
fn plan_explains_max_queue_stall_for_trainees() {
    let lab_free = tempfile::tempdir().unwrap();
    let on = runbook(&lab_free, "1min", 5, "200ms");
    let text = String::from_utf8_lossy(&plan(&on, &[])).into_owned();
    assert!(
        text.contains("once one has waited 200ms (max_queue_stall), pgpilot cancels its own statement, lets them through and retries"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_slice(&plan(&on, &["--format", "json"])).unwrap();
    assert_eq!(v["steps"][0]["max_queue_stall"], "200ms");

    let off = runbook(&lab_free, "1min", 5, "0");
    let text = String::from_utf8_lossy(&plan(&off, &[])).into_owned();
    assert!(
        text.contains("queue behind it for up to 1min (max_queue_stall is off)"),
        "{text}"
    );
}

/// The run screen's lock panel while the step waits: the queue behind
/// pgpilot against max_queue_stall, and its yields.
#[test]
fn the_lock_panel_shows_the_queue_against_max_queue_stall_and_the_yields() {
    use pgpilot::engine::{EngineEvent, TargetInfo};
    use pgpilot::monitor::{Backend, LockWait, build};
    use pgpilot::tui::app::{App, SessionKind};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let dir = tempfile::tempdir().unwrap();
    let rb = runbook(&dir, "1min", 5, "200ms");
    let c = pgpilot::check::check_file(std::path::Path::new(&rb)).expect("runbook");
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        None,
        "postgres@db1:5432/shop".into(),
        pgpilot::tui::keys::defaults(),
    );
    app.on_engine(EngineEvent::Connected(TargetInfo {
        host: "db1".into(),
        port: 5432,
        database: "shop".into(),
        role: "dba".into(),
        server_version: "15.18".into(),
        primary: true,
        pid: 4300,
    }));
    let waiting = Backend {
        pid: 4300,
        backend_type: "client backend".into(),
        user: Some("dba".into()),
        application: Some("pgpilot".into()),
        client: "local".into(),
        state: "active".into(),
        wait_event_type: Some("Lock".into()),
        wait_event: Some("relation".into()),
        xact_age_s: Some(0.2),
        query_age_s: Some(0.2),
        state_age_s: Some(0.2),
        query: "ALTER TABLE t ADD COLUMN c int".into(),
        blocked_by: vec![],
        waiting_for: Some(LockWait {
            mode: "AccessExclusiveLock".into(),
            locktype: "relation".into(),
            relation: Some("t".into()),
            wait_s: Some(0.2),
        }),
    };
    app.on_snapshot(build(
        vec![waiting],
        Duration::from_secs(300),
        Some(4300),
        9999,
        1.0,
    ));
    app.on_engine(EngineEvent::StepStarted {
        step: "add-c".into(),
        attempt: 2,
        of: 6,
    });
    app.on_engine(EngineEvent::QueueBehind {
        step: "add-c".into(),
        sessions: 3,
        oldest: Duration::from_millis(150),
        limit: Duration::from_millis(200),
        yields: 1,
    });
    let mut t = Terminal::new(TestBackend::new(160, 45)).unwrap();
    let screen = drawn(&mut t, &app).join("\n");
    assert!(
        screen
            .contains("3 session(s) queued behind pgpilot, oldest 150ms of max_queue_stall 200ms"),
        "{screen}"
    );
    assert!(
        screen.contains("pgpilot yielded 1 time(s) for add-c to let them through"),
        "{screen}"
    );
    // The wait over, the queue line goes; the yields stay in view.
    app.on_engine(EngineEvent::QueueBehind {
        step: "add-c".into(),
        sessions: 0,
        oldest: Duration::ZERO,
        limit: Duration::from_millis(200),
        yields: 1,
    });
    let screen = drawn(&mut t, &app).join("\n");
    assert!(
        !screen.contains("queued behind pgpilot, oldest"),
        "{screen}"
    );
    assert!(screen.contains("pgpilot yielded 1 time(s)"), "{screen}");
}

/// A rehearsal keeps the locks of its earlier steps until it ends, so
/// cancelling the current statement would not let the queue through: it
/// never yields, and lock_timeout (with `rehearsal_max_queue`) bounds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rehearsal_never_yields() {
    let s = Scenario::new("qy_rehearse", "1500ms", 0, "200ms").await;
    let (holder, readers) = s.contended(2, READ).await;

    let ran = finished(s.start(&["--rehearse"], None)).await;
    let worst = readers.stop().await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_ne!(ran.code, 0, "{ran}");
    assert!(ran.stdout.contains("55P03"), "{ran}");
    assert!(!ran.stdout.contains("yielded"), "{ran}");
    assert!(s.yields().is_empty());
    assert_eq!(s.has_column().await, "0");
    assert!(
        worst >= Duration::from_secs(1),
        "worst wait {worst:?}\n{ran}"
    );
}
