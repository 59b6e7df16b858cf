//! A captured value comes from a row anyone may have written: it must reach
//! the server as one literal (or identifier, or number), never as SQL, in a
//! real run and in a rehearsal alike.

mod common;

use common::{Lab, column, scalar};

const HOSTILE: &str = "shipped'); DROP TABLE victims; ALTER ROLE mallory SUPERUSER; --";
const ESCAPE: &str = "x'); COMMIT; DROP TABLE victims3; --";

/// A database where a low-privileged user has written `status` into orders.
async fn target(lab: &Lab, name: &str, status: &str) -> tokio_postgres::Client {
    let client = lab.database(name, &[]).await;
    client
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mallory') THEN
                 CREATE ROLE mallory NOLOGIN;
               END IF;
             END $$;
             CREATE TABLE victims (id int);
             CREATE TABLE victims3 (id int);
             INSERT INTO victims VALUES (1);
             CREATE TABLE orders (id int PRIMARY KEY, status text);
             CREATE TABLE notes (note text);
             CREATE TABLE old_data (id int);",
        )
        .await
        .expect("schema");
    client
        .execute("INSERT INTO orders VALUES (1, $1)", &[&status])
        .await
        .expect("hostile row");
    client
}

fn runbook(dir: &std::path::Path, name: &str, note_sql: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"[runbook]
id = "{name}"
title = "Hostile capture"

[[phase]]
id = "p"

  [[phase.step]]
  id = "status"
  kind = "check"
  sql = "SELECT status FROM orders ORDER BY id LIMIT 1"
  capture = "first_status"

  [[phase.step]]
  id = "note"
  kind = "change"
  sql = "{note_sql}"
  rollback = "DELETE FROM notes WHERE note = {{{{first_status}}}}"
"#
        ),
    )
    .expect("write runbook");
    path.display().to_string()
}

async fn assert_untouched(client: &tokio_postgres::Client) {
    assert_eq!(
        column(client, "SELECT to_regclass('victims')::text").await,
        ["victims"],
        "the table survived"
    );
    assert_eq!(
        scalar(
            client,
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"
        )
        .await,
        "f",
        "mallory is no superuser"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_value_is_one_literal_in_either_spelling() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    for (i, sql) in [
        // The spelling older docs taught, and the one they teach now.
        "INSERT INTO notes (note) VALUES ('{{first_status}}')",
        "INSERT INTO notes (note) VALUES ({{first_status}})",
    ]
    .into_iter()
    .enumerate()
    {
        let db = format!("hostile{i}");
        let client = target(&lab, &db, HOSTILE).await;
        let rb = runbook(dir.path(), &format!("rb{i}.toml"), sql);
        let plan = lab.run(&["plan", &rb, "--format", "json"]);
        assert_eq!(plan.code, 0, "{plan}");
        let conninfo = lab.conninfo(&db);
        let ran = lab.run(&[
            "run",
            &rb,
            "--headless",
            "--db",
            &conninfo,
            "--env",
            "staging",
        ]);
        assert_eq!(ran.code, 0, "{sql}\n{ran}");
        assert_untouched(&client).await;
        assert_eq!(
            column(&client, "SELECT note FROM notes").await,
            [HOSTILE],
            "the value arrived as data, whole"
        );
        // The rollback's DELETE is destructive: its phrase is asked, and the
        // value in it is one literal too.
        let rolled = lab.run(&[
            "rollback",
            &rb,
            "--headless",
            "--db",
            &conninfo,
            "--confirm",
            "note=rollback delete from notes",
        ]);
        assert_eq!(rolled.code, 0, "{rolled}");
        assert_untouched(&client).await;
        assert_eq!(scalar(&client, "SELECT count(*) FROM notes").await, "0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_cannot_be_escaped_through_a_value() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let client = target(&lab, "escape", ESCAPE).await;
    let rb = runbook(
        dir.path(),
        "escape.toml",
        "INSERT INTO notes (note) VALUES ('{{first_status}}')",
    );
    let conninfo = lab.conninfo("escape");
    let ran = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &conninfo,
        "--env",
        "staging",
        "--rehearse",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.contains("rehearsal finished"), "{ran}");
    assert_eq!(
        column(&client, "SELECT to_regclass('victims3')::text").await,
        ["victims3"]
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM notes").await, "0");
    assert_eq!(
        column(&client, "SELECT to_regclass('pgpilot.step_state')::text").await,
        ["NULL"],
        "no state row (not even the table) outlives the rehearsal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identifier_from_a_capture_makes_the_phrase_known_only_at_run_time() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let client = target(&lab, "idents", "x").await;
    let path = dir.path().join("drop.toml");
    std::fs::write(
        &path,
        r#"[runbook]
id = "drop-captured"
title = "Drop a table named by a capture"

[[phase]]
id = "p"

  [[phase.step]]
  id = "which"
  kind = "check"
  sql = "SELECT 'old_data'"
  capture = "old_table"

  [[phase.step]]
  id = "drop"
  kind = "change"
  sql = "DROP TABLE {{old_table:ident}}"
  irreversible = "the table is gone for good"
"#,
    )
    .unwrap();
    let rb = path.display().to_string();
    let plan = lab.run(&["plan", &rb, "--format", "json"]);
    assert_eq!(plan.code, 0, "{plan}");
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let drop = &doc["steps"][1];
    assert_eq!(drop["confirm"], "drop table {{old_table}}", "{drop}");
    assert_eq!(drop["confirm_depends_on"], serde_json::json!(["old_table"]));
    let text = lab.run(&["plan", &rb]);
    assert!(
        text.stdout.contains("the run shows the final phrase"),
        "{text}"
    );
    let conninfo = lab.conninfo("idents");
    // The phrase of the plan is not the phrase: the run asks for the real name.
    let wrong = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &conninfo,
        "--confirm",
        "drop=drop table {{old_table}}",
    ]);
    assert_eq!(wrong.code, 3, "{wrong}");
    assert!(
        wrong.stderr.contains("drop table old_data"),
        "the final phrase is shown: {wrong}"
    );
    assert_eq!(
        column(&client, "SELECT to_regclass('old_data')::text").await,
        ["old_data"]
    );
    let right = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &conninfo,
        "--confirm",
        "drop=drop table old_data",
    ]);
    assert_eq!(right.code, 0, "{right}");
    assert_eq!(
        column(&client, "SELECT to_regclass('old_data')::text").await,
        ["NULL"]
    );
    assert_eq!(
        column(&client, "SELECT to_regclass('victims')::text").await,
        ["victims"]
    );
}
