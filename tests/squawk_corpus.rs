//! squawk's documented examples (tests/fixtures/squawk/, one file per case):
//! pgpilot must flag the hazards with a finding of a relevant rule and stay
//! quiet (no error, no warning) on the fixed forms. Each file is linted as a
//! migration file would be: wrapped in a runbook, a transaction per file
//! (its own BEGIN … COMMIT honoured), a CONCURRENTLY statement outside a
//! transaction in a step of its own.
//!
//! With PGPILOT_CORPUS_OUT=FILE the verdicts are written there, one line per
//! case, for scripts/compare-squawk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pgpilot::analysis::{RuleId, StatementKind, parse_statements};
use pgpilot::check::check_runbook;
use pgpilot::diag::{Diagnostic, Severity};

/// squawk rule → the pgpilot findings that catch the same hazard. A check
/// error of the runbook itself (a CONCURRENTLY statement in a transaction)
/// counts as "transaction-block".
const RELEVANT: &[(&str, &[&str])] = &[
    ("adding-field-with-default", &["volatile-default"]),
    ("adding-foreign-key-constraint", &["foreign-key-not-valid"]),
    ("adding-not-nullable-field", &["set-not-null"]),
    ("adding-required-field", &["add-column-not-null"]),
    ("adding-serial-primary-key-field", &["unique-constraint"]),
    (
        "ban-alter-domain-with-add-constraint",
        &["alter-domain-constraint"],
    ),
    ("ban-char-field", &["char-type"]),
    (
        "ban-concurrent-index-creation-in-transaction",
        &["transaction-block"],
    ),
    ("ban-create-domain-with-constraint", &["domain-constraint"]),
    ("ban-drop-column", &["drop-column"]),
    ("ban-drop-database", &["drop-database"]),
    ("ban-drop-not-null", &["drop-not-null"]),
    ("ban-drop-table", &["drop-table"]),
    ("ban-duplicate-column-assignments", &["duplicate-column"]),
    ("ban-truncate-cascade", &["truncate-cascade"]),
    ("ban-uncommitted-transaction", &["transaction-control"]),
    ("changing-column-type", &["column-type-change"]),
    (
        "constraint-missing-not-valid",
        &["check-not-valid", "validate-same-transaction"],
    ),
    ("disallowed-unique-constraint", &["unique-constraint"]),
    ("identifier-too-long", &["identifier-too-long"]),
    ("prefer-bigint-over-int", &["int-key"]),
    ("prefer-bigint-over-smallint", &["int-key"]),
    ("prefer-identity", &["prefer-identity"]),
    ("prefer-repack", &["vacuum-full", "cluster"]),
    ("prefer-robust-stmts", &["rerun-unsafe"]),
    ("prefer-text-field", &["prefer-text"]),
    ("prefer-timestamptz", &["prefer-timestamptz"]),
    ("renaming-column", &["rename-column"]),
    ("renaming-table", &["rename-table"]),
    (
        "require-concurrent-index-creation",
        &["index-not-concurrent"],
    ),
    (
        "require-concurrent-index-deletion",
        &["drop-index-not-concurrent"],
    ),
    (
        "require-concurrent-partition-detach",
        &["detach-partition-not-concurrent"],
    ),
    ("require-concurrent-reindex", &["reindex-not-concurrent"]),
    ("require-enum-value-ordering", &["enum-value-order"]),
    ("require-table-schema", &["unqualified-name"]),
    ("require-timeout-settings", &[]),
    ("transaction-nesting", &["transaction-control"]),
];

/// squawk's opt-in rules have pgpilot opt-in counterparts: the cases of
/// those pages run with them enabled, as a team that wants them would.
fn enabled_for(rule: &str) -> BTreeSet<RuleId> {
    let on = match rule {
        "prefer-robust-stmts" => Some(RuleId::RerunUnsafe),
        "require-table-schema" => Some(RuleId::UnqualifiedName),
        _ => None,
    };
    on.into_iter().collect()
}

struct Case {
    name: String,
    rule: String,
    bad: bool,
}

fn cases() -> Vec<(Case, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/squawk");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            let (rule, bad) = match (name.rfind("-bad-"), name.rfind("-good-")) {
                (Some(i), _) => (name[..i].to_string(), true),
                (_, Some(i)) => (name[..i].to_string(), false),
                _ => panic!("{name}: cases are RULE-bad-N.sql or RULE-good-N.sql"),
            };
            (Case { name, rule, bad }, p)
        })
        .collect();
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    out
}

/// One step of the wrapping runbook: its SQL and whether the file demanded a transaction.
struct Segment {
    sql: Vec<String>,
    in_transaction: bool,
}

/// Splits a migration file into steps the way a migration tool runs it.
fn segments(text: &str) -> Vec<Segment> {
    let statements = parse_statements(text).expect("corpus SQL parses");
    let mut out: Vec<Segment> = Vec::new();
    let mut open: Option<Segment> = None;
    let mut loose: Vec<String> = Vec::new();
    let flush = |loose: &mut Vec<String>, out: &mut Vec<Segment>| {
        if !loose.is_empty() {
            out.push(Segment {
                sql: std::mem::take(loose),
                in_transaction: false,
            });
        }
    };
    for s in statements {
        let sql = text[s.start..s.end].to_string();
        let kind = s.node.as_ref().map(StatementKind::of);
        let word = sql.split_whitespace().next().unwrap_or("").to_lowercase();
        let is_tx = kind == Some(StatementKind::TRANSACTION_STMT);
        match (&mut open, is_tx, word.as_str()) {
            (None, true, "begin" | "start") => {
                flush(&mut loose, &mut out);
                open = Some(Segment {
                    sql: Vec::new(),
                    in_transaction: true,
                });
            }
            (Some(_), true, "commit" | "end") => out.push(open.take().unwrap()),
            (Some(seg), _, _) => seg.sql.push(sql),
            (None, _, _) => {
                let alone = sql.to_lowercase().contains("concurrently")
                    || matches!(word.as_str(), "vacuum" | "drop" if sql.to_lowercase().contains("database") || word == "vacuum");
                if alone {
                    flush(&mut loose, &mut out);
                    out.push(Segment {
                        sql: vec![sql],
                        in_transaction: false,
                    });
                } else {
                    loose.push(sql);
                }
            }
        }
    }
    // A BEGIN never committed stays in the step, where it is a finding.
    if let Some(mut seg) = open {
        seg.sql.insert(0, "BEGIN".into());
        seg.in_transaction = false;
        out.push(seg);
    }
    flush(&mut loose, &mut out);
    out
}

fn runbook_text(text: &str) -> String {
    let mut toml =
        String::from("[runbook]\nid = \"corpus\"\ntitle = \"corpus\"\n\n[[phase]]\nid = \"p\"\n");
    for (i, seg) in segments(text).iter().enumerate() {
        let sql = seg.sql.join(";\n");
        assert!(!sql.contains("'''"), "corpus SQL cannot hold '''");
        toml.push_str(&format!(
            "\n[[phase.step]]\nid = \"s{i}\"\nkind = \"change\"\nirreversible = \"a corpus case\"\nsql = '''\n{}'''\n",
            if sql.is_empty() { "SELECT 1".to_string() } else { sql }
        ));
        if seg.in_transaction {
            toml.push_str("transaction = true\n");
        }
    }
    toml
}

/// The rule ids of every diagnostic at or above `min`.
fn rules_found(diags: &[Diagnostic], min: Severity) -> BTreeSet<String> {
    diags
        .iter()
        .filter(|d| d.severity >= min)
        .map(|d| {
            if d.message.contains("cannot run inside a transaction block") {
                "transaction-block".to_string()
            } else {
                d.message
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_end_matches(" in the rollback")
                    .to_string()
            }
        })
        .collect()
}

fn lint(path: &Path, rule: &str) -> Vec<Diagnostic> {
    let text = std::fs::read_to_string(path).unwrap();
    let rb = pgpilot::runbook::parse_str(&path.with_extension("toml"), runbook_text(&text))
        .unwrap_or_else(|d| panic!("{}: the wrapping runbook: {d:?}", path.display()));
    match check_runbook(rb, &enabled_for(rule)) {
        Ok(c) => c.warnings,
        Err(errors) => errors,
    }
}

#[test]
fn pgpilot_flags_squawks_hazards_and_passes_their_fixes() {
    let mut report = String::new();
    let (mut bad, mut flagged, mut good, mut quiet) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    for (case, path) in cases() {
        let relevant = RELEVANT
            .iter()
            .find(|(r, _)| *r == case.rule)
            .unwrap_or_else(|| panic!("{}: no mapping for squawk rule {}", case.name, case.rule))
            .1;
        let diags = lint(&path, &case.rule);
        let all = rules_found(&diags, Severity::Note);
        let ok = if case.bad {
            bad += 1;
            let hit = relevant.iter().any(|r| all.contains(*r));
            flagged += usize::from(hit);
            hit
        } else {
            good += 1;
            let loud = rules_found(&diags, Severity::Warning);
            quiet += usize::from(loud.is_empty());
            loud.is_empty()
        };
        if !ok {
            misses.push(format!("{}: {:?}", case.name, all));
        }
        report.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            case.name,
            if case.bad { "bad" } else { "good" },
            if ok == case.bad { "flagged" } else { "quiet" },
            all.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    if let Ok(out) = std::env::var("PGPILOT_CORPUS_OUT") {
        std::fs::write(out, &report).unwrap();
    }
    eprintln!(
        "bad flagged {flagged}/{bad}, good quiet {quiet}/{good}; misses:\n{}",
        misses.join("\n")
    );
    assert!(
        bad >= 72 && good >= 60,
        "the corpus shrank: {bad} bad, {good} good"
    );
    assert!(
        flagged >= 70,
        "flagged only {flagged} of {bad} hazards:\n{}",
        misses.join("\n")
    );
    assert!(
        quiet >= 57,
        "quiet on only {quiet} of {good} fixes:\n{}",
        misses.join("\n")
    );
}
