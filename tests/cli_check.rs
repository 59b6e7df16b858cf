//! `pgpilot check` and `plan` as a user runs them: exit codes, and errors that
//! name the file, line and column with what to do.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

/// Each malformed runbook: where the error must point, and what it must say.
const INVALID: &[(&str, &str, &str)] = &[
    (
        "broken-toml.toml",
        "broken-toml.toml:1:9",
        "invalid TOML: unclosed table",
    ),
    (
        "unknown-key.toml",
        "unknown-key.toml:11:1",
        "unknown key `tittle` in [[phase.step]]",
    ),
    (
        "wrong-type.toml",
        "wrong-type.toml:6:16",
        "lock_retries: wrong type: found string \"five\", expected an integer",
    ),
    (
        "bad-duration.toml",
        "bad-duration.toml:6:16",
        "invalid duration \"5 minutes\"",
    ),
    (
        "duplicate-step-id.toml",
        "duplicate-step-id.toml:14:6",
        "step id \"s\" is used twice",
    ),
    (
        "sql-syntax-error.toml",
        "sql-syntax-error.toml:13:7",
        "syntax error at or near \"TABEL\"",
    ),
    (
        "sql-syntax-error-in-file.toml",
        "sql/syntax-error.sql:4:3",
        "syntax error at or near \"DEFALT\"",
    ),
    (
        "mixed-concurrently.toml",
        "mixed-concurrently.toml:12:1",
        "must be the only statement of its step",
    ),
    (
        "undefined-variable.toml",
        "undefined-variable.toml:17:26",
        "variable {{rows_befor}} is not captured by any earlier step",
    ),
    (
        "variable-inside-literal.toml",
        "variable-inside-literal.toml:17:56",
        "{{first_status}} stands inside a longer string literal",
    ),
    (
        "understated-risk.toml",
        "understated-risk.toml:4:8",
        "declared risk \"low\" is lower than the computed risk \"high\"",
    ),
    (
        "missing-file.toml",
        "missing-file.toml:11:8",
        "cannot read SQL file",
    ),
    ("empty.toml", "empty.toml:1:1", "the runbook is empty"),
    (
        "empty-sql-file.toml",
        "sql/empty.sql:1:1",
        "the SQL file is empty",
    ),
    ("binary.toml", "binary.toml:1:1", "binary file"),
    ("not-utf8.toml", "not-utf8.toml:3:13", "not valid UTF-8"),
    (
        "destructive-without-rollback.toml",
        "destructive-without-rollback.toml:11:7",
        "is destructive (drop column users.legacy_id) but has no rollback",
    ),
    (
        "pause-without-instructions.toml",
        "pause-without-instructions.toml:8:1",
        "a pause step needs instructions",
    ),
    (
        "sql-and-file.toml",
        "sql-and-file.toml:12:8",
        "either sql or file, not both",
    ),
    (
        "bad-kind.toml",
        "bad-kind.toml:10:8",
        "kind \"chnage\" is not known",
    ),
    (
        "transaction-control.toml",
        "transaction-control.toml:12:1",
        "transaction-control",
    ),
    (
        "missing-runbook-table.toml",
        "missing-runbook-table.toml:1:1",
        "missing the [runbook] table",
    ),
    (
        "destructive-check.toml",
        "destructive-check.toml:11:8",
        "a check step must not change data",
    ),
    (
        "lock-timeout-zero.toml",
        "lock-timeout-zero.toml:12:16",
        "lock_timeout must be more than 0",
    ),
    (
        "expect-two-keys.toml",
        "expect-two-keys.toml:12:10",
        "exactly one of rows, scalar or empty",
    ),
    (
        "no-phases.toml",
        "no-phases.toml:4:1",
        "the runbook has no phases",
    ),
    ("bad-id.toml", "bad-id.toml:9:6", "is not a valid id"),
    (
        "transaction-true-concurrently.toml",
        "transaction-true-concurrently.toml:12:15",
        "cannot run inside a transaction block",
    ),
    (
        "rollback-commit.toml",
        "rollback-commit.toml:12:42",
        "transaction-control in the rollback",
    ),
    (
        "backfill-without-bounds.toml",
        "backfill-without-bounds.toml:14:7",
        "backfill step fill's sql does not use both $1 and $2",
    ),
    (
        "backfill-table-not-in-sql.toml",
        "backfill-table-not-in-sql.toml:11:9",
        "backfill step fill: table \"readings\" is not among the relations its sql touches",
    ),
    (
        "backfill-without-key.toml",
        "backfill-without-key.toml:8:1",
        "the backfill step has no key",
    ),
    (
        "backfill-batch-size-zero.toml",
        "backfill-batch-size-zero.toml:13:14",
        "batch_size must be at least 1, not 0",
    ),
];

#[test]
fn every_invalid_fixture_fails_with_its_place_and_message() {
    let dir = Path::new("tests/fixtures/invalid");
    let on_disk = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .count();
    assert_eq!(
        on_disk,
        INVALID.len(),
        "every invalid fixture has an expectation"
    );
    for (file, place, message) in INVALID {
        let path = dir.join(file);
        let (code, _, stderr) = pgpilot(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{file}: exit code\n{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(": error: "))
            .unwrap_or_else(|| panic!("{file}: no error line in\n{stderr}"));
        assert!(
            line.contains(&format!("{place}: error: ")),
            "{file}: expected place {place} in\n{stderr}"
        );
        assert!(
            stderr.contains(message),
            "{file}: expected {message:?} in\n{stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{file}: {stderr}"
        );
    }
}

#[test]
fn misspelled_key_suggests_the_right_one() {
    let (_, _, stderr) = pgpilot(&["check", "tests/fixtures/invalid/unknown-key.toml"]);
    assert!(stderr.contains("help: did you mean `title`?"), "{stderr}");
    let (_, _, stderr) = pgpilot(&["check", "tests/fixtures/invalid/undefined-variable.toml"]);
    assert!(stderr.contains("did you mean {{rows_before}}?"), "{stderr}");
}

#[test]
fn check_reports_every_file_and_fails_if_any_fails() {
    let (code, stdout, stderr) = pgpilot(&[
        "check",
        "tests/fixtures/valid/minimal.toml",
        "tests/fixtures/invalid/bad-kind.toml",
    ]);
    assert_eq!(code, 1);
    assert!(stdout.contains("minimal.toml: ok"), "{stdout}");
    assert!(stderr.contains("bad-kind.toml:10:8"), "{stderr}");
}

#[test]
fn every_sample_runbook_and_valid_fixture_passes_check() {
    let mut paths = Vec::new();
    for dir in ["runbooks", "tests/fixtures/valid"] {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).expect(dir) {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "toml") {
                paths.push(format!(
                    "{dir}/{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        paths.iter().filter(|p| p.starts_with("runbooks/")).count() >= 8,
        "{paths:?}"
    );
    let args: Vec<&str> = std::iter::once("check")
        .chain(paths.iter().map(String::as_str))
        .collect();
    let (code, stdout, stderr) = pgpilot(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok: ")).count(),
        paths.len(),
        "{stdout}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = pgpilot(&["check"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = pgpilot(&["plan", "x.toml", "--format", "yaml"]);
    assert_eq!(code, 2);
    let (code, _, _) = pgpilot(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn text_plan_explains_locks_and_phrases_for_a_trainee() {
    let (code, stdout, stderr) = pgpilot(&["plan", "tests/fixtures/valid/drop-column.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("lock ACCESS EXCLUSIVE on users: blocks everything"),
        "{stdout}"
    );
    assert!(
        stdout.contains("type to confirm: drop column users.legacy_id"),
        "{stdout}"
    );
    assert!(stdout.contains("risk HIGH"), "{stdout}");
    assert!(stdout.contains("drop-column:"), "{stdout}");
    assert!(stdout.contains("instead:"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when piped");
}

#[test]
fn text_plan_shows_rollback_phrases_concurrently_wait_bounds_and_why_no_phrase() {
    // The rollback's own phrase, as docs/safety-model.md promises.
    let (code, stdout, stderr) = pgpilot(&["plan", "tests/fixtures/valid/drop-column.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("to roll back, type: rollback update users"),
        "{stdout}"
    );

    // A CONCURRENTLY step runs in autocommit: what bounds its waits, the
    // ones for older transactions included.
    let (code, stdout, stderr) = pgpilot(&["plan", "runbooks/demo.toml"]);
    assert_eq!(code, 0, "{stderr}");
    let step = stdout
        .split("\n\n")
        .find(|s| s.contains("6. create-index"))
        .unwrap_or_else(|| panic!("no create-index step:\n{stdout}"));
    assert!(
        step.contains("waits at most 1min for its locks, retried 5 times; runs at most 30min"),
        "{step}"
    );
    assert!(
        step.contains("CONCURRENTLY also waits for every transaction older than it to end; each such wait is a lock wait, so lock_timeout (1min) ends it too"),
        "{step}"
    );
    // A step without CONCURRENTLY says nothing of it.
    let other = stdout
        .split("\n\n")
        .find(|s| s.contains("4. add-battery-column"))
        .unwrap_or_default();
    assert!(!other.contains("older than it"), "{other}");

    // High risk, not destructive: why no phrase is asked.
    let (code, stdout, stderr) = pgpilot(&["plan", "runbooks/add-not-null-via-check.toml"]);
    assert_eq!(code, 0, "{stderr}");
    let step = stdout
        .split("\n\n")
        .find(|s| s.contains("set-not-null [change]"))
        .unwrap_or_else(|| panic!("no set-not-null step:\n{stdout}"));
    assert!(
        step.contains("HIGH risk: breaking for running clients"),
        "{step}"
    );
    assert!(
        step.contains("no phrase is asked: it breaks running clients but destroys no data"),
        "{step}"
    );
    assert!(!step.contains("type to confirm"), "{step}");
    let (_, json, _) = pgpilot(&[
        "plan",
        "runbooks/add-not-null-via-check.toml",
        "--format",
        "json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&json).expect("plan json");
    let steps = plan["steps"].as_array().expect("steps");
    let reason = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["no_confirm_reason"].clone())
            .unwrap_or_default()
    };
    assert!(
        reason("set-not-null")
            .as_str()
            .is_some_and(|r| r.contains("destroys no data")),
        "{json}"
    );
    assert!(reason("count-nulls").is_null(), "{json}");
}

// ---- files are files: what a runbook may name, and what pgpilot reads ----

/// pgpilot `args` in a bounded child (deadline, 1 GiB of address space).
fn pgpilot_bounded(args: &[&str], data_dir: &Path) -> common::Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpilot"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env("PGPILOT_DATA_DIR", data_dir);
    common::run_bounded(&mut cmd, Duration::from_secs(20))
}

/// `rb/r.toml` under `root`: one check step reading `file`, its `file =`
/// value at line 12, column 8; `header` goes on line 4, inside [runbook].
fn runbook_naming(root: &Path, file: &str, header: &str) -> PathBuf {
    let path = root.join("rb").join("r.toml");
    std::fs::create_dir_all(root.join("rb")).unwrap();
    std::fs::write(
        &path,
        format!(
            "[runbook]\nid = \"files\"\ntitle = \"Files are files\"\n{header}\n\n[[phase]]\nid = \"p\"\n\n[[phase.step]]\nid = \"s\"\nkind = \"check\"\nfile = \"{file}\"\n"
        ),
    )
    .unwrap();
    path
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn a_step_file_outside_the_runbook_folder_or_not_a_regular_file_is_refused_at_its_value() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.join("rb/sql")).unwrap();
    let outside = root.join("outside.sql");
    std::fs::write(&outside, "SELECT 1").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("rb/sql/link.sql")).unwrap();
    mkfifo(&root.join("rb/sql/fifo.sql"));
    let _socket = std::os::unix::net::UnixListener::bind(root.join("rb/sql/socket.sql")).unwrap();
    // Sparse: 16 MiB and one byte, without writing them.
    let big = std::fs::File::create(root.join("rb/sql/big.sql")).unwrap();
    big.set_len(16 * 1024 * 1024 + 1).unwrap();
    let absolute = outside.to_str().unwrap().to_string();

    let cases: &[(&str, &str)] = &[
        ("../outside.sql", "is outside the runbook's folder"),
        (&absolute, "is an absolute path"),
        (
            "sql/link.sql",
            "is outside the runbook's folder (it resolves to",
        ),
        (
            "sql/fifo.sql",
            "it is a FIFO (named pipe), not a regular file",
        ),
        ("sql/socket.sql", "it is a socket, not a regular file"),
        ("/dev/zero", "is an absolute path"),
        ("sql", "it is a directory, not a regular file"),
        ("sql/big.sql", "it is larger than 16 MiB"),
    ];
    for (file, message) in cases {
        let runbook = runbook_naming(root, file, "");
        let runbook = runbook.to_str().unwrap();
        for command in [
            vec!["check", runbook],
            vec!["plan", runbook],
            vec!["run", runbook, "--headless", "--db", "host=/nonexistent"],
        ] {
            let ran = pgpilot_bounded(&command, data.path());
            assert_eq!(ran.code, 1, "{command:?} with file = {file:?}\n{ran}");
            assert!(
                ran.stderr.contains(&format!("{runbook}:12:8: error: ")),
                "{command:?}: the error must point at the file = value\n{ran}"
            );
            assert!(
                ran.stderr.contains(message),
                "{command:?}: {message:?}\n{ran}"
            );
            assert!(ran.stderr.contains("help: "), "{command:?}\n{ran}");
        }
    }
}

#[test]
fn a_runbook_that_is_a_device_a_fifo_or_too_large_fails_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("runbook.toml");
    mkfifo(&fifo);
    let big = tmp.path().join("big.toml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(16 * 1024 * 1024 + 1)
        .unwrap();
    let cases = [
        ("/dev/zero", "it is a character device, not a regular file"),
        (
            fifo.to_str().unwrap(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        (big.to_str().unwrap(), "it is larger than 16 MiB"),
    ];
    for (runbook, message) in cases {
        for command in [
            vec!["check", runbook],
            vec!["plan", runbook],
            vec!["run", runbook, "--headless", "--db", "host=/nonexistent"],
        ] {
            let ran = pgpilot_bounded(&command, tmp.path());
            assert_eq!(ran.code, 1, "{command:?}\n{ran}");
            assert!(
                ran.stderr.contains(&format!(
                    "{runbook}:1:1: error: cannot read the runbook: {message}"
                )),
                "{command:?}\n{ran}"
            );
        }
    }
}

#[test]
fn a_file_below_the_declared_sql_root_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("db/migrations")).unwrap();
    std::fs::write(
        root.join("db/migrations/0042_add_column.sql"),
        "ALTER TABLE t ADD COLUMN c integer",
    )
    .unwrap();
    let file = "../db/migrations/0042_add_column.sql";
    let runbook = runbook_naming(root, file, "sql_root = \"../db/migrations\"");
    let (code, stdout, stderr) = pgpilot(&["check", runbook.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // Without the declaration the same file is outside.
    let runbook = runbook_naming(root, file, "");
    let (code, _, stderr) = pgpilot(&["check", runbook.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("outside the runbook's folder"), "{stderr}");

    // A root that does not exist is an error at its value.
    let runbook = runbook_naming(root, "sql/x.sql", "sql_root = \"../nowhere\"");
    let (code, _, stderr) = pgpilot(&["check", runbook.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:12: error: sql_root: cannot find the folder",
            runbook.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_byte_order_mark_opening_a_sql_file_is_accepted_and_locations_stay_right() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("rb/sql")).unwrap();
    std::fs::write(root.join("rb/sql/ok.sql"), "\u{feff}SELECT 1;\nSELECT 2\n").unwrap();
    let runbook = runbook_naming(root, "sql/ok.sql", "");
    let (code, stdout, stderr) = pgpilot(&["check", runbook.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    // The mark is no column: WHERE is the 15th character of line 1 as an
    // editor shows it.
    std::fs::write(
        root.join("rb/sql/bad.sql"),
        "\u{feff}SELECT 1 FROM WHERE;\nSELECT\n  FROM x WHERE;\n",
    )
    .unwrap();
    let runbook = runbook_naming(root, "sql/bad.sql", "");
    let (code, _, stderr) = pgpilot(&["check", runbook.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    let place = root.join("rb/sql/bad.sql");
    assert!(
        stderr.contains(&format!("{}:1:15: error: ", place.display()))
            && stderr.contains("syntax error at or near \"WHERE\""),
        "{stderr}"
    );
}
