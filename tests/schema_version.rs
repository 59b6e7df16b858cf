//! pgpilot's own schema has a version: a newer pgpilot upgrades the schema
//! older ones made, in place; a pgpilot refuses a schema newer than it
//! knows, changing nothing; concurrent upgrades do not collide.

mod common;

use common::{Lab, column, connect, scalar};
use pgpilot::engine::schema;

/// The schema exactly as pgpilot created it before versions existed
/// (src/engine/state.rs and src/audit/db.rs at that time), frozen here so
/// that a later change to the code cannot change what "today's schema" means.
const UNVERSIONED_SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS pgpilot;
CREATE TABLE IF NOT EXISTS pgpilot.step_state (
    runbook_id     text NOT NULL,
    step_id        text NOT NULL,
    status         text NOT NULL,
    step_sha256    text NOT NULL,
    runbook_sha256 text NOT NULL,
    operator       text NOT NULL,
    role           text NOT NULL DEFAULT current_user,
    client_host    text NOT NULL,
    captured       text,
    rows           bigint,
    duration_ms    bigint,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (runbook_id, step_id)
);
CREATE TABLE IF NOT EXISTS pgpilot.audit_log (
    session         text        NOT NULL,
    seq             bigint      NOT NULL,
    ts              timestamptz NOT NULL,
    operator        text        NOT NULL,
    role            text,
    client_host     text        NOT NULL,
    target_host     text,
    target_port     integer,
    target_database text,
    runbook         text,
    runbook_sha256  text,
    ticket          text,
    phase           text,
    step            text,
    action          text        NOT NULL,
    sql             text,
    sql_sha256      text,
    outcome         text,
    duration_ms     bigint,
    rows            bigint,
    sqlstate        text,
    message         text,
    attempt         bigint,
    rehearsal       boolean     NOT NULL,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL,
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session, seq)
);
CREATE INDEX IF NOT EXISTS audit_log_runbook_ts ON pgpilot.audit_log (runbook, ts);
-- What an earlier pgpilot left: another runbook's applied step and its record.
INSERT INTO pgpilot.step_state (runbook_id, step_id, status, step_sha256, runbook_sha256, operator, client_host)
    VALUES ('earlier', 'made-x', 'applied', 'h1', 'h2', 'alice', 'laptop');
INSERT INTO pgpilot.audit_log (session, seq, ts, operator, client_host, action, rehearsal, prev_hash, hash)
    VALUES ('s0', 1, now(), 'alice', 'laptop', 'session_start', false, '', 'h');
";

const TWO_STEPS: &str = r#"
[runbook]
id = "versioned"
title = "Two changes"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make-a"
  kind = "change"
  sql = "CREATE TABLE a (x int)"
  rollback = "DROP TABLE a"

  [[phase.step]]
  id = "make-b"
  kind = "change"
  sql = "CREATE TABLE b (x int)"
  rollback = "DROP TABLE b"
"#;

fn runbook(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("versioned.toml");
    std::fs::write(&path, TWO_STEPS).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

async fn version_rows(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT version::text FROM pgpilot.schema_version ORDER BY 1",
    )
    .await
}

/// Everything of pgpilot's in the target, as one text: what "nothing
/// changed" compares.
async fn pgpilot_contents(client: &tokio_postgres::Client) -> String {
    scalar(
        client,
        "SELECT concat_ws(' | ',
            (SELECT string_agg(format('%s/%s=%s@%s', runbook_id, step_id, status, updated_at), ',' ORDER BY runbook_id, step_id) FROM pgpilot.step_state),
            (SELECT count(*)::text FROM pgpilot.audit_log),
            (SELECT string_agg(format('%s %s %s', version, upgraded_at, upgraded_by), ',') FROM pgpilot.schema_version),
            (SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgpilot'),
            (SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE connamespace = 'pgpilot'::regnamespace))",
    )
    .await
}

/// A target holding the schema as pgpilot made it before versions (no
/// version row) is upgraded in place by `run`: the earlier rows stay, the
/// run applies its steps, and the version row says the current version.
/// Deleting the version row again makes it "today's schema" once more, and
/// the next run upgrades it again and skips what is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_schema_is_upgraded_in_place_and_runs() {
    let lab = Lab::new();
    let client = lab.database("upgrade", &[]).await;
    client
        .batch_execute(UNVERSIONED_SCHEMA)
        .await
        .expect("today's schema");
    assert_eq!(schema::found(&client).await.ok(), Some(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(&dir);
    let db = lab.conninfo("upgrade");

    let run = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(version_rows(&client).await, [schema::CURRENT.to_string()]);
    assert_eq!(
        column(
            &client,
            "SELECT runbook_id || '/' || step_id || '=' || status FROM pgpilot.step_state ORDER BY 1"
        )
        .await,
        [
            "earlier/made-x=applied",
            "versioned/make-a=applied",
            "versioned/make-b=applied"
        ]
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pgpilot.audit_log WHERE session = 's0'"
        )
        .await,
        "1"
    );
    // Version 2: only known statuses are written from now on.
    let unknown = client
        .batch_execute(
            "INSERT INTO pgpilot.step_state (runbook_id, step_id, status, step_sha256, runbook_sha256, operator, client_host)
             VALUES ('x', 'y', 'half_done', 'h', 'h', 'o', 'h')",
        )
        .await;
    assert!(unknown.is_err(), "an unknown status was accepted");
    assert_eq!(
        scalar(&client, "SELECT upgraded_by FROM pgpilot.schema_version").await,
        scalar(&client, "SELECT current_user::text").await
    );

    client
        .batch_execute("DELETE FROM pgpilot.schema_version")
        .await
        .expect("delete the version row");
    let again = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(
        again.stdout.matches("already applied").count(),
        2,
        "{again}"
    );
    assert_eq!(version_rows(&client).await, [schema::CURRENT.to_string()]);
    let status = lab.run(&["status", &rb, "--db", &db]);
    assert_eq!(status.code, 0, "{status}");
}

/// A schema stamped with a version this pgpilot does not know is refused by
/// `run`, `rollback` and `status` with the message that says what to do,
/// and nothing of pgpilot's (nor of the runbook's) changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_nothing_changes() {
    let lab = Lab::new();
    let client = lab.database("newer", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(&dir);
    let db = lab.conninfo("newer");
    // A target a newer pgpilot made: today's tables and a version from the future.
    client
        .batch_execute(UNVERSIONED_SCHEMA)
        .await
        .expect("today's schema");
    schema::ensure(&client, false)
        .await
        .expect("the current version");
    client
        .batch_execute("UPDATE pgpilot.schema_version SET version = 999")
        .await
        .expect("a version from the future");
    let before = pgpilot_contents(&client).await;
    let message = format!(
        "pgpilot.step_state is at schema version 999, this pgpilot knows up to {}: upgrade pgpilot",
        schema::CURRENT
    );

    for args in [
        vec!["run", &rb, "--headless", "--db", &db],
        vec!["rollback", &rb, "--headless", "--db", &db],
        vec!["status", &rb, "--db", &db],
        vec!["status", &rb, "--db", &db, "--format", "json"],
    ] {
        let out = lab.run(&args);
        assert_eq!(out.code, 1, "{args:?}: {out}");
        assert!(out.stderr.contains(&message), "{args:?}: {out}");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out}");
    }
    assert_eq!(pgpilot_contents(&client).await, before);
    assert_eq!(
        column(&client, "SELECT to_regclass('public.a')::text").await,
        ["NULL"]
    );
}

/// Several pgpilots upgrading the same target at once (from nothing, and
/// from today's schema) all succeed, one after the other: one version row,
/// the current version, every table once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upgrades_do_not_collide() {
    let lab = Lab::new();
    for (round, start) in [("empty", ""), ("today", UNVERSIONED_SCHEMA)]
        .into_iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let name = format!("concurrent{round}");
        let admin = lab.database(&name, &[]).await;
        admin
            .batch_execute(start.1)
            .await
            .expect("the starting schema");
        let conninfo = lab.conninfo(&name);
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect(&conninfo).await);
        }
        let upgrades =
            futures_util::future::join_all(clients.iter().map(|c| schema::ensure(c, false))).await;
        for (i, up) in upgrades.iter().enumerate() {
            assert!(
                up.is_ok(),
                "round {round} ({}): upgrade {i}: {up:?}",
                start.0
            );
        }
        assert_eq!(
            version_rows(&admin).await,
            [schema::CURRENT.to_string()],
            "round {round} ({})",
            start.0
        );
        assert_eq!(schema::found(&admin).await.ok(), Some(schema::CURRENT));
    }
}
