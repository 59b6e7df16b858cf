//! `pgpilot check --format text|json|gcc|sarif|github`, `--fail-on` and
//! `--enable`, as CI runs them: what each format prints and the exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pgpilot(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A runbook in a folder whose name needs escaping (`,` and `:` in GitHub's
/// properties), with one warning (line 9, col 8) and one note (col 33).
fn runbook(dir: &Path, sql: &str) -> PathBuf {
    let folder = dir.join("a,b:c");
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("r.toml");
    std::fs::write(
        &path,
        format!(
            "[runbook]\nid = \"x\"\ntitle = \"x\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"change\"\nsql = \"{sql}\"\n"
        ),
    )
    .unwrap();
    path
}

const WARN_AND_NOTE: &str = "CREATE INDEX i ON t (a); ALTER TABLE t ADD COLUMN c varchar(10)";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgpilot-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn gcc_prints_one_line_per_finding_with_its_place() {
    let d = tmp("gcc");
    let p = runbook(&d, WARN_AND_NOTE);
    let (code, out, _) = pgpilot(&["check", "--format", "gcc", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    let shown = p.display().to_string();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!(
                "{shown}:9:8: warning: index-not-concurrent: CREATE INDEX on t blocks writes to it while the index builds"
            ),
            format!("{shown}:9:33: note: prefer-text: t.c is varchar(n)"),
        ]
    );
}

#[test]
fn github_annotations_escape_properties_and_data() {
    let d = tmp("github");
    let p = runbook(&d, WARN_AND_NOTE);
    let (code, out, _) = pgpilot(&["check", "--format", "github", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    let file = p
        .display()
        .to_string()
        .replace(':', "%3A")
        .replace(',', "%2C");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "::warning file={file},line=9,col=8,title=pgpilot index-not-concurrent::index-not-concurrent: CREATE INDEX on t"
        )),
        "{}",
        lines[0]
    );
    // The help is a second line of the annotation, escaped.
    assert!(lines[0].contains("%0Ahelp: use CREATE INDEX CONCURRENTLY"));
    assert!(lines[1].starts_with(&format!("::notice file={file},line=9,col=33,")));
}

#[test]
fn json_lists_files_diagnostics_and_counts() {
    let d = tmp("json");
    let p = runbook(&d, WARN_AND_NOTE);
    let (code, out, _) = pgpilot(&["check", "--format", "json", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["files"][0]["ok"], true);
    assert_eq!(v["files"][0]["risk"], "medium");
    assert_eq!(v["summary"]["warnings"], 1);
    assert_eq!(v["summary"]["notes"], 1);
    assert_eq!(v["summary"]["errors"], 0);
    let first = &v["diagnostics"][0];
    assert_eq!(first["rule"], "index-not-concurrent");
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["line"], 9);
    assert_eq!(first["column"], 8);
}

#[test]
fn sarif_is_valid_sarif_2_1_0() {
    let d = tmp("sarif");
    let ok = runbook(&d, WARN_AND_NOTE);
    let broken = d.join("broken.toml");
    std::fs::write(&broken, "[runbook\n").unwrap();
    let (code, out, _) = pgpilot(&[
        "check",
        "--format",
        "sarif",
        ok.to_str().unwrap(),
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "a broken runbook fails the check");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sarif/sarif-schema-2.1.0.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "not valid SARIF 2.1.0: {errors:#?}");
    let results = v["runs"][0]["results"].as_array().unwrap();
    let levels: Vec<&str> = results
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["warning", "note", "error"]);
    assert_eq!(results[2]["ruleId"], "check");
}

#[test]
fn fail_on_warning_fails_on_a_warning_and_notes_never_fail() {
    let d = tmp("failon");
    let warn = runbook(&d, WARN_AND_NOTE);
    assert_eq!(pgpilot(&["check", warn.to_str().unwrap()]).0, 0);
    assert_eq!(
        pgpilot(&["check", "--fail-on", "warning", warn.to_str().unwrap()]).0,
        1
    );
    let d2 = tmp("failon-note");
    let note = runbook(&d2, "ALTER TABLE t ADD COLUMN c varchar(10)");
    assert_eq!(
        pgpilot(&["check", "--fail-on", "warning", note.to_str().unwrap()]).0,
        0
    );
}

#[test]
fn enable_turns_on_an_opt_in_rule_and_refuses_other_names() {
    let d = tmp("enable");
    let p = runbook(&d, "CREATE TABLE t (id bigint)");
    let (_, out, _) = pgpilot(&["check", "--format", "gcc", p.to_str().unwrap()]);
    assert!(!out.contains("unqualified-name"), "{out}");
    let (code, out, _) = pgpilot(&[
        "check",
        "--format",
        "gcc",
        "--enable",
        "unqualified-name",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("warning: unqualified-name: table t has no schema"),
        "{out}"
    );
    let (code, _, err) = pgpilot(&["check", "--enable", "drop-table", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not an opt-in rule"), "{err}");
}

#[test]
fn an_ignore_comment_silences_its_rule_and_a_stale_or_unexplained_one_is_a_warning() {
    let d = tmp("ignore");
    let p = runbook(
        &d,
        "-- pgpilot: ignore index-not-concurrent — the table has ten rows\\nCREATE INDEX i ON t (a);\\n-- pgpilot: ignore drop-table\\nCREATE INDEX j ON t (b)",
    );
    let (code, out, _) = pgpilot(&["check", "--format", "json", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rules: Vec<&str> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rule"].as_str().unwrap())
        .collect();
    // The first index is silenced; the second is not (its ignore names
    // another rule, which matches nothing, and gives no reason).
    assert_eq!(
        rules
            .iter()
            .filter(|r| **r == "index-not-concurrent")
            .count(),
        1,
        "{rules:?}"
    );
    assert!(rules.contains(&"unused-ignore"), "{rules:?}");
    assert!(rules.contains(&"ignore-without-reason"), "{rules:?}");
}

#[test]
fn a_step_ignore_silences_its_rule_and_a_stale_one_is_a_warning() {
    let d = tmp("step-ignore");
    let p = d.join("r.toml");
    std::fs::write(
        &p,
        "[runbook]\nid = \"x\"\ntitle = \"x\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"change\"\nsql = \"CREATE INDEX i ON t (a)\"\nignore = [\"index-not-concurrent\", \"drop-table\"]\n",
    )
    .unwrap();
    let (code, out, _) = pgpilot(&["check", "--format", "gcc", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(!out.contains("index-not-concurrent:"), "{out}");
    assert!(
        out.contains(":10:10: warning: ignore = [\"drop-table\"] matches no finding of step s"),
        "{out}"
    );
}
