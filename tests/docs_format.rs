//! docs/runbook-format.md stays true: its example runbooks pass `pgpilot
//! check`, and it documents every key the parser accepts and every finding rule.

use std::path::{Path, PathBuf};
use std::process::Command;

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbook-format.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The contents of every ```toml fenced block, in order.
fn toml_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match &mut current {
            None if line.trim_end() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "a ```toml block is not closed");
    blocks
}

/// Runs `pgpilot check` on each text as a runbook; the failures, with their output.
fn check_all(texts: &[(usize, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    // The allowed-signers file the doc's signed-approval examples name,
    // beside them as the doc says it must be.
    std::fs::write(
        dir.path().join("allowed_signers"),
        "alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBf5Ldg8mrF5tn1Mm4dfu0Q9SzkZhrqcqUz7Xnsn4I8p\n",
    )
    .expect("write allowed_signers");
    let mut failures = Vec::new();
    for (i, text) in texts {
        let path: PathBuf = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&path, text).expect("write example");
        let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
            .arg("check")
            .arg(&path)
            .env("NO_COLOR", "1")
            .output()
            .expect("run pgpilot check");
        if out.status.code() != Some(0) {
            failures.push(format!(
                "toml block #{i} (exit {:?}):\n{text}\n--- stdout\n{}--- stderr\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            ));
        }
    }
    failures
}

#[test]
fn every_example_runbook_in_the_doc_passes_check() {
    let examples: Vec<(usize, String)> = toml_blocks(&doc())
        .into_iter()
        .enumerate()
        .filter(|(_, b)| b.contains("[runbook]"))
        .collect();
    assert!(
        examples.len() >= 5,
        "expected the doc to hold complete example runbooks, found {}",
        examples.len()
    );
    let failures = check_all(&examples);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Fragments (a `[[phase]]`, a `[[phase.step]]`, …) are checked too, inside a
/// minimal runbook.
#[test]
fn every_fragment_in_the_doc_passes_check_inside_a_runbook() {
    const HEADER: &str = "[runbook]\nid = \"fragment\"\ntitle = \"Fragment\"\n\n";
    const PHASE: &str = "[[phase]]\nid = \"fragment-phase\"\n\n";
    const STEP: &str =
        "[[phase.step]]\nid = \"fragment-step\"\nkind = \"check\"\nsql = \"SELECT 1\"\n";
    let fragments: Vec<(usize, String)> = toml_blocks(&doc())
        .into_iter()
        .enumerate()
        .filter(|(_, b)| !b.contains("[runbook]"))
        .map(|(i, b)| {
            let mut text = HEADER.to_string();
            if b.trim_start().starts_with("[[phase.step]]") {
                text.push_str(PHASE);
            }
            text.push_str(&b);
            if !b.contains("[[phase") {
                text.push('\n');
                text.push_str(PHASE);
                text.push_str(STEP);
            }
            (i, text)
        })
        .collect();
    let failures = check_all(&fragments);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every key of the Raw* structs in src/runbook/parse/raw.rs, by table.
const KEYS: &[(&str, &[&str])] = &[
    (
        "top level (RawFile)",
        &[
            "runbook",
            "target",
            "settings",
            "approvals",
            "notify",
            "lint",
            "health",
            "phase",
        ],
    ),
    (
        "[runbook] (RawHeader)",
        &[
            "id",
            "title",
            "description",
            "change_type",
            "risk",
            "ticket",
            "sql_root",
            "history",
            "version",
            "requires_version",
        ],
    ),
    (
        "[target] (RawTarget)",
        &[
            "environments",
            "database",
            "require_primary",
            "windows",
            "timezone",
            "server_version",
        ],
    ),
    ("[lint] (RawLint)", &["enable"]),
    (
        "[approvals] (RawApprovals)",
        &[
            "required",
            "distinct_approvers",
            "notice",
            "allowed_signers",
        ],
    ),
    (
        "[notify] (RawNotify)",
        &["webhook_env", "webhook_file", "webhook", "events"],
    ),
    (
        "[settings] (RawSettings)",
        &[
            "lock_timeout",
            "statement_timeout",
            "lock_retries",
            "retry_backoff",
            "long_transaction",
            "on_blockers",
            "max_replica_lag",
        ],
    ),
    ("[[health]] (RawHealth)", &["name", "sql", "max", "min"]),
    ("[[phase]] (RawPhase)", &["id", "title", "step"]),
    (
        "[[phase.step]] (RawStep)",
        &[
            "id",
            "title",
            "kind",
            "sql",
            "file",
            "section",
            "statement",
            "migration",
            "instructions",
            "expect",
            "capture",
            "rollback",
            "rollback_file",
            "rollback_section",
            "transaction",
            "confirm",
            "explain",
            "irreversible",
            "ignore",
            "lock_timeout",
            "statement_timeout",
            "lock_retries",
            "retry_backoff",
            "long_transaction",
            "on_blockers",
            "max_replica_lag",
            "dump",
            "no_backup",
        ],
    ),
    ("expect (RawExpect)", &["rows", "scalar", "empty"]),
    ("dump (RawDump)", &["tables", "timeout"]),
];

#[test]
fn every_accepted_key_is_documented() {
    let doc = doc();
    let missing: Vec<String> = KEYS
        .iter()
        .flat_map(|(table, keys)| keys.iter().map(move |k| (table, k)))
        .filter(|(_, k)| !doc.contains(&format!("`{k}`")))
        .map(|(table, k)| format!("{table}: `{k}`"))
        .collect();
    assert!(missing.is_empty(), "keys not documented: {missing:?}");
}

#[test]
fn every_enum_value_and_finding_rule_is_documented() {
    let doc = doc();
    let mut missing = Vec::new();
    for v in [
        "major", "minor", "patch", "low", "medium", "high", "ask", "wait", "proceed",
    ] {
        if !doc.contains(&format!("\"{v}\"")) {
            missing.push(format!("\"{v}\""));
        }
    }
    for kind in ["check", "change", "verify", "backup", "pause"] {
        if !doc.contains(&format!("| `{kind}` |")) {
            missing.push(format!("step kind `{kind}` in the kinds table"));
        }
    }
    for rule in pgpilot::analysis::RULES {
        if !doc.contains(&format!("| `{}` |", rule.id)) {
            missing.push(format!("finding rule `{}` in the findings table", rule.id));
        }
    }
    assert!(missing.is_empty(), "not documented: {missing:?}");
}
