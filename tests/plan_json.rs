//! `plan --format json` keeps the contract of DESIGN.md for every sample runbook,
//! and its facts agree with each other.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn plan_json(path: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["plan", path, "--format", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgpilot");
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
}

const LOCKS: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

fn lock_rank(v: &Value) -> Option<usize> {
    v.as_str().map(|s| {
        LOCKS
            .iter()
            .position(|l| *l == s)
            .unwrap_or_else(|| panic!("unknown lock {s}"))
    })
}

fn assert_contract(path: &str, plan: &Value) {
    let rb = &plan["runbook"];
    for key in ["id", "title", "change_type", "risk"] {
        assert!(rb[key].is_string(), "{path}: runbook.{key}");
    }
    assert!(["major", "minor", "patch"].contains(&rb["change_type"].as_str().unwrap()));
    assert!(
        ["low", "medium", "high"].contains(&rb["risk"].as_str().unwrap()),
        "{path}"
    );
    let steps = plan["steps"].as_array().expect("steps");
    assert!(!steps.is_empty());
    let mut any_destructive = false;
    for s in steps {
        let id = s["id"].as_str().expect("step id");
        for key in ["phase", "id", "kind"] {
            assert!(s[key].is_string(), "{path} {id}: {key}");
        }
        for key in ["transactional", "destructive", "rewrites"] {
            assert!(s[key].is_boolean(), "{path} {id}: {key}");
        }
        assert!(
            s["lock"].is_null() || s["lock"].is_string(),
            "{path} {id}: lock"
        );
        assert!(
            s["confirm"].is_null() || s["confirm"].is_string(),
            "{path} {id}: confirm"
        );
        let statements = s["statements"].as_array().expect("statements");
        let mut strongest = None;
        for st in statements {
            for key in ["sql", "type"] {
                assert!(st[key].is_string(), "{path} {id}: statement {key}");
            }
            assert!(
                st["relations"]
                    .as_array()
                    .expect("relations")
                    .iter()
                    .all(Value::is_string)
            );
            for key in ["transactional", "destructive", "rewrites"] {
                assert!(st[key].is_boolean(), "{path} {id}: statement {key}");
            }
            for f in st["findings"].as_array().expect("findings") {
                for key in ["rule", "message", "advice"] {
                    assert!(f[key].is_string(), "{path} {id}: finding {key}");
                }
            }
            strongest = strongest.max(lock_rank(&st["lock"]));
        }
        // The step's facts are the strongest of its statements'.
        assert_eq!(lock_rank(&s["lock"]), strongest, "{path} {id}: step lock");
        let destructive = statements.iter().any(|st| st["destructive"] == true);
        assert_eq!(s["destructive"], destructive, "{path} {id}");
        // A phrase is asked exactly when the step is destructive.
        assert_eq!(
            s["confirm"].is_string(),
            destructive,
            "{path} {id}: confirm"
        );
        if statements.iter().any(|st| st["transactional"] == false) {
            assert_eq!(s["transactional"], false, "{path} {id}");
        }
        any_destructive |= destructive;
        if s["kind"] == "pause" {
            assert!(statements.is_empty());
        }
    }
    if any_destructive {
        assert_eq!(
            rb["risk"], "high",
            "{path}: a destructive step makes the runbook high risk"
        );
    }
}

#[test]
fn every_sample_runbook_plan_matches_the_contract() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("runbooks") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let rel = format!("runbooks/{}", p.file_name().unwrap().to_string_lossy());
            assert_contract(&rel, &plan_json(&rel));
            n += 1;
        }
    }
    assert!(n >= 8);
}

#[test]
fn plan_json_names_locks_risk_and_phrase() {
    let plan = plan_json("tests/fixtures/valid/drop-column.toml");
    assert_eq!(plan["runbook"]["id"], "drop-legacy");
    assert_eq!(plan["runbook"]["risk"], "high");
    let drop = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "drop")
        .unwrap();
    assert_eq!(drop["lock"], "AccessExclusiveLock");
    assert_eq!(drop["confirm"], "drop column users.legacy_id");
    assert_eq!(drop["statements"][0]["type"], "AlterTableStmt");
    assert_eq!(
        drop["statements"][0]["relations"],
        serde_json::json!(["users"])
    );
    assert_eq!(drop["statements"][0]["findings"][0]["rule"], "drop-column");
    let count = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "count")
        .unwrap();
    assert_eq!(count["lock"], "AccessShareLock");
    assert_eq!(count["confirm"], Value::Null);
    assert_eq!(count["transactional"], true);
}

/// A backfill step's plan says how it walks: table, key, batch size, the
/// adaptive target, the pause, and whether its rollback is batched too.
#[test]
fn plan_shows_a_backfills_batching() {
    let plan = plan_json("tests/fixtures/valid/backfill.toml");
    let b = &plan["steps"][0]["backfill"];
    assert_eq!(b["table"], "public.readings", "{b}");
    assert_eq!(b["key"], "id");
    assert_eq!(b["batch_size"], 1000);
    assert_eq!(b["target_batch_time"], "500ms");
    assert_eq!(b["batch_pause"], "50ms");
    assert_eq!(b["rollback_batched"], true);
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["plan", "tests/fixtures/valid/backfill.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgpilot");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("walks public.readings by id in batches of 1000 (adapted toward 500ms per batch), 50ms between batches"),
        "{text}"
    );
}
