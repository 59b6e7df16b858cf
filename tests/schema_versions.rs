//! `[runbook] version` and `requires_version` against a real server: the
//! version recorded in pgpilot.schema_versions when every change step is
//! applied, drift refused before the first change, a runbook rolled back
//! whole making the version before it current again, `status` showing it.

mod common;

use common::{Lab, Ran, confirms_for, scalar};

fn runbook(dir: &std::path::Path, id: &str, header: &str, table: &str) -> String {
    let text = format!(
        r#"
[runbook]
id = "{id}"
title = "Version {id}"
{header}

[[phase]]
id = "p"

  [[phase.step]]
  id = "create"
  kind = "change"
  sql = "CREATE TABLE {table} (id int)"
  rollback = "DROP TABLE {table}"
"#
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn run(lab: &Lab, rb: &str, db: &str) -> Ran {
    lab.run(&["run", rb, "--headless", "--db", db])
}

/// The database's current version, as `status --format json` says it.
fn current(lab: &Lab, rb: &str, db: &str) -> serde_json::Value {
    let ran = lab.run(&["status", rb, "--db", db, "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran}");
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).expect("status json");
    doc["schema_version"]["version"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_recorded_drift_refused_and_a_full_rollback_restores_the_previous() {
    let lab = Lab::new();
    let client = lab.database("sv_line", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = lab.conninfo("sv_line");
    let base = runbook(dir.path(), "base", "version = \"2.3.0\"", "t_base");
    let next = runbook(
        dir.path(),
        "next",
        "version = \"2.4.0\"\nrequires_version = \"2.3.0\"",
        "t_next",
    );
    let stale = runbook(
        dir.path(),
        "stale",
        "version = \"2.3.1\"\nrequires_version = \"2.3.0\"",
        "t_stale",
    );

    // Nothing recorded yet: a runbook that requires a version is refused.
    let ran = run(&lab, &next, &db);
    assert_eq!(ran.code, 3, "{ran}");
    assert!(
        format!("{ran}")
            .contains("database has no recorded schema version, this runbook requires 2.3.0"),
        "{ran}"
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_tables WHERE tablename = 't_next'"
        )
        .await,
        "0"
    );

    let ran = run(&lab, &base, &db);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(current(&lab, &base, &db), "2.3.0");
    let ran = run(&lab, &next, &db);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(current(&lab, &next, &db), "2.4.0");
    let text = lab.run(&["status", &next, "--db", &db]);
    assert!(
        text.stdout.contains("schema version 2.4.0 (runbook next"),
        "{text}"
    );
    // Run again when done: nothing to do, no second row, not drift.
    let ran = run(&lab, &next, &db);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM pgpilot.schema_versions").await,
        "2"
    );

    // Drift: the database moved on to 2.4.0.
    let ran = run(&lab, &stale, &db);
    assert_eq!(ran.code, 3, "{ran}");
    assert!(
        format!("{ran}").contains("database is at 2.4.0, this runbook requires 2.3.0"),
        "{ran}"
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_tables WHERE tablename = 't_stale'"
        )
        .await,
        "0"
    );

    // `next` rolled back whole: 2.3.0 is current again, and `stale` may run.
    let confirms = confirms_for(&next, true);
    let mut args = vec!["rollback", next.as_str(), "--headless", "--db", db.as_str()];
    args.extend(confirms.iter().map(String::as_str));
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(current(&lab, &next, &db), "2.3.0");
    assert_eq!(
        scalar(
            &client,
            "SELECT rollback_version || ' ' || (rolled_back_at IS NOT NULL) FROM pgpilot.schema_versions WHERE runbook_id = 'next'"
        )
        .await,
        "2.3.0 true"
    );
    let ran = run(&lab, &stale, &db);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(current(&lab, &stale, &db), "2.3.1");
}

#[test]
fn a_version_that_is_not_semver_is_an_error_at_its_place() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "bad", "version = \"2.4\"", "t");
    let ran = lab.run(&["check", &rb]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stderr
            .contains("bad.toml:5:11: error: version \"2.4\" is not a semantic version"),
        "{ran}"
    );
}
