//! `pgpilot check` and `plan` as a user runs them: exit codes, and errors that
//! name the file, line and column with what to do.

use std::path::Path;
use std::process::Command;

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
    assert!(INVALID.len() >= 15);
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
