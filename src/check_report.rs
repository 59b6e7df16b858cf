//! `pgpilot check`'s output for people and for CI: text (the default), json,
//! gcc (`FILE:LINE:COL: LEVEL: MESSAGE`), sarif (SARIF 2.1.0) and github
//! (workflow commands that annotate the lines of a pull request).
//! Everything quoted from a runbook is shown redacted and on one line.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::ValueEnum;
use serde_json::{Value, json};

use crate::analysis::RuleId;
use crate::analysis::version::{TargetVersion, VersionSource};
use crate::check::{CheckOptions, check_file_versioned};
use crate::diag::{Diagnostic, Severity};
use crate::exit;
use crate::style::Style;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Gcc,
    Sarif,
    Github,
}

/// The lowest level of finding that fails `check` (exit code 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
}

/// One file's outcome: its summary when it passed, and every diagnostic.
pub struct FileResult {
    pub path: PathBuf,
    pub summary: Option<Summary>,
    pub diagnostics: Vec<Diagnostic>,
    /// The PostgreSQL version its findings assume (when it was analysed,
    /// or known from the server or the flag).
    pub version: Option<TargetVersion>,
}

/// What `pgpilot check` was asked.
pub struct CheckRequest {
    pub enabled: BTreeSet<RuleId>,
    /// `--pg-version`: the target's major version, checked for support.
    pub pg_version: Option<u32>,
    /// `--db`: a target to read the version, table sizes and dependents from.
    pub db: Option<String>,
    /// With `--db`: a forecast lock this long makes a finding an error;
    /// under a tenth of it, a note.
    pub max_blocking: std::time::Duration,
    pub format: CheckFormat,
    pub fail_on: FailOn,
}

pub struct Summary {
    pub phases: usize,
    pub steps: usize,
    pub risk: crate::runbook::Risk,
}

/// 1 when a diagnostic at or above `fail_on` exists (errors always count),
/// 0 otherwise. Notes never fail.
pub fn exit_code(results: &[FileResult], fail_on: FailOn) -> u8 {
    let min = match fail_on {
        FailOn::Error => Severity::Error,
        FailOn::Warning => Severity::Warning,
    };
    let failed = results
        .iter()
        .flat_map(|r| &r.diagnostics)
        .any(|d| d.severity >= min);
    if failed { exit::FAILED } else { exit::OK }
}

/// Runbook text as shown: never a password, never a control character.
fn safe(t: &str) -> String {
    crate::text::one_line(&crate::text::redact(t))
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn path_of(d: &Diagnostic) -> String {
    safe(&d.location.path.display().to_string())
}

/// gcc's one-line format, which editors and most CI systems parse.
pub fn gcc(results: &[FileResult]) -> String {
    let mut out = String::new();
    for d in results.iter().flat_map(|r| &r.diagnostics) {
        out.push_str(&format!(
            "{}:{}:{}: {}: {}\n",
            path_of(d),
            d.location.line,
            d.location.col,
            level(d.severity),
            safe(&d.message)
        ));
    }
    out
}

/// GitHub's escaping of a workflow command's message.
pub fn github_data(t: &str) -> String {
    t.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub's escaping of a workflow command's property value.
pub fn github_property(t: &str) -> String {
    github_data(t).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands: one annotation per diagnostic.
pub fn github(results: &[FileResult]) -> String {
    let mut out = String::new();
    for d in results.iter().flat_map(|r| &r.diagnostics) {
        let command = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let mut message = safe(&d.message);
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(&safe(help));
        }
        let title = d.rule.map_or(String::new(), |r| {
            format!(",title=pgpilot {}", github_property(r))
        });
        out.push_str(&format!(
            "::{command} file={},line={},col={}{title}::{}\n",
            github_property(&path_of(d)),
            d.location.line,
            d.location.col,
            github_data(&message)
        ));
    }
    out
}

fn diagnostic_json(d: &Diagnostic) -> Value {
    json!({
        "path": path_of(d),
        "line": d.location.line,
        "column": d.location.col,
        "severity": level(d.severity),
        "rule": d.rule,
        "message": safe(&d.message),
        "help": d.help.as_deref().map(safe),
    })
}

/// One JSON object: every file with its outcome, every diagnostic, counts.
pub fn json(results: &[FileResult]) -> String {
    let files: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "path": safe(&r.path.display().to_string()),
                "ok": r.summary.is_some(),
                "phases": r.summary.as_ref().map(|s| s.phases),
                "steps": r.summary.as_ref().map(|s| s.steps),
                "risk": r.summary.as_ref().map(|s| s.risk.as_str()),
                "pg_version": r.version.map(|v| v.major),
                "pg_version_source": r.version.map(|v| v.source.as_str()),
            })
        })
        .collect();
    let all: Vec<&Diagnostic> = results.iter().flat_map(|r| &r.diagnostics).collect();
    let count = |s: Severity| all.iter().filter(|d| d.severity == s).count();
    let version = common_version(results);
    let doc = json!({
        "pg_version": version.map(|v| v.major),
        "pg_version_source": version.map_or("per-file", |v| v.source.as_str()),
        "files": files,
        "diagnostics": all.iter().map(|d| diagnostic_json(d)).collect::<Vec<_>>(),
        "summary": {
            "errors": count(Severity::Error),
            "warnings": count(Severity::Warning),
            "notes": count(Severity::Note),
        },
    });
    format!("{doc:#}\n")
}

/// The version every file was checked for; `None` when they differ (each
/// file's own is in `files`). With no file analysed, the default.
fn common_version(results: &[FileResult]) -> Option<TargetVersion> {
    let mut known = results.iter().filter_map(|r| r.version);
    let first = known.next().unwrap_or_default();
    known.all(|v| v == first).then_some(first)
}

/// "assuming PostgreSQL 13 (from --pg-version)", for the text output.
pub fn assumed(v: TargetVersion) -> String {
    format!(
        "assuming PostgreSQL {} (from {})",
        v.major,
        v.source.described()
    )
}

/// A file path as a SARIF artifact URI (a relative reference, '/'-separated,
/// with the characters a URI cannot hold percent-encoded).
fn uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Diagnostics that are not findings (a malformed runbook, a rule `check`
/// holds a runbook to) share one SARIF rule.
const CHECK_RULE: &str = "check";

/// SARIF 2.1.0, for GitHub code scanning, GitLab and other viewers.
pub fn sarif(results: &[FileResult]) -> String {
    let version = common_version(results);
    let all: Vec<&Diagnostic> = results.iter().flat_map(|r| &r.diagnostics).collect();
    let mut used: Vec<&str> = all.iter().map(|d| d.rule.unwrap_or(CHECK_RULE)).collect();
    used.sort_unstable();
    used.dedup();
    let rules: Vec<Value> = used
        .iter()
        .map(|id| match RuleId::parse(id).map(RuleId::rule) {
            Some(r) => json!({
                "id": id,
                "shortDescription": { "text": r.catches },
                "help": { "text": r.advice },
                "defaultConfiguration": { "level": level(match r.severity {
                    crate::analysis::FindingSeverity::Error => Severity::Error,
                    crate::analysis::FindingSeverity::Warning => Severity::Warning,
                    crate::analysis::FindingSeverity::Note => Severity::Note,
                }) },
            }),
            None => json!({
                "id": id,
                "shortDescription": { "text": "a problem with the runbook itself, which pgpilot refuses to run" },
            }),
        })
        .collect();
    let index = |id: &str| used.iter().position(|u| *u == id).unwrap_or(0);
    let results: Vec<Value> = all
        .iter()
        .map(|d| {
            let id = d.rule.unwrap_or(CHECK_RULE);
            let mut text = safe(&d.message);
            if let Some(help) = &d.help {
                text.push_str(" (help: ");
                text.push_str(&safe(help));
                text.push(')');
            }
            json!({
                "ruleId": id,
                "ruleIndex": index(id),
                "level": level(d.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&path_of(d)) },
                        "region": {
                            "startLine": d.location.line.max(1),
                            "startColumn": d.location.col.max(1),
                        },
                    },
                }],
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "pgpilot",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                },
            },
            "results": results,
            "properties": {
                "pgVersion": version.map(|v| v.major),
                "pgVersionSource": version.map_or("per-file", |v| v.source.as_str()),
            },
        }],
    });
    format!("{doc:#}\n")
}

/// The opt-in rules `--enable` names; an unknown name is a usage error.
pub fn opt_in_rules(names: &[String]) -> Result<BTreeSet<RuleId>, u8> {
    let opt_in: Vec<&str> = crate::analysis::RULES
        .iter()
        .filter(|r| r.opt_in)
        .map(|r| r.id.as_str())
        .collect();
    let mut out = BTreeSet::new();
    for name in names {
        match RuleId::parse(name).filter(|r| r.rule().opt_in) {
            Some(r) => {
                out.insert(r);
            }
            None => {
                eprintln!(
                    "error: --enable {}: not an opt-in rule (opt-in rules: {})",
                    crate::text::one_line(name),
                    opt_in.join(", ")
                );
                return Err(exit::USAGE);
            }
        }
    }
    Ok(out)
}

/// `pgpilot check`: every file checked, printed in `format`; the exit code.
pub fn run(paths: &[PathBuf], req: &CheckRequest) -> u8 {
    let flag = req.pg_version.map(|major| TargetVersion {
        major,
        source: VersionSource::Flag,
    });
    match &req.db {
        None => {
            let opts = CheckOptions {
                enabled: req.enabled.clone(),
                version: flag,
                refine: None,
            };
            run_with(paths, req, &opts)
        }
        Some(db) => crate::check_live::run(paths, req, db, flag),
    }
}

/// [`run`] once the options are known (with `--db`, after connecting).
pub fn run_with(paths: &[PathBuf], req: &CheckRequest, opts: &CheckOptions) -> u8 {
    let st = Style::for_stdout();
    let format = req.format;
    let mut results = Vec::new();
    for path in paths {
        let display = path.display().to_string();
        let shown = crate::text::for_terminal(&display);
        let (checked, version) = check_file_versioned(path, opts);
        let result = match checked {
            Ok(c) => FileResult {
                path: path.clone(),
                summary: Some(Summary {
                    phases: c.runbook.phases.len(),
                    steps: c.runbook.steps().count(),
                    risk: c.effective_risk(),
                }),
                diagnostics: c.warnings,
                version: Some(c.analysis.version),
            },
            Err(diags) => FileResult {
                path: path.clone(),
                summary: None,
                diagnostics: diags,
                version,
            },
        };
        if format == CheckFormat::Text {
            for d in &result.diagnostics {
                eprintln!("{d}");
            }
            let version = result.version.map(assumed).unwrap_or_default();
            match &result.summary {
                Some(s) => {
                    let shown_count = |sev: Severity, word: &str| {
                        let n = result
                            .diagnostics
                            .iter()
                            .filter(|d| d.severity == sev)
                            .count();
                        if n == 0 {
                            String::new()
                        } else {
                            format!(", {n} {word}")
                        }
                    };
                    println!(
                        "{shown}: ok: {} phases, {} steps, risk {}{}{}; {version}",
                        s.phases,
                        s.steps,
                        st.risk(s.risk),
                        shown_count(Severity::Warning, "warnings"),
                        shown_count(Severity::Note, "notes"),
                    );
                }
                None if version.is_empty() => {
                    eprintln!("{shown}: {} error(s)", result.diagnostics.len())
                }
                None => eprintln!("{shown}: {} error(s); {version}", result.diagnostics.len()),
            }
        }
        results.push(result);
    }
    let out = match format {
        CheckFormat::Text => String::new(),
        CheckFormat::Json => json(&results),
        CheckFormat::Gcc => gcc(&results),
        CheckFormat::Sarif => sarif(&results),
        CheckFormat::Github => github(&results),
    };
    print!("{out}");
    exit_code(&results, req.fail_on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_escapes_data_and_properties_by_its_rules() {
        assert_eq!(github_data("50% a\r\nb"), "50%25 a%0D%0Ab");
        assert_eq!(github_property("a,b:c%\n"), "a%2Cb%3Ac%25%0A");
    }

    #[test]
    fn sarif_uris_are_relative_references() {
        assert_eq!(uri("runbooks/a b#1.toml"), "runbooks/a%20b%231.toml");
        assert_eq!(uri(r"dir\x.toml"), "dir/x.toml");
    }
}
