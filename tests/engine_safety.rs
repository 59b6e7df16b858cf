//! The engine under crashes, lost connections, Ctrl-C, a second operator and
//! a lock held by someone else: exactly-once state, resumable, lock-bounded.

mod common;

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Lab, column, connect, scalar};

/// 20 steps: checks, transactional changes that each leave one row in
/// applied_log, and an index built CONCURRENTLY (autocommit).
fn twenty_steps() -> String {
    let mut s = String::from(
        "[runbook]\nid = \"crashy\"\ntitle = \"Twenty steps\"\n\n[[phase]]\nid = \"p\"\n",
    );
    for i in 1..=20 {
        let _ = write!(s, "\n[[phase.step]]\nid = \"s{i:02}\"\n");
        match i {
            1 | 8 | 15 => {
                let _ = write!(s, "kind = \"check\"\nsql = \"SELECT count(*) FROM t\"\n");
            }
            11 => {
                let _ = write!(
                    s,
                    "kind = \"change\"\nsql = \"CREATE INDEX CONCURRENTLY t_b_idx ON t (b)\"\nrollback = \"DROP INDEX CONCURRENTLY IF EXISTS t_b_idx\"\n"
                );
            }
            _ => {
                let _ = write!(
                    s,
                    "kind = \"change\"\nsql = \"ALTER TABLE t ADD COLUMN c{i} int; INSERT INTO applied_log VALUES ('s{i:02}')\"\nrollback = \"ALTER TABLE t DROP COLUMN c{i}\"\n"
                );
            }
        }
    }
    s
}

async fn wait_for_no_pgpilot_backends(client: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpilot'",
    )
    .await
        != "0"
    {
        assert!(
            Instant::now() < deadline,
            "pgpilot's backend outlived its process"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After any crash: a change's effect is present exactly when its state says applied.
async fn assert_consistent(client: &tokio_postgres::Client, context: &str) {
    let logged = column(client, "SELECT step FROM applied_log ORDER BY 1").await;
    let mut dedup = logged.clone();
    dedup.dedup();
    assert_eq!(logged, dedup, "{context}: a step applied twice");
    let applied = column(
        client,
        "SELECT step_id FROM pgpilot.step_state WHERE status = 'applied' AND step_id <> 's11' ORDER BY 1",
    )
    .await;
    assert_eq!(
        logged, applied,
        "{context}: effects and state rows disagree"
    );
    // A change commits with the database copy of its start record, or after
    // it: never without one, however pgpilot was stopped.
    if !logged.is_empty() {
        let unrecorded = column(
            client,
            "SELECT step FROM applied_log EXCEPT SELECT step FROM pgpilot.audit_log WHERE action = 'step_start' ORDER BY 1",
        )
        .await;
        assert!(
            unrecorded.is_empty(),
            "{context}: applied without a step_start record in pgpilot.audit_log: {unrecorded:?}"
        );
    }
    let index_valid = column(
        client,
        "SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass('t_b_idx')",
    )
    .await;
    let s11 = column(
        client,
        "SELECT status FROM pgpilot.step_state WHERE step_id = 's11'",
    )
    .await;
    if s11 == ["applied"] {
        assert_eq!(
            index_valid,
            ["true"],
            "{context}: s11 applied without a valid index"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_point_leaves_exactly_once_state_and_a_resumable_run() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("twenty.toml");
    std::fs::write(&rb, twenty_steps()).unwrap();
    let rb = rb.to_str().unwrap();
    let mut killed = 0;
    // Each transactional step passes 4 crash points (before it is sent, once
    // its COMMIT is on the wire, after COMMIT returned, after its success
    // record), so this spreads the kills over the whole run.
    for n in (1..=97).step_by(4) {
        let db = format!("crash_{n}");
        let client = lab.database(&db, &[]).await;
        client.batch_execute("CREATE TABLE t (id int PRIMARY KEY, b int); INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g; CREATE TABLE applied_log (step text)").await.unwrap();
        let conninfo = lab.conninfo(&db);
        let status = lab
            .command(&["run", rb, "--headless", "--db", &conninfo])
            .env("PGPILOT_TEST_KILL_AT", n.to_string())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            assert_eq!(status.code(), Some(0), "kill point {n}: {status:?}");
        }
        wait_for_no_pgpilot_backends(&client).await;
        if column(&client, "SELECT to_regclass('pgpilot.step_state')::text").await != ["NULL"] {
            assert_consistent(&client, &format!("after kill at point {n}")).await;
        }
        let again = lab.run(&["run", rb, "--headless", "--db", &conninfo]);
        assert_eq!(again.code, 0, "kill point {n}, second run:\n{again}");
        assert_consistent(&client, &format!("after resuming from point {n}")).await;
        assert_eq!(
            scalar(&client, "SELECT count(*) FROM applied_log").await,
            "16",
            "point {n}: every change applied once"
        );
        assert_eq!(
            column(
                &client,
                "SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass('t_b_idx')"
            )
            .await,
            ["true"]
        );
    }
    assert!(killed >= 20, "only {killed} runs were killed");
    let verify = lab.run(&["audit", "verify", lab.audit_file().to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{verify}");
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

    // Someone reads t in a transaction and keeps it open for 10 s.
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .unwrap();
    let started = Instant::now();
    let child = lab
        .command(&["run", &rb, "--headless", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Readers keep reading t; each read's wait is measured.
    let reader_db = db.clone();
    let readers = tokio::spawn(async move {
        let r = connect(&reader_db).await;
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_secs(12);
        while Instant::now() < until {
            let t = Instant::now();
            r.simple_query("SELECT count(*) FROM t").await.unwrap();
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worst
    });

    // A second operator on the same runbook and database is refused, told who holds it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(second.code, 3, "{second}");
    assert!(
        second
            .stderr
            .contains("is being run by role postgres from 127.0.0.1 (pid"),
        "{second}"
    );

    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let out = common::Ran::from(child.wait_with_output().unwrap());
    let worst = readers.await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("attempt"),
        "the step retried after lock timeouts:\n{out}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the step cannot finish before the holder ends"
    );
    // psql would have queued the readers behind the ALTER for the holder's 10 s.
    assert!(worst < Duration::from_secs(3), "a reader waited {worst:?}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'x'").await, "1");
}
