//! Forward steps and rollbacks share one attempt loop: a rollback's retry
//! reports that attempt's wait, an autocommit rollback is bounded by
//! `statement_timeout` too, and a cancel during a rollback's backoff is
//! audited like one during a step's.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Lab, column};
use pgpilot::audit::AuditRecord;
use pgpilot::audit::record::Action;

const RETRIED_ROLLBACK: &str = r#"
[runbook]
id = "rollback-retries"
title = "A rollback that waits for its lock"

[settings]
lock_timeout = "200ms"
lock_retries = 2
retry_backoff = "BACKOFF"

[[phase]]
id = "p"

  [[phase.step]]
  id = "add-view"
  kind = "change"
  sql = "CREATE VIEW v AS SELECT 1 AS x"
  rollback = "DROP VIEW v"
"#;

const SLOW_ROLLBACK: &str = r#"
[runbook]
id = "slow-rollback"
title = "A rollback that cannot run in a transaction and runs long"

[settings]
lock_timeout = "5s"
statement_timeout = "500ms"

[[phase]]
id = "p"

  [[phase.step]]
  id = "drop-slow-index"
  kind = "change"
  sql = "DROP INDEX CONCURRENTLY IF EXISTS slow_i"
  rollback = "CREATE INDEX CONCURRENTLY slow_i ON t ((slow(a)))"
"#;

fn write_runbook(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn records(lab: &Lab) -> Vec<AuditRecord> {
    if !lab.audit_file().exists() {
        return Vec::new();
    }
    pgpilot::audit::query::read_records(&lab.audit_file()).expect("local audit log")
}

fn of_step<'a>(records: &'a [AuditRecord], step: &str, action: Action) -> Vec<&'a AuditRecord> {
    records
        .iter()
        .filter(|r| r.step.as_deref() == Some(step) && r.action == action)
        .collect()
}

/// Applies `rb`, then opens a transaction that reads `v` and stays open, so
/// `DROP VIEW v` waits for its ACCESS EXCLUSIVE lock.
async fn applied_and_held(lab: &Lab, db: &str, rb: &str) -> tokio_postgres::Client {
    let ran = lab.run(&["run", rb, "--headless", "--db", &lab.conninfo(db)]);
    assert_eq!(ran.code, 0, "{ran}");
    let holder = common::connect(&lab.conninfo(db)).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM v")
        .await
        .unwrap();
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_retry_reports_the_wait_of_that_attempt_alone() {
    let lab = Lab::new();
    let client = lab.database("rollback_retry", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(
        &dir,
        "retries.toml",
        &RETRIED_ROLLBACK.replace("BACKOFF", "1s"),
    );
    let _holder = applied_and_held(&lab, "rollback_retry", &rb).await;

    let ran = lab.run(&[
        "rollback",
        &rb,
        "--headless",
        "--db",
        &lab.conninfo("rollback_retry"),
    ]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stdout.contains("did not get")
            || ran.stdout.contains("55P03")
            || ran.stdout.contains("lock timeout"),
        "{ran}"
    );
    let all = records(&lab);
    let retries = of_step(&all, "add-view", Action::Retry);
    assert_eq!(retries.len(), 2, "{retries:#?}");
    for r in &retries {
        let waited = r.duration_ms.expect("a retry says how long it waited");
        // lock_timeout is 200 ms; the second attempt starts after a backoff
        // of at least 750 ms, which a cumulative figure would include.
        assert!(
            (200..750).contains(&waited),
            "retry {:?} reports {waited} ms, not the wait of its own attempt",
            r.attempt
        );
    }
    assert_eq!(
        of_step(&all, "add-view", Action::RollbackFailure).len(),
        1,
        "{all:#?}"
    );
    assert_eq!(
        column(
            &client,
            "SELECT status FROM pgpilot.step_state WHERE step_id = 'add-view'"
        )
        .await,
        ["applied"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autocommit_rollback_is_bounded_by_statement_timeout() {
    let lab = Lab::new();
    let client = lab.database("rollback_timeout", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 4);
             CREATE FUNCTION slow(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql
               AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN x; END $$",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(&dir, "slow.toml", SLOW_ROLLBACK);
    let db = lab.conninfo("rollback_timeout");
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");

    // Building the index calls slow() once a row: two seconds at least,
    // four times the step's statement_timeout.
    let ran = lab.run(&["rollback", &rb, "--headless", "--db", &db]);
    assert_eq!(
        ran.code, 1,
        "the rollback ran past statement_timeout\n{ran}"
    );
    let all = records(&lab);
    let failed = of_step(&all, "drop-slow-index", Action::RollbackFailure);
    assert_eq!(failed.len(), 1, "{all:#?}");
    assert_eq!(failed[0].sqlstate.as_deref(), Some("57014"), "{failed:#?}");
    assert!(
        failed[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("statement timeout")),
        "{failed:#?}"
    );
    // In doubt, not applied: the cancelled build may have left an invalid
    // index; a later rollback finishes, a later run re-checks the step.
    assert_eq!(
        column(
            &client,
            "SELECT status FROM pgpilot.step_state WHERE step_id = 'drop-slow-index'"
        )
        .await,
        ["rolling_back"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_rollback_backoff_is_audited() {
    let lab = Lab::new();
    let client = lab.database("rollback_cancel", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    // A backoff long enough that the cancel surely lands in it.
    let rb = write_runbook(
        &dir,
        "cancel.toml",
        &RETRIED_ROLLBACK.replace("BACKOFF", "30s"),
    );
    let _holder = applied_and_held(&lab, "rollback_cancel", &rb).await;

    let db = lab.conninfo("rollback_cancel");
    let child = lab
        .command(&["rollback", &rb, "--headless", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first attempt has timed out and the backoff begun once its retry
    // record is on disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    while of_step(&records(&lab), "add-view", Action::Retry).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no retry record within 30 s: {:#?}",
            records(&lab)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled_at = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = common::Ran::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 130, "{out}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(15),
        "the cancel waited for the backoff: {:?}",
        cancelled_at.elapsed()
    );
    let all = records(&lab);
    assert_eq!(
        of_step(&all, "add-view", Action::Cancel).len(),
        1,
        "{all:#?}"
    );
    let failed = of_step(&all, "add-view", Action::RollbackFailure);
    assert_eq!(failed.len(), 1, "{all:#?}");
    assert_eq!(failed[0].sqlstate.as_deref(), Some("57014"), "{failed:#?}");
    assert_eq!(
        column(
            &client,
            "SELECT status FROM pgpilot.step_state WHERE step_id = 'add-view'"
        )
        .await,
        ["applied"]
    );
}
