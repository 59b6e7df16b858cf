//! Plain SQL migrations and migration folders linted by `pgpilot check`:
//! each tool's layout in its order, facts carried from one migration to the
//! next, a CONCURRENTLY statement inside the tool's transaction, and syntax
//! errors placed in the .sql file.

mod common;

use common::migrations::{FIXTURES, database, headless, pgpilot};

/// SET NOT NULL alone is a finding; after the migrations that add and
/// validate `CHECK (email IS NOT NULL)` it is safe, in every layout.
#[test]
fn each_layout_carries_a_validated_check_to_a_later_set_not_null() {
    for (layout, not_null_file) in [
        ("flyway", "V4__email_not_null.sql"),
        ("golang-migrate", "4_email_not_null.up.sql"),
        ("dbmate", "20240101000003_email_not_null.sql"),
        ("plain", "004_email_not_null.sql"),
    ] {
        let dir = format!("{FIXTURES}/{layout}");
        let (code, out, err) = pgpilot(&["check", &dir]);
        assert_eq!(code, 0, "{layout}: {out}{err}");
        assert!(out.contains(": ok: 1 phases"), "{layout}: {out}");
        assert!(!err.contains("set-not-null"), "{layout}: {err}");
        // The same file alone has no earlier CHECK to lean on.
        let alone = format!("{dir}/{not_null_file}");
        let (code, _, err) = pgpilot(&["check", &alone]);
        assert_eq!(code, 0, "{layout}: {err}");
        assert!(
            err.contains(&format!("{not_null_file}:")) && err.contains("set-not-null"),
            "{layout}: {err}"
        );
    }
}

/// A table created in migration 1 is new in migration 1 only: an index on
/// it there is harmless, in migration 5 it blocks writes.
#[test]
fn a_table_is_new_only_in_the_migration_that_creates_it() {
    let (code, _, err) = pgpilot(&["check", &format!("{FIXTURES}/plain")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("plain/005_email_index.sql:1:1: warning: index-not-concurrent"),
        "{err}"
    );
    assert!(!err.contains("001_create_users.sql"), "{err}");
}

#[test]
fn concurrently_inside_the_tools_transaction_is_a_finding_not_a_parse_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V1__idx.sql"),
        "CREATE TABLE t (a int);\n\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n",
    )
    .unwrap();
    let path = dir.path().join("V1__idx.sql");
    let (code, out, err) = pgpilot(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("V1__idx.sql:3:1: warning: concurrently-in-transaction")
            && err.contains("it fails at run time")
            && err.contains("executeInTransaction=false"),
        "{err}"
    );
    // Opting out in the script configuration, as Flyway reads it, is quiet.
    std::fs::write(
        dir.path().join("V1__idx.sql.conf"),
        "executeInTransaction=false\n",
    )
    .unwrap();
    let (code, _, err) = pgpilot(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("concurrently-in-transaction"), "{err}");
}

#[test]
fn a_syntax_error_in_a_plain_file_is_placed_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("002_broken.sql");
    std::fs::write(
        &path,
        "-- migrate:up\nALTER TABLE t\n  ADD COLUMN c int DEFALT 0;\n",
    )
    .unwrap();
    let (code, _, err) = pgpilot(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("002_broken.sql:3:20: error: SQL syntax error") && err.contains("\"DEFALT\""),
        "{err}"
    );
    assert!(!err.contains("TOML"), "{err}");
}

#[test]
fn a_folder_with_no_migrations_says_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.sql"), "SELECT 1;\n").unwrap();
    let (code, _, err) = pgpilot(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no migrations found"), "{err}");
}

// ---- run, rollback and the tools' histories, against a real cluster ----

use common::{column, confirms_for, scalar};

/// The team's Flyway applied V1 and V2; `run DIR` starts at V3, writes each
/// migration's history row in its step's transaction, and `rollback DIR`
/// walks the undo files back, Flyway's rows with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flyway_run_resumes_from_its_history_and_rolls_back_through_undo_files() {
    let (lab, client, db) = database("flyway_resume").await;
    let dir = format!("{FIXTURES}/flyway");
    client
        .batch_execute(&format!(
            "{}\n{}\n
             CREATE TABLE flyway_schema_history (
                 installed_rank integer NOT NULL PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
                 type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum integer,
                 installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
                 execution_time integer NOT NULL, success boolean NOT NULL);
             INSERT INTO flyway_schema_history VALUES
                 (1, '1', 'create users', 'SQL', 'V1__create_users.sql', 0, 'flyway', now(), 5, true),
                 (2, '2', 'email check', 'SQL', 'V2__email_check.sql', 0, 'flyway', now(), 5, true);
             INSERT INTO users VALUES (1, 'a@example.com');",
            std::fs::read_to_string(format!("{}/{dir}/V1__create_users.sql", common::ROOT)).unwrap(),
            std::fs::read_to_string(format!("{}/{dir}/V2__email_check.sql", common::ROOT)).unwrap(),
        ))
        .await
        .unwrap();
    // status reads the tool's history too.
    let status = lab.run(&["status", &dir, "--db", &db, "--format", "json"]);
    assert_eq!(status.code, 0, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let states: Vec<String> = status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} {}",
                s["id"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
                s["operator"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        states[..3],
        [
            "V1__create_users applied flyway",
            "V2__email_check applied flyway",
            "V3__validate_email pending -"
        ]
    );
    let ran = lab.run(&headless(&["run", &dir], &db, &[]));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("applied by flyway before: V1__create_users, V2__email_check"),
        "{ran}"
    );
    assert_eq!(
        column(&client, "SELECT version || ' ' || script || ' ' || success FROM flyway_schema_history ORDER BY installed_rank").await,
        [
            "1 V1__create_users.sql true",
            "2 V2__email_check.sql true",
            "3 V3__validate_email.sql true",
            "4 V4__email_not_null.sql true",
            "5 V5__name_index.sql true",
        ]
    );
    assert_eq!(
        scalar(&client, "SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'").await,
        "true"
    );
    // A second run has nothing to do: the history and pgpilot agree.
    let again = lab.run(&headless(&["run", &dir], &db, &[]));
    assert_eq!(again.code, 0, "{again}");

    let confirms = confirms_for(&dir, true);
    let back = lab.run(&headless(&["rollback", &dir], &db, &confirms));
    assert_eq!(back.code, 0, "{back}");
    assert_eq!(
        scalar(&client, "SELECT (to_regclass('users') IS NULL)::text").await,
        "true"
    );
    assert_eq!(
        scalar(&client, "SELECT count(*)::text FROM flyway_schema_history").await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dirty_golang_migrate_state_is_refused_with_what_to_do() {
    let (lab, client, db) = database("golang_dirty").await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, email text);
             CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
             INSERT INTO schema_migrations VALUES (2, true);",
        )
        .await
        .unwrap();
    let dir = format!("{FIXTURES}/golang-migrate");
    let ran = lab.run(&headless(&["run", &dir], &db, &[]));
    assert_eq!(ran.code, 3, "{ran}");
    assert!(
        ran.stderr.contains("golang-migrate left version 2 dirty")
            && ran.stderr.contains("migrate force 2"),
        "{ran}"
    );
    // Nothing ran: the constraint of migration 2 is still to be made by hand.
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*)::text FROM pg_constraint WHERE conname = 'users_email_nn'"
        )
        .await,
        "0"
    );

    // Forced clean at 2 (as `migrate force 2` does), the run applies 3 and 4.
    client
        .batch_execute(
            "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;
             UPDATE schema_migrations SET dirty = false;",
        )
        .await
        .unwrap();
    let ran = lab.run(&headless(&["run", &dir], &db, &[]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(
        column(
            &client,
            "SELECT version || ' ' || dirty FROM schema_migrations"
        )
        .await,
        ["4 false"]
    );
    let confirms = confirms_for(&dir, true);
    let back = lab.run(&headless(
        &["rollback", &dir, "--to", "3_validate_email"],
        &db,
        &confirms,
    ));
    assert_eq!(back.code, 0, "{back}");
    assert_eq!(
        column(
            &client,
            "SELECT version || ' ' || dirty FROM schema_migrations"
        )
        .await,
        ["3 false"]
    );
}

/// dbmate: the up sections run, `schema_migrations` gets each version, and
/// the down sections roll them back, the CONCURRENTLY one in autocommit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbmate_runs_up_sections_and_rolls_back_through_down_sections() {
    let (lab, client, db) = database("dbmate_run").await;
    let dir = format!("{FIXTURES}/dbmate");
    let ran = lab.run(&headless(&["run", &dir], &db, &[]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(
        column(
            &client,
            "SELECT version FROM schema_migrations ORDER BY version"
        )
        .await,
        [
            "20240101000001",
            "20240101000002",
            "20240101000003",
            "20240101000004"
        ]
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'users_email_idx'::regclass"
        )
        .await,
        "true"
    );
    let status = lab.run(&["status", &dir, "--db", &db, "--format", "json"]);
    assert_eq!(status.code, 0, "{status}");
    let confirms = confirms_for(&dir, true);
    let back = lab.run(&headless(&["rollback", &dir], &db, &confirms));
    assert_eq!(back.code, 0, "{back}");
    assert_eq!(
        scalar(&client, "SELECT count(*)::text FROM schema_migrations").await,
        "0"
    );
    assert_eq!(
        scalar(&client, "SELECT (to_regclass('users') IS NULL)::text").await,
        "true"
    );
}

/// A migration that fails leaves no row in the tool's history: the row is
/// written in the step's own transaction, which is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_leaves_no_history_row() {
    let (lab, client, db) = database("flyway_fail").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (x int);\n").unwrap();
    std::fs::write(
        dir.path().join("V2__b.sql"),
        "CREATE TABLE b (x int);\nINSERT INTO a VALUES ('not a number');\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let ran = lab.run(&headless(&["run", d], &db, &[]));
    assert_eq!(ran.code, 1, "{ran}");
    assert_eq!(
        column(
            &client,
            "SELECT version FROM flyway_schema_history ORDER BY installed_rank"
        )
        .await,
        ["1"]
    );
    assert_eq!(
        scalar(&client, "SELECT (to_regclass('b') IS NULL)::text").await,
        "true"
    );
}
