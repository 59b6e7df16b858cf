//! The engine under crashes, lost connections, Ctrl-C, a second operator and
//! a lock held by someone else: exactly-once state, resumable, lock-bounded.
//!
//! The SIGKILL suite needs the crash points compiled in:
//! `cargo test --features failpoints --test engine_safety`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Lab, column, connect, scalar};

/// One step of each way a step runs: a check with an expectation and a
/// change with one (both checked before COMMIT), two changes sent with their
/// COMMIT in one round trip, and an index built CONCURRENTLY (autocommit).
/// Each transactional change adds a column and writes +1 to `ledger`; its
/// rollback drops the column and writes −1.
const CRASHY: &str = r#"
[runbook]
id = "crashy"
title = "One step of each kind"

[settings]
lock_timeout = "30s"

[[phase]]
id = "p"

  [[phase.step]]
  id = "count"
  kind = "check"
  sql = "SELECT count(*) FROM t"
  expect = { scalar = "1000" }

  [[phase.step]]
  id = "add-c1"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c1 int; INSERT INTO ledger VALUES ('add-c1', 1)"
  rollback = "ALTER TABLE t DROP COLUMN c1; INSERT INTO ledger VALUES ('add-c1', -1)"

  [[phase.step]]
  id = "add-c2"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c2 int; INSERT INTO ledger VALUES ('add-c2', 1)"
  expect = { rows = 1 }
  rollback = "ALTER TABLE t DROP COLUMN c2; INSERT INTO ledger VALUES ('add-c2', -1)"

  [[phase.step]]
  id = "index-b"
  kind = "change"
  sql = "CREATE INDEX CONCURRENTLY t_b_idx ON t (b)"
  rollback = "DROP INDEX CONCURRENTLY IF EXISTS t_b_idx"

  [[phase.step]]
  id = "add-c3"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c3 int; INSERT INTO ledger VALUES ('add-c3', 1)"
  rollback = "ALTER TABLE t DROP COLUMN c3; INSERT INTO ledger VALUES ('add-c3', -1)"
"#;

const CRASHY_SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, b int); \
     INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g; \
     CREATE TABLE ledger (step text NOT NULL, delta int NOT NULL)";

/// The transactional changes of CRASHY and the column each adds.
const COLUMNS: [(&str, &str); 3] = [("add-c1", "c1"), ("add-c2", "c2"), ("add-c3", "c3")];
/// The autocommit change of CRASHY and the index it builds.
const INDEX_STEP: &str = "index-b";

/// Cases killed at once, each in a database and data directory of its own:
/// the children mostly wait on the server, so two cores serve more than two.
const PARALLEL_CASES: usize = 4;

/// Every crash point of the engine: the names given to
/// `failpoint::point("…")` anywhere in src/, read from the source so that a
/// point added later is killed too (or fails the suite if it is never reached).
fn crash_points() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![Path::new(common::ROOT).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("an entry of src/").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                // Code, not comments (failpoint.rs shows the form in its docs).
                let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
                for line in code {
                    for call in line.split("failpoint::point(\"").skip(1) {
                        // A backfill's points are killed by tests/backfill.rs,
                        // which walks a table CRASHY has no step for.
                        if let Some((name, _)) = call.split_once('"')
                            && !name.starts_with("backfill-")
                        {
                            names.insert(name.to_string());
                        }
                    }
                }
            }
        }
    }
    names
}

/// Which command reaches a point: the rollback path's points are named
/// `rollback-…` (src/engine/failpoint.rs), the others are reached by `run`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Command {
    Run,
    Rollback,
}

impl Command {
    fn reaching(point: &str) -> Command {
        if point.starts_with("rollback-") {
            Command::Rollback
        } else {
            Command::Run
        }
    }
}

/// What every case shares.
struct Suite {
    lab: Lab,
    runbook: String,
    rollback_confirms: Vec<String>,
}

/// One pgpilot run of a case: its own data directory (so `audit verify`
/// checks this case's chain alone), `PGPILOT_TEST_KILL_AT` when `kill_at`.
async fn pgpilot(
    suite: &Suite,
    data_dir: &Path,
    command: Command,
    conninfo: &str,
    kill_at: Option<&str>,
) -> Output {
    let mut args = match command {
        Command::Run => vec!["run".to_string()],
        Command::Rollback => vec!["rollback".to_string()],
    };
    args.extend([
        suite.runbook.clone(),
        "--headless".into(),
        "--db".into(),
        conninfo.into(),
    ]);
    if command == Command::Rollback {
        args.extend(suite.rollback_confirms.iter().cloned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = suite.lab.command(&args);
    cmd.env("PGPILOT_DATA_DIR", data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = kill_at {
        cmd.env("PGPILOT_TEST_KILL_AT", k);
    }
    tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run pgpilot")
}

fn shown(out: &Output) -> String {
    format!(
        "{:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn verify_audit(suite: &Suite, data_dir: &Path, context: &str) {
    let file = data_dir.join("audit.jsonl");
    let out = tokio::process::Command::from(suite.lab.command(&[
        "audit",
        "verify",
        file.to_str().expect("a UTF-8 path"),
    ]))
    .output()
    .await
    .expect("run pgpilot audit verify");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{context}: audit verify\n{}",
        shown(&out)
    );
}

/// Polls until no backend of pgpilot is left in `db`: a killed client's
/// backend ends (and rolls back its open transaction) once the server sees
/// the socket closed.
async fn wait_for_pgpilot_to_leave(client: &tokio_postgres::Client, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) AS left FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgpilot'",
                &[&db],
            )
            .await
            .expect("read pg_stat_activity");
        let left: i64 = row.try_get("left").expect("a count");
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{db}: pgpilot's backend outlived its process"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The target as the checks see it.
#[derive(Debug, Default)]
struct Observed {
    /// step_id → status in pgpilot.step_state.
    status: BTreeMap<String, String>,
    /// step → sum of its ledger deltas (+1 per apply, −1 per rollback).
    net: BTreeMap<String, i64>,
    /// Columns of t.
    columns: BTreeSet<String>,
    /// t_b_idx: None when absent, else whether it is valid.
    index_valid: Option<bool>,
    /// Steps with a ledger +1 but no step_start record in pgpilot.audit_log.
    unrecorded: Vec<String>,
}

async fn observe(client: &tokio_postgres::Client) -> Observed {
    let mut o = Observed::default();
    let exists = client
        .query_one(
            "SELECT to_regclass('pgpilot.step_state') IS NOT NULL AS state, \
                    to_regclass('pgpilot.audit_log') IS NOT NULL AS audit",
            &[],
        )
        .await
        .expect("look for pgpilot's tables");
    let has_state: bool = exists.try_get("state").expect("state");
    let has_audit: bool = exists.try_get("audit").expect("audit");
    if has_state {
        for row in client
            .query(
                "SELECT step_id, status FROM pgpilot.step_state WHERE runbook_id = 'crashy'",
                &[],
            )
            .await
            .expect("read step_state")
        {
            o.status.insert(
                row.try_get("step_id").expect("step_id"),
                row.try_get("status").expect("status"),
            );
        }
    }
    for row in client
        .query(
            "SELECT step, sum(delta)::int8 AS net FROM ledger GROUP BY step",
            &[],
        )
        .await
        .expect("read ledger")
    {
        o.net.insert(
            row.try_get("step").expect("step"),
            row.try_get("net").expect("net"),
        );
    }
    for row in client
        .query(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 't'",
            &[],
        )
        .await
        .expect("read columns")
    {
        o.columns.insert(row.try_get("name").expect("name"));
    }
    o.index_valid = client
        .query_opt(
            "SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass('public.t_b_idx')",
            &[],
        )
        .await
        .expect("read pg_index")
        .map(|row| row.try_get("valid").expect("valid"));
    if has_audit {
        for row in client
            .query(
                "SELECT DISTINCT l.step FROM ledger l WHERE l.delta > 0 AND NOT EXISTS \
                 (SELECT 1 FROM pgpilot.audit_log a WHERE a.action = 'step_start' AND a.step = l.step) \
                 ORDER BY 1",
                &[],
            )
            .await
            .expect("read audit_log")
        {
            o.unrecorded.push(row.try_get("step").expect("step"));
        }
    } else {
        o.unrecorded = o.net.keys().cloned().collect();
    }
    o
}

impl Observed {
    fn status(&self, step: &str) -> &str {
        self.status.get(step).map_or("none", String::as_str)
    }

    /// After any crash: nothing applied twice (nor undone twice), and each
    /// change's effects are present exactly when its state says `applied`.
    fn assert_consistent(&self, context: &str) {
        for (step, col) in COLUMNS {
            let net = self.net.get(step).copied().unwrap_or(0);
            assert!(
                (0..=1).contains(&net),
                "{context}: {step} applied {net} times net\n{self:#?}"
            );
            let applied = self.status(step) == "applied";
            assert_eq!(
                net == 1,
                applied,
                "{context}: {step}: ledger and state disagree\n{self:#?}"
            );
            assert_eq!(
                self.columns.contains(col),
                applied,
                "{context}: {step}: column {col} and state disagree\n{self:#?}"
            );
        }
        match (self.status(INDEX_STEP), self.index_valid) {
            ("applied", Some(true)) => {}
            ("applied", found) => {
                panic!("{context}: {INDEX_STEP} applied, index {found:?}\n{self:#?}")
            }
            // In doubt, building or dropping: the next run looks in
            // pg_index (the in-doubt recovery), the next rollback finishes.
            ("in_progress" | "rolling_back", _) => {}
            (_, None) => {}
            (status, found) => {
                panic!("{context}: {INDEX_STEP} {status}, yet index {found:?}\n{self:#?}")
            }
        }
        assert!(
            self.unrecorded.is_empty(),
            "{context}: applied without a step_start record in pgpilot.audit_log: {:?}",
            self.unrecorded
        );
    }

    /// After a run that completed: every step once.
    fn assert_all_applied(&self, context: &str) {
        self.assert_consistent(context);
        assert_eq!(self.status("count"), "passed", "{context}\n{self:#?}");
        for (step, _) in COLUMNS {
            assert_eq!(self.status(step), "applied", "{context}\n{self:#?}");
        }
        assert_eq!(self.status(INDEX_STEP), "applied", "{context}\n{self:#?}");
        assert_eq!(self.index_valid, Some(true), "{context}\n{self:#?}");
    }

    /// After a rollback that completed: every change undone once.
    fn assert_all_rolled_back(&self, context: &str) {
        self.assert_consistent(context);
        for (step, _) in COLUMNS.iter().chain(&[(INDEX_STEP, "")]) {
            assert_eq!(self.status(step), "rolled_back", "{context}\n{self:#?}");
        }
        assert_eq!(self.index_valid, None, "{context}\n{self:#?}");
    }
}

/// One case: a fresh database (for a rollback, with CRASHY applied first),
/// pgpilot killed at the `pass`-th pass of `point`, the checks after the
/// kill, then the same command again to its end and the checks after it.
/// Returns whether pgpilot was killed: false means it ran to its end without
/// passing `point` that often.
async fn crash_case(suite: &Suite, point: &str, pass: u32) -> bool {
    let kill_at = format!("{point}:{pass}");
    let command = Command::reaching(point);
    let db = suite
        .lab
        .server
        .fresh_database("crash")
        .expect("a fresh database");
    let conninfo = suite.lab.conninfo(&db);
    let client = connect(&conninfo).await;
    client
        .batch_execute(CRASHY_SCHEMA)
        .await
        .expect("the test schema");
    let data_dir = tempfile::tempdir().expect("a data directory");
    if command == Command::Rollback {
        let setup = pgpilot(suite, data_dir.path(), Command::Run, &conninfo, None).await;
        assert_eq!(
            setup.status.code(),
            Some(0),
            "{kill_at}: the run before the rollback\n{}",
            shown(&setup)
        );
        observe(&client)
            .await
            .assert_all_applied(&format!("{kill_at}: before the rollback"));
    }

    let out = pgpilot(suite, data_dir.path(), command, &conninfo, Some(&kill_at)).await;
    let killed = match (out.status.signal(), out.status.code()) {
        (Some(libc::SIGKILL), _) => true,
        (_, Some(0)) => false,
        _ => panic!(
            "{kill_at}: {command:?} was neither killed by SIGKILL nor done\n{}",
            shown(&out)
        ),
    };
    wait_for_pgpilot_to_leave(&client, &db).await;
    if killed {
        let context = format!("{command:?} killed at {kill_at}");
        observe(&client).await.assert_consistent(&context);
        verify_audit(suite, data_dir.path(), &context).await;
    }

    let again = pgpilot(suite, data_dir.path(), command, &conninfo, None).await;
    let context = format!("{command:?} again after {kill_at}");
    assert_eq!(again.status.code(), Some(0), "{context}\n{}", shown(&again));
    let after = observe(&client).await;
    match command {
        Command::Run => after.assert_all_applied(&context),
        Command::Rollback => after.assert_all_rolled_back(&context),
    }
    verify_audit(suite, data_dir.path(), &context).await;

    drop(client);
    let admin = connect(&suite.lab.conninfo("postgres")).await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await
        .expect("drop the case's database");
    killed
}

/// Kills at every pass of `point`, one case each, until a run goes by
/// without reaching it. Returns the number of kills.
async fn kill_at_every_pass(
    suite: Arc<Suite>,
    point: String,
    slots: Arc<tokio::sync::Semaphore>,
) -> u32 {
    let mut pass = 1;
    loop {
        let killed = {
            let _slot = slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            crash_case(&suite, &point, pass).await
        };
        if !killed {
            return pass - 1;
        }
        pass += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_point_leaves_exactly_once_state_and_a_resumable_run() {
    // A run-time check, not a compile error: the other tests of this file
    // (and clippy) work without the feature.
    if !cfg!(feature = "failpoints") {
        panic!(
            "the SIGKILL suite needs pgpilot's crash points: run it with `cargo test --features failpoints` (scripts/test does)"
        );
    }
    let started = Instant::now();
    let points = crash_points();
    assert!(
        points.len() >= 10,
        "found only {points:?} in src/: are the crash points still called as failpoint::point(\"name\")?"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rb: PathBuf = dir.path().join("crashy.toml");
    std::fs::write(&rb, CRASHY).expect("write the runbook");
    let runbook = rb.to_str().expect("a UTF-8 path").to_string();
    let suite = Arc::new(Suite {
        lab: Lab::new(),
        rollback_confirms: common::confirms_for(&runbook, true),
        runbook,
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL_CASES));
    let mut cases = tokio::task::JoinSet::new();
    for point in &points {
        let point = point.clone();
        let (suite, slots) = (suite.clone(), slots.clone());
        cases.spawn(async move {
            let kills = kill_at_every_pass(suite, point.clone(), slots).await;
            (point, kills)
        });
    }
    let mut kills = BTreeMap::new();
    while let Some(done) = cases.join_next().await {
        match done {
            Ok((point, n)) => {
                kills.insert(point, n);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a crash case was cancelled: {e}"),
        }
    }
    let never: Vec<&String> = kills
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(p, _)| p)
        .collect();
    assert!(
        never.is_empty(),
        "crash points never reached by CRASHY, so never killed: {never:?} (all: {kills:?})"
    );
    eprintln!(
        "SIGKILL suite: {} kills over {} points in {:?}: {kills:?}",
        kills.values().sum::<u32>(),
        kills.len(),
        started.elapsed()
    );
}

/// A rollback in autocommit (`DROP INDEX CONCURRENTLY`) killed before or
/// after its SQL leaves the step in doubt (`rolling_back`), not `applied`:
/// a later `run` applies it again (the index is rebuilt, or found valid),
/// where it used to skip it as applied with its index gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_an_interrupted_autocommit_rollback_applies_the_step_again() {
    if !cfg!(feature = "failpoints") {
        panic!("needs pgpilot's crash points: run it with `cargo test --features failpoints`");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rb: PathBuf = dir.path().join("crashy.toml");
    std::fs::write(&rb, CRASHY).expect("write the runbook");
    let runbook = rb.to_str().expect("a UTF-8 path").to_string();
    let suite = Suite {
        lab: Lab::new(),
        rollback_confirms: common::confirms_for(&runbook, true),
        runbook,
    };
    for point in [
        "rollback-autocommit-rolling-back",
        "rollback-autocommit-after-statement",
    ] {
        let db = suite
            .lab
            .server
            .fresh_database("regap")
            .expect("a fresh database");
        let conninfo = suite.lab.conninfo(&db);
        let client = connect(&conninfo).await;
        client
            .batch_execute(CRASHY_SCHEMA)
            .await
            .expect("the test schema");
        let data_dir = tempfile::tempdir().expect("a data directory");
        let setup = pgpilot(&suite, data_dir.path(), Command::Run, &conninfo, None).await;
        assert_eq!(setup.status.code(), Some(0), "{point}: {}", shown(&setup));
        let killed = pgpilot(
            &suite,
            data_dir.path(),
            Command::Rollback,
            &conninfo,
            Some(point),
        )
        .await;
        assert_eq!(
            killed.status.signal(),
            Some(libc::SIGKILL),
            "{point}: {}",
            shown(&killed)
        );
        wait_for_pgpilot_to_leave(&client, &db).await;
        let after_kill = observe(&client).await;
        after_kill.assert_consistent(&format!("rollback killed at {point}"));
        assert_eq!(
            after_kill.status(INDEX_STEP),
            "rolling_back",
            "{point}\n{after_kill:#?}"
        );

        let again = pgpilot(&suite, data_dir.path(), Command::Run, &conninfo, None).await;
        let context = format!("run after a rollback killed at {point}");
        assert_eq!(again.status.code(), Some(0), "{context}\n{}", shown(&again));
        assert!(
            shown(&again).contains("its rollback was interrupted"),
            "{context}\n{}",
            shown(&again)
        );
        observe(&client).await.assert_all_applied(&context);
        verify_audit(&suite, data_dir.path(), &context).await;
    }
}

const SLOW: &str = r#"
[runbook]
id = "slow"
title = "A slow step"

[[phase]]
id = "p"

  [[phase.step]]
  id = "slow-copy"
  kind = "change"
  sql = "CREATE TABLE copy AS SELECT 1 AS x FROM pg_sleep(SLEEP)"
  rollback = "DROP TABLE IF EXISTS copy"
"#;

async fn wait_for_active_step(client: &tokio_postgres::Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids = column(client, "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgpilot' AND state = 'active' AND query LIKE '%pg_sleep%'").await;
        if let Some(p) = pids.into_iter().next() {
            return p;
        }
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_connection_fails_the_step_cleanly_and_the_run_resumes() {
    let lab = Lab::new();
    let client = lab.database("term", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("slow.toml");
    std::fs::write(&rb, SLOW.replace("SLEEP", "5")).unwrap();
    let rb = rb.to_str().unwrap().to_string();
    let db = lab.conninfo("term");
    let child = lab
        .command(&["run", &rb, "--headless", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for_active_step(&client).await;
    client
        .batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    let out = common::Ran::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("slow-copy")
            && (out.stderr.contains("terminat") || out.stderr.contains("connection")),
        "{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_eq!(
        column(&client, "SELECT to_regclass('copy')::text").await,
        ["NULL"]
    );
    std::fs::write(&rb, SLOW.replace("SLEEP", "0.1")).unwrap();
    let again = lab.run(&["run", &rb, "--headless", "--db", &db]);
    // The step's text changed, but it was never applied: the run goes on.
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(
        column(
            &client,
            "SELECT status FROM pgpilot.step_state WHERE step_id = 'slow-copy'"
        )
        .await,
        ["applied"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_running_statement_and_exits_130() {
    let lab = Lab::new();
    let client = lab.database("cancel", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("slow.toml");
    std::fs::write(&rb, SLOW.replace("SLEEP", "30")).unwrap();
    let db = lab.conninfo("cancel");
    let child = lab
        .command(&["run", rb.to_str().unwrap(), "--headless", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_active_step(&client).await;
    let started = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = common::Ran::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 130, "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(
        column(&client, "SELECT to_regclass('copy')::text").await,
        ["NULL"]
    );
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(audit.contains("\"action\":\"cancel\""), "{audit}");
    assert!(audit.contains("\"action\":\"step_failure\""), "{audit}");
}

const ALTER: &str = r#"
[runbook]
id = "bounded"
title = "Add a column to a busy table"

[settings]
lock_timeout = "1s"
lock_retries = 30
retry_backoff = "500ms"

[[phase]]
id = "p"

  [[phase.step]]
  id = "add-x"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN x int"
  rollback = "ALTER TABLE t DROP COLUMN x"
"#;

/// Polls until `condition` holds, failing with `what` after `within`.
async fn poll_until<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_wait_much_longer_than_lock_timeout_and_a_second_operator_is_refused() {
    let lab = Lab::new();
    let client = lab.database("busy", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("bounded.toml");
    std::fs::write(&rb, ALTER).unwrap();
    let rb = rb.to_str().unwrap().to_string();
    let db = lab.conninfo("busy");

    // Someone reads t in a transaction and keeps it open until pgpilot has
    // timed out behind it and retried twice.
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .unwrap();
    let mut child = lab
        .command(&["run", &rb, "--headless", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Readers keep reading t until the run is over; each read's wait is measured.
    let reader_db = db.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let readers = tokio::spawn(async move {
        let r = connect(&reader_db).await;
        let mut worst = Duration::ZERO;
        let mut reads = 0u32;
        while !*stopped.borrow() {
            let t = Instant::now();
            r.simple_query("SELECT count(*) FROM t").await.unwrap();
            worst = worst.max(t.elapsed());
            reads += 1;
            // The readers' pace (an application's), not a synchronisation.
            let _ = tokio::time::timeout(Duration::from_millis(100), stopped.changed()).await;
        }
        (worst, reads)
    });

    // A second operator on the same runbook and database is refused, told
    // who holds it: once the first holds the runbook's advisory lock.
    poll_until(
        Duration::from_secs(20),
        "pgpilot took the runbook's advisory lock",
        || async {
            scalar(
                &client,
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'pgpilot'",
            )
            .await
                != "0"
        },
    )
    .await;
    let second = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(second.code, 3, "{second}");
    assert!(
        second
            .stderr
            .contains("is being run by role postgres from 127.0.0.1 (pid"),
        "{second}"
    );

    let audit = lab.audit_file();
    poll_until(
        Duration::from_secs(30),
        "pgpilot retried twice behind the holder",
        || async {
            std::fs::read_to_string(&audit)
                .map(|log| log.matches("\"action\":\"retry\"").count() >= 2)
                .unwrap_or(false)
        },
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the step cannot finish before the holder ends"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let out = common::Ran::from(child.wait_with_output().unwrap());
    let _ = stop.send(true);
    let (worst, reads) = readers.await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("attempt"),
        "the step retried after lock timeouts:\n{out}"
    );
    assert!(reads >= 10, "the readers read only {reads} times");
    // psql would have queued the readers behind the ALTER for as long as the holder held.
    assert!(worst < Duration::from_secs(3), "a reader waited {worst:?}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'x'").await, "1");
}
