//! `[lint] enable = ["rule", …]`: a runbook turns on opt-in rules for
//! itself, as `check --enable` does; a name that is not an opt-in rule is an
//! error at its place; and the approval hash ignores it (it changes what is
//! reported, not what runs).

use std::path::Path;
use std::process::Command;

const RUNBOOK: &str = r#"[runbook]
id = "lint"
title = "Add a column"
LINT
[[phase]]
id = "p"

  [[phase.step]]
  id = "add"
  kind = "change"
  sql = "ALTER TABLE orders ADD COLUMN note text"
  rollback = "ALTER TABLE orders DROP COLUMN note"
"#;

fn check(dir: &Path, lint: &str) -> (i32, String) {
    let path = dir.join("rb.toml");
    std::fs::write(&path, RUNBOOK.replace("LINT\n", lint)).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["check", &path.display().to_string()])
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lint_enable_turns_on_opt_in_rules_for_the_runbook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, err) = check(dir.path(), "");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("unqualified-name"), "{err}");
    let (code, err) = check(dir.path(), "[lint]\nenable = [\"unqualified-name\"]\n");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("rb.toml:12:10: warning: unqualified-name: table orders has no schema"),
        "{err}"
    );
}

#[test]
fn an_unknown_rule_in_lint_enable_is_an_error_at_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, err) = check(dir.path(), "[lint]\nenable = [\"unqualified-names\"]\n");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "rb.toml:5:11: error: [lint] enable: \"unqualified-names\" is not an opt-in rule"
        ),
        "{err}"
    );
    assert!(err.contains("did you mean \"unqualified-name\""), "{err}");
    // A rule that is always on is not an opt-in one either.
    let (code, err) = check(dir.path(), "[lint]\nenable = [\"drop-table\"]\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not an opt-in rule"), "{err}");
}

#[test]
fn lint_enable_leaves_the_approval_hash_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let load = |lint: &str| {
        let path = dir.path().join("rb.toml");
        std::fs::write(&path, RUNBOOK.replace("LINT\n", lint)).expect("write");
        pgpilot::runbook::load(&path).expect("runbook")
    };
    let plain = load("");
    let linted = load("[lint]\nenable = [\"rerun-unsafe\"]\n");
    assert_eq!(
        pgpilot::governance::hash::approval_hash(&plain),
        pgpilot::governance::hash::approval_hash(&linted)
    );
}
