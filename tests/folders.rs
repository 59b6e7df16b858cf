//! Plain SQL migrations and migration folders linted by `pgpilot check`:
//! each tool's layout in its order, facts carried from one migration to the
//! next, a CONCURRENTLY statement inside the tool's transaction, and syntax
//! errors placed in the .sql file.

mod common;

use std::process::Command;

const FIXTURES: &str = "tests/fixtures/migrations";

fn pgpilot(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
