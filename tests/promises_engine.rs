//! Promises of docs/safety-model.md about how steps run that no other test
//! held to: only a lock timeout (or pgpilot's own yield) is retried, so a
//! statement timeout or any other error fails the step at its first attempt;
//! a rehearsal names the tables it will lock before its first step, and
//! skips (with a note, audited) a statement that has no transactional form;
//! `--from STEP` runs nothing before STEP, and a value nobody captured says
//! which step to run first.

mod common;

use common::{Lab, runbooks, scalar};
use pgpilot::audit::AuditRecord;
use pgpilot::audit::record::Action;

/// The local audit log's records; none before the first session wrote one.
fn records(lab: &Lab) -> Vec<AuditRecord> {
    if !lab.audit_file().exists() {
        return Vec::new();
    }
    pgpilot::audit::query::read_records(&lab.audit_file()).expect("local audit log")
}

async fn exists(client: &tokio_postgres::Client, name: &str) -> bool {
    scalar(
        client,
        &format!("SELECT (to_regclass('{name}') IS NOT NULL)::text"),
    )
    .await
        == "true"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_or_an_error_fails_the_step_at_its_first_attempt() {
    let lab = Lab::new();
    let client = lab.database("no_retry", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    // (runbook id, the step's SQL, the SQLSTATE it fails with)
    let cases = [
        (
            "slow",
            "CREATE TABLE slow AS SELECT 1 AS s FROM pg_sleep(2)",
            "57014",
        ),
        ("zero", "CREATE TABLE zero AS SELECT 1 / 0 AS z", "22012"),
    ];
    for (id, sql, sqlstate) in cases {
        let rb = runbooks::write(
            &dir,
            &format!("{id}.toml"),
            &format!(
                r#"
[runbook]
id = "{id}"
title = "A step that fails with {sqlstate}"

[settings]
lock_timeout = "1s"
statement_timeout = "200ms"
lock_retries = 3
retry_backoff = "10ms"

[[phase]]
id = "p"

  [[phase.step]]
  id = "{id}"
  kind = "change"
  sql = "{sql}"
  rollback = "DROP TABLE IF EXISTS {id}"
"#
            ),
        );
        let before = records(&lab).len();
        let ran = lab.run_headless(&rb, "no_retry");
        assert_eq!(ran.code, 1, "{id}: {ran}");
        assert!(!exists(&client, id).await, "{id}: the table was made");
        let recs = records(&lab);
        let session = &recs[before..];
        let retries: Vec<_> = session
            .iter()
            .filter(|r| r.action == Action::Retry)
            .collect();
        assert!(retries.is_empty(), "{id}: retried: {retries:?}");
        let starts = session
            .iter()
            .filter(|r| r.action == Action::StepStart)
            .count();
        assert_eq!(starts, 1, "{id}");
        let failure = session
            .iter()
            .find(|r| r.action == Action::StepFailure)
            .expect("a step_failure record");
        assert_eq!(
            failure.sqlstate.as_deref(),
            Some(sqlstate),
            "{id}: {failure:?}"
        );
        assert_eq!(
            scalar(
                &client,
                &format!("SELECT status FROM pgpilot.step_state WHERE runbook_id = '{id}'"),
            )
            .await,
            "failed",
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_names_its_locks_and_skips_what_cannot_run_in_it_audited() {
    let lab = Lab::new();
    let client = lab.database("rehearsed", &[]).await;
    client
        .batch_execute("CREATE TABLE t (a int); CREATE TABLE u (b int)")
        .await
        .expect("tables");
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(
        &dir,
        "rehearsed.toml",
        r#"
[runbook]
id = "rehearsed"
title = "An index and a vacuum, rehearsed"

[settings]
lock_timeout = "1s"

[[phase]]
id = "p"

  [[phase.step]]
  id = "index"
  kind = "change"
  sql = "CREATE INDEX CONCURRENTLY t_a ON t (a)"
  rollback = "DROP INDEX CONCURRENTLY IF EXISTS t_a"

  [[phase.step]]
  id = "vacuum"
  kind = "change"
  sql = "VACUUM u"
"#,
    );
    let db = lab.conninfo("rehearsed");
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db, "--rehearse"]);
    assert_eq!(ran.code, 0, "{ran}");
    // Before the first step: which tables, in which mode, held how long.
    let said = ran
        .stdout
        .lines()
        .find(|l| l.contains("this rehearsal will lock"))
        .unwrap_or_else(|| panic!("no lock announcement: {ran}"));
    assert!(
        said.contains("t (SHARE)") && said.contains("held until the rehearsal ends"),
        "{said}"
    );
    let first_step = ran.stdout.find("[index]").unwrap_or(usize::MAX);
    assert!(
        ran.stdout.find("this rehearsal will lock").unwrap() < first_step,
        "announced after the first step: {ran}"
    );
    assert!(
        ran.stdout
            .contains("cannot run inside the rehearsal's transaction; skipped in rehearsal"),
        "{ran}"
    );
    let recs = records(&lab);
    let skip = recs
        .iter()
        .find(|r| r.action == Action::Skip)
        .expect("the skipped VACUUM is audited");
    assert_eq!(skip.step.as_deref(), Some("vacuum"));
    assert!(skip.rehearsal, "{skip:?}");
    assert!(
        skip.message
            .as_deref()
            .unwrap_or("")
            .contains("skipped in rehearsal"),
        "{skip:?}"
    );
    // Nothing outside the rehearsal's transaction changed.
    assert!(
        !exists(&client, "t_a").await,
        "the rehearsal left its index"
    );
    assert!(!exists(&client, "pgpilot.step_state").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_runs_nothing_before_its_step_and_a_value_nobody_captured_says_which_step_to_run() {
    let lab = Lab::new();
    let client = lab.database("from_step", &[]).await;
    client
        .batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .expect("table t");
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(
        &dir,
        "from.toml",
        r#"
[runbook]
id = "from"
title = "A count, then a table made from it"

[[phase]]
id = "p"

  [[phase.step]]
  id = "count"
  kind = "check"
  sql = "SELECT count(*) FROM t"
  capture = "n"

  [[phase.step]]
  id = "first"
  kind = "change"
  sql = "CREATE TABLE first_made (a int)"

  [[phase.step]]
  id = "use"
  kind = "change"
  sql = "CREATE TABLE counted AS SELECT {{n:number}} AS n"
  rollback = "DROP TABLE IF EXISTS counted"
"#,
    );
    let db = lab.conninfo("from_step");
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db, "--from", "use"]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        format!("{}{}", ran.stdout, ran.stderr).contains("run the step that captures it first"),
        "{ran}"
    );
    assert!(!exists(&client, "counted").await);
    // Earlier steps: not run, not re-checked, not recorded as skipped.
    assert!(
        !exists(&client, "first_made").await,
        "a step before --from ran"
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*)::text FROM pgpilot.step_state WHERE step_id IN ('count', 'first')",
        )
        .await,
        "0"
    );
    assert!(
        !records(&lab).iter().any(|r| r.action == Action::StepStart
            && matches!(r.step.as_deref(), Some("count" | "first"))),
        "a step before --from started"
    );
    // A whole run captures the value and makes the table from it.
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(scalar(&client, "SELECT n::text FROM counted").await, "3");
}
