//! The change-log entry of the seed procedure (database-change-approval:
//! "Change Log Entry"), one per session: date, change id, risk, approved
//! by, description, files, backup id, deployment time, verification result,
//! issues encountered, rollback required, and an emergency's reason. Read
//! from the session's records alone; [`super::markdown`] places it first.

use std::fmt::Write as _;

use super::change::ChangeFacts;
use super::export::format_ms;
use super::record::{Action, AuditRecord};
use super::summary::{RowKind, SessionSummary, failure_text};
use crate::text::{markdown_code, markdown_text};

/// Steps of this runbook rolled back by a later session of the export.
pub(crate) struct LaterRollback<'a> {
    pub(crate) session: &'a str,
    pub(crate) steps: Vec<&'a str>,
}

/// The entry's rows, in the seed's order.
pub(crate) fn entry(
    records: &[&AuditRecord],
    s: &SessionSummary,
    later: &[LaterRollback],
) -> Vec<(&'static str, String)> {
    // Records of a command without a session start (`approve`, `restore`)
    // are no change: no entry.
    let (Some(first), Some(start)) = (records.first().copied(), s.start) else {
        return Vec::new();
    };
    let message = start.message.as_deref().unwrap_or("");
    let facts = ChangeFacts::parse(message);
    let kind = start.outcome.as_deref().unwrap_or("run");
    let mut rows: Vec<(&'static str, String)> = Vec::new();
    rows.push(("Date", start.ts.format("%Y-%m-%d").to_string()));
    let ticket = records.iter().find_map(|r| r.ticket.as_deref());
    rows.push((
        "Change ID",
        ticket.map_or("none recorded".into(), markdown_text),
    ));
    rows.push((
        "Risk level",
        match (&facts.effective_risk, &facts.declared_risk) {
            (Some(e), Some(d)) => format!("{} (declared {})", markdown_text(e), markdown_text(d)),
            (Some(e), None) => format!("{} (none declared)", markdown_text(e)),
            (None, _) => "not recorded".into(),
        },
    ));
    rows.push(("Approved by", approved_by(s, kind, first.rehearsal)));
    rows.push(("Description", description(&facts)));
    rows.push(("Files modified", files(&facts)));
    rows.push(("Backup ID", backups(s, first.rehearsal)));
    rows.push(("Deployment time", deployment(s, start)));
    rows.push(("Verification result", verification(s, &facts)));
    rows.push(("Issues encountered", issues_count(s)));
    rows.push(("Rollback required", rollback(s, later)));
    rows.push((
        "Emergency",
        match records.iter().find_map(|r| r.emergency.as_deref()) {
            Some(reason) => format!("**yes**: {}", markdown_text(reason)),
            None => "no".into(),
        },
    ));
    rows
}

/// A value for a table cell shown exactly: a code span, pipes escaped.
fn code(s: &str) -> String {
    markdown_code(s).replace('|', "\\|")
}

fn approved_by(s: &SessionSummary, kind: &str, rehearsal: bool) -> String {
    let guard = s.guards.iter().find(|g| {
        g.message
            .as_deref()
            .is_some_and(|m| m.starts_with("approvals: "))
    });
    let Some(guard) = guard else {
        return match (kind, rehearsal) {
            (_, true) => "not required: a rehearsal changes nothing".into(),
            ("rollback", _) => "not required: a rollback is incident response".into(),
            _ => "none required for this run".into(),
        };
    };
    let message = guard.message.as_deref().unwrap_or("");
    let detail = message.strip_prefix("approvals: ").unwrap_or(message);
    match (guard.outcome.as_deref(), detail.strip_prefix("approved:\n")) {
        (Some("pass"), Some(lines)) => lines
            .lines()
            .map(|l| match l.split_once(" by ") {
                // "KIND by ROLE at TIME (…)": the role is the database's
                // text, shown exactly.
                Some((k, rest)) => {
                    let (role, tail) = rest.split_once(" at ").unwrap_or((rest, ""));
                    format!(
                        "{} by {} at {}",
                        markdown_text(k),
                        code(role),
                        markdown_text(tail)
                    )
                }
                None => markdown_text(l),
            })
            .collect::<Vec<_>>()
            .join("; "),
        (Some("pass"), None) => markdown_text(detail),
        _ => format!("**not approved**: {}", markdown_text(detail)),
    }
}

fn description(f: &ChangeFacts) -> String {
    match (&f.title, &f.description) {
        (Some(t), Some(d)) => format!("{} — {}", markdown_text(t), markdown_text(d)),
        (Some(t), None) => markdown_text(t),
        (None, Some(d)) => markdown_text(d),
        (None, None) => "not recorded".into(),
    }
}

fn files(f: &ChangeFacts) -> String {
    let Some(runbook) = &f.runbook_file else {
        return "not recorded".into();
    };
    let mut out = format!("runbook {}", code(runbook));
    if !f.files.is_empty() {
        let sql: Vec<String> = f.files.iter().map(|p| code(p)).collect();
        let _ = write!(out, "; SQL {}", sql.join(", "));
    }
    out
}

fn backups(s: &SessionSummary, rehearsal: bool) -> String {
    if s.backups.is_empty() {
        return if rehearsal {
            "none: a rehearsal skips dumps".into()
        } else {
            "none taken in this session".into()
        };
    }
    s.backups
        .iter()
        .map(|r| {
            let id = r
                .message
                .as_deref()
                .and_then(|m| m.strip_prefix("backup "))
                .unwrap_or("");
            format!(
                "{}: {} (verified with pg\\_restore --list)",
                code(r.step.as_deref().unwrap_or("-")),
                code(id)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn deployment(s: &SessionSummary, start: &AuditRecord) -> String {
    let from = start.ts.format("%Y-%m-%d %H:%M:%S UTC");
    match s.end {
        Some(end) => {
            let ms = (end.ts - start.ts).num_milliseconds().max(0);
            format!(
                "{from} to {} ({})",
                end.ts.format("%H:%M:%S UTC"),
                format_ms(u64::try_from(ms).unwrap_or(0))
            )
        }
        None => format!("{from}, end not recorded"),
    }
}

/// The last outcome of each verify step: Success when all passed, Failed
/// when one failed, Partial when some never ran.
fn verification(s: &SessionSummary, f: &ChangeFacts) -> String {
    let last = |id: &str| {
        s.rows
            .iter()
            .rev()
            .find(|r| r.step == id && matches!(r.kind, RowKind::Apply | RowKind::Skip))
    };
    let describe = |ids: &[String]| -> (usize, usize, Vec<String>) {
        let (mut passed, mut failed) = (0, 0);
        let said = ids
            .iter()
            .map(|id| {
                let outcome = match last(id) {
                    Some(r) if r.kind == RowKind::Skip => "skipped".to_string(),
                    Some(r) if r.outcome.starts_with("succeeded") || r.outcome == "passed" => {
                        passed += 1;
                        "passed".into()
                    }
                    Some(r) if r.outcome.starts_with("started") => "did not finish".into(),
                    Some(r) => {
                        failed += 1;
                        match r.notes.last() {
                            Some(n) => format!("failed ({})", markdown_text(n)),
                            None => "failed".into(),
                        }
                    }
                    None => "not run".into(),
                };
                format!("{} {outcome}", code(id))
            })
            .collect();
        (passed, failed, said)
    };
    let (passed, failed, said) = describe(&f.verifies);
    let mut out = if f.verifies.is_empty() {
        "no verify step in the runbook".to_string()
    } else if failed > 0 {
        format!("**Failed**: {}", said.join(", "))
    } else if passed == f.verifies.len() {
        format!("**Success**: {}", said.join(", "))
    } else if passed == 0 {
        format!("**Not verified**: {}", said.join(", "))
    } else {
        format!("**Partial**: {}", said.join(", "))
    };
    if !f.checks.is_empty() {
        let (passed, _, said) = describe(&f.checks);
        let _ = write!(
            out,
            "; checks before the change: {passed} of {} passed ({})",
            f.checks.len(),
            said.join(", ")
        );
    }
    out
}

fn issues_count(s: &SessionSummary) -> String {
    if s.issues.is_empty() {
        return "none".into();
    }
    let count = |a: Action| s.issues.iter().filter(|r| r.action == a).count();
    let named: [(&str, usize); 8] = [
        (
            "failure(s)",
            count(Action::StepFailure) + count(Action::RollbackFailure),
        ),
        ("retry(ies)", count(Action::Retry)),
        ("skip(s)", count(Action::Skip)),
        ("health breach record(s)", count(Action::Health)),
        ("blocker record(s)", count(Action::Blockers)),
        ("replica lag warning(s)", count(Action::ReplicaLag)),
        (
            "cancel(s) or termination(s)",
            count(Action::Cancel) + count(Action::Terminate),
        ),
        ("guard(s) failed or asked", count(Action::Guard)),
    ];
    let parts: Vec<String> = named
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(w, n)| format!("{n} {w}"))
        .collect();
    format!("{} (listed below)", parts.join(", "))
}

fn rollback(s: &SessionSummary, later: &[LaterRollback]) -> String {
    let here: Vec<String> = s
        .rows
        .iter()
        .filter(|r| r.kind == RowKind::Rollback)
        .map(|r| format!("{} {}", code(r.step), markdown_text(&r.outcome)))
        .collect();
    let mut said = Vec::new();
    if !here.is_empty() {
        said.push(format!("in this session: {}", here.join(", ")));
    }
    for l in later {
        let steps: Vec<String> = l.steps.iter().map(|s| code(s)).collect();
        said.push(format!(
            "later, in session {}: {} rolled back",
            code(l.session),
            steps.join(", ")
        ));
    }
    if said.is_empty() {
        "no".into()
    } else {
        format!("**yes**: {}", said.join("; "))
    }
}

/// "### Issues encountered": each record, in order.
pub(crate) fn issues_section(out: &mut String, s: &SessionSummary) {
    if s.issues.is_empty() {
        return;
    }
    out.push_str("\n### Issues encountered\n\n");
    for r in &s.issues {
        let detail = match r.action {
            Action::StepFailure | Action::RollbackFailure => failure_text(r),
            _ => [r.outcome.as_deref(), r.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        };
        let step = r
            .step
            .as_deref()
            .map(|s| format!(" {}", markdown_code(s)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- {} {}{step}: {}",
            r.ts.format("%H:%M:%SZ"),
            r.action,
            markdown_text(&detail)
        );
    }
}
