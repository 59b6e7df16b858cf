//! Promises of docs/safety-model.md, "Guards before the first change" and
//! "Rollback", that no other test held to: each guard refuses (exit 3,
//! audited as a failed `guard`) and a refused session writes nothing to the
//! target, not even pgpilot's schema; an edited applied step refuses `run`
//! and `rollback` while an edited rollback does not; a rollback whose range
//! reaches an irreversible step undoes nothing.

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

/// A runbook for environments staging/production and the database `db`,
/// whose one step creates table `made`.
fn targeted(db: &str) -> String {
    format!(
        r#"
[runbook]
id = "targeted"
title = "One step for staging or production on {db}"

[target]
environments = ["staging", "production"]
database = "{db}"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make"
  kind = "change"
  sql = "CREATE TABLE made (a int)"
  rollback = "DROP TABLE IF EXISTS made"
"#
    )
}

fn run(lab: &Lab, rb: &str, db: &str, extra: &[&str]) -> common::Ran {
    let conninfo = lab.conninfo(db);
    let mut args = vec!["run", rb, "--headless", "--db", &conninfo];
    args.extend_from_slice(extra);
    lab.run(&args)
}

/// Whether the target has anything of pgpilot's or the step's.
async fn untouched(client: &tokio_postgres::Client) -> bool {
    scalar(
        client,
        "SELECT (to_regnamespace('pgpilot') IS NULL AND to_regclass('made') IS NULL)::text",
    )
    .await
        == "true"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_guard_refuses_with_exit_3_and_writes_nothing_to_the_target() {
    let lab = Lab::new();
    let client = lab.database("guarded", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "targeted.toml", &targeted(&lab.db_name("guarded")));
    let other = runbooks::write(&dir, "other.toml", &targeted("some_other_database"));
    let cases: [(&str, &str, &[&str], &str); 3] = [
        (
            "no --env",
            &rb,
            &[],
            "this runbook names its environments (staging, production); say which with --env",
        ),
        (
            "--env qa",
            &rb,
            &["--env", "qa"],
            "--env qa is not one of this runbook's environments",
        ),
        (
            "another database",
            &other,
            &["--env", "staging"],
            "but the runbook is for some_other_database",
        ),
    ];
    for (what, runbook, extra, says) in cases {
        let before = records(&lab).len();
        let ran = run(&lab, runbook, "guarded", extra);
        assert_eq!(ran.code, 3, "{what}: {ran}");
        assert!(ran.stdout.contains(says), "{what}: {ran}");
        // Refused before the first change, and nothing written to the
        // database it refused: no step, not even pgpilot's own schema.
        assert!(untouched(&client).await, "{what}: the target was written");
        let recs = records(&lab);
        let failed: Vec<_> = recs[before..]
            .iter()
            .filter(|r| r.action == Action::Guard && r.outcome.as_deref() == Some("fail"))
            .collect();
        assert_eq!(failed.len(), 1, "{what}: {failed:?}");
        assert!(
            failed[0].message.as_deref().unwrap_or("").contains(says),
            "{what}: {:?}",
            failed[0]
        );
        assert!(
            !recs[before..].iter().any(|r| r.action == Action::StepStart),
            "{what}: a step started"
        );
    }
    // The same runbook with the right environment and database runs.
    let ran = run(&lab, &rb, "guarded", &["--env", "staging"]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(
        scalar(&client, "SELECT (to_regclass('made') IS NOT NULL)::text").await,
        "true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_refused_when_the_runbook_requires_the_primary() {
    let lab = Lab::new();
    let Some(standby) = common::standby::start(&lab, "guard_standby") else {
        return;
    };
    common::standby::streams(&lab, "guard_standby").await;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(
        &dir,
        "primary.toml",
        r#"
[runbook]
id = "primary-only"
title = "A step for the primary only"

[target]
require_primary = true

[[phase]]
id = "p"

  [[phase.step]]
  id = "look"
  kind = "check"
  sql = "SELECT 1"
"#,
    );
    let ran = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &standby.conninfo("postgres"),
    ]);
    assert_eq!(ran.code, 3, "{ran}");
    assert!(
        ran.stdout
            .contains("the target is a replica (in recovery); connect to the primary"),
        "{ran}"
    );
    let recs = records(&lab);
    assert!(
        recs.iter().any(|r| r.action == Action::Guard
            && r.outcome.as_deref() == Some("fail")
            && r.message.as_deref().unwrap_or("").starts_with("primary:")),
        "no failed primary guard in the audit"
    );
    assert!(!recs.iter().any(|r| r.action == Action::StepStart));
}

/// Two changes on table t: `keep` (irreversible unless `reversible`) then
/// `add`, whose rollback is `add_rollback`. Dropping an index destroys no
/// data, so no rollback here asks a phrase.
fn two_changes(first_sql: &str, reversible: bool, add_rollback: &str) -> String {
    let first_end = if reversible {
        "rollback = \"DROP INDEX IF EXISTS kept_i\"".to_string()
    } else {
        "irreversible = \"the test says so\"".to_string()
    };
    format!(
        r#"
[runbook]
id = "two-changes"
title = "Two changes"

[[phase]]
id = "p"

  [[phase.step]]
  id = "keep"
  kind = "change"
  sql = "{first_sql}"
  {first_end}

  [[phase.step]]
  id = "add"
  kind = "change"
  sql = "CREATE INDEX added_i ON t (a)"
  rollback = "{add_rollback}"
"#
    )
}

async fn applied(client: &tokio_postgres::Client) -> String {
    scalar(
        client,
        "SELECT string_agg(step_id || '=' || status, ',' ORDER BY step_id) FROM pgpilot.step_state",
    )
    .await
}

async fn with_t(lab: &Lab, db: &str) -> tokio_postgres::Client {
    let client = lab.database(db, &[]).await;
    client
        .batch_execute("CREATE TABLE t (a int)")
        .await
        .expect("table t");
    client
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
async fn an_edited_applied_step_refuses_run_and_rollback_an_edited_rollback_does_not() {
    let lab = Lab::new();
    let client = with_t(&lab, "edited").await;
    let dir = tempfile::tempdir().unwrap();
    let keep = "CREATE INDEX kept_i ON t (a)";
    let rb = runbooks::write(
        &dir,
        "two.toml",
        &two_changes(keep, true, "DROP INDEX added_i"),
    );
    let ran = lab.run_headless(&rb, "edited");
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(applied(&client).await, "add=applied,keep=applied");

    // What an applied step ran is edited: both commands refuse, nothing changes.
    runbooks::write(
        &dir,
        "two.toml",
        &two_changes(
            "CREATE INDEX kept_i ON t (a DESC)",
            true,
            "DROP INDEX added_i",
        ),
    );
    let conninfo = lab.conninfo("edited");
    for command in ["run", "rollback"] {
        let ran = lab.run(&[command, &rb, "--headless", "--db", &conninfo]);
        assert_eq!(ran.code, 3, "{command}: {ran}");
        assert!(
            ran.stdout
                .contains("applied step(s) keep changed since they were applied"),
            "{command}: {ran}"
        );
        assert_eq!(
            applied(&client).await,
            "add=applied,keep=applied",
            "{command}"
        );
        assert!(exists(&client, "added_i").await, "{command}");
    }

    // Only a rollback is fixed: the responder's edit is accepted.
    runbooks::write(
        &dir,
        "two.toml",
        &two_changes(keep, true, "DROP INDEX IF EXISTS added_i"),
    );
    let ran = lab.run(&["rollback", &rb, "--headless", "--db", &conninfo]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(applied(&client).await, "add=rolled_back,keep=rolled_back");
    assert!(!exists(&client, "added_i").await && !exists(&client, "kept_i").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_reaching_an_irreversible_step_undoes_nothing() {
    let lab = Lab::new();
    let client = with_t(&lab, "irreversible").await;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(
        &dir,
        "two.toml",
        &two_changes("CREATE INDEX kept_i ON t (a)", false, "DROP INDEX added_i"),
    );
    let ran = lab.run_headless(&rb, "irreversible");
    assert_eq!(ran.code, 0, "{ran}");
    let conninfo = lab.conninfo("irreversible");
    let ran = lab.run(&["rollback", &rb, "--headless", "--db", &conninfo]);
    assert_eq!(ran.code, 3, "{ran}");
    assert!(
        ran.stderr.contains(
            "step keep cannot be rolled back: irreversible: the test says so; nothing was rolled back"
        ),
        "{ran}"
    );
    // The range is checked first: `add`, newer and reversible, is not undone.
    assert_eq!(applied(&client).await, "add=applied,keep=applied");
    assert!(exists(&client, "added_i").await);
    // --to keep leaves keep applied, so the rollback of `add` alone runs.
    let ran = lab.run(&[
        "rollback",
        &rb,
        "--headless",
        "--db",
        &conninfo,
        "--to",
        "keep",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(applied(&client).await, "add=rolled_back,keep=applied");
    assert!(!exists(&client, "added_i").await && exists(&client, "kept_i").await);
}
