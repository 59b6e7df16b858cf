//! `audit export --format markdown`: the change record a schema-change
//! procedure asks for, one section per runbook session: ticket, who, when,
//! where, rehearsal or not, and what happened to each step (action, outcome,
//! duration, attempts, confirmations, skips with reasons, rollbacks,
//! failures with SQLSTATE).

use std::fmt::Write as _;
use std::path::Path;

use super::change::summary_line;
use super::entry::{LaterRollback, entry, issues_section};
use super::export::format_ms;
use super::record::{Action, AuditRecord};
use super::summary::{RowKind, SessionSummary, StepRow, failure_text, sessions, summarize};
use super::verify::VerifyReport;

/// The change record for `records` (already filtered), read from `source`;
/// `integrity` is the verification of the whole log, stated at the top.
pub fn change_record(
    records: &[AuditRecord],
    source: &Path,
    integrity: Option<&VerifyReport>,
) -> String {
    let mut out = String::from("# Change record\n\n");
    let _ = writeln!(out, "From the pgpilot audit log `{}`.", source.display());
    match integrity {
        Some(r) if r.is_intact() => {
            let _ = writeln!(
                out,
                "Audit chain verified: {} records, chain intact, last seq {}.",
                r.records,
                r.last_seq.unwrap_or(0)
            );
        }
        Some(r) => {
            let _ = writeln!(
                out,
                "**Audit chain BROKEN** — `{r}`. Treat this record as unreliable."
            );
        }
        None => out.push_str("Audit chain not verified.\n"),
    }
    if records.is_empty() {
        out.push_str("\nNo audit records match.\n");
        return out;
    }
    let all = sessions(records);
    for (i, session) in all.iter().enumerate() {
        out.push('\n');
        let later = later_rollbacks(session, &all[i + 1..]);
        session_section(&mut out, session, &later);
    }
    out
}

/// The steps of a run's runbook that later sessions of this export rolled
/// back (on the same target): its "rollback required" answer.
fn later_rollbacks<'a>(
    session: &[&'a AuditRecord],
    later: &'a [Vec<&'a AuditRecord>],
) -> Vec<LaterRollback<'a>> {
    let Some(first) = session.first() else {
        return Vec::new();
    };
    if first.rehearsal {
        return Vec::new();
    }
    let applied: Vec<&str> = session
        .iter()
        .filter(|r| r.action == Action::StepSuccess)
        .filter_map(|r| r.step.as_deref())
        .collect();
    later
        .iter()
        .filter_map(|other| {
            let o = other.first()?;
            if o.rehearsal || o.runbook != first.runbook || o.target != first.target {
                return None;
            }
            // Only what this session applied: an earlier step rolled back
            // later is that earlier session's answer.
            let steps: Vec<&str> = other
                .iter()
                .filter(|r| r.action == Action::RollbackSuccess)
                .filter_map(|r| r.step.as_deref())
                .filter(|step| applied.contains(step))
                .collect();
            (!steps.is_empty()).then_some(LaterRollback {
                session: o.session.as_str(),
                steps,
            })
        })
        .collect()
}

fn session_section(out: &mut String, records: &[&AuditRecord], later: &[LaterRollback]) {
    let (Some(first), Some(last)) = (records.first().copied(), records.last().copied()) else {
        return;
    };
    let s = summarize(records);
    let runbook = first.runbook.as_deref().unwrap_or("(no runbook)");
    let kind = s
        .start
        .and_then(|r| r.outcome.as_deref())
        .unwrap_or(if first.rehearsal {
            "rehearsal"
        } else {
            first.action.as_str()
        });
    let _ = writeln!(
        out,
        "## {}{} — {} — session {}\n",
        if first.rehearsal { "REHEARSAL: " } else { "" },
        cell(runbook),
        cell(kind),
        cell(&first.session)
    );
    out.push_str("| | |\n|---|---|\n");
    for (k, v) in entry(records, &s, later)
        .into_iter()
        .chain(facts(records, &s, first, last))
    {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    guards(out, &s);
    steps(out, &s);
    issues_section(out, &s);
    outcome_lists(out, &s);
    statements(out, &s);
}

/// The header table: ticket, runbook, who, where, when, result.
fn facts(
    records: &[&AuditRecord],
    s: &SessionSummary,
    first: &AuditRecord,
    last: &AuditRecord,
) -> Vec<(&'static str, String)> {
    let runbook = first.runbook.as_deref().unwrap_or("(no runbook)");
    let mut facts: Vec<(&str, String)> = Vec::new();
    facts.push((
        "Runbook",
        match &first.runbook_sha256 {
            Some(h) => format!("`{}` (SHA-256 `{}`)", cell(runbook), cell(h)),
            None => format!("`{}`", cell(runbook)),
        },
    ));
    if let Some(env) = s
        .start
        .and_then(|r| r.message.as_deref())
        .and_then(|m| summary_line(m).strip_prefix("env="))
        .and_then(|m| m.split(' ').next())
    {
        facts.push(("Environment", cell(env)));
    }
    facts.push((
        "Rehearsal",
        if first.rehearsal {
            "**yes**: ran inside one transaction that was rolled back; nothing was changed".into()
        } else {
            "no: changes are permanent".into()
        },
    ));
    let role = first
        .role
        .as_deref()
        .map_or("unknown".into(), |r| format!("`{}`", cell(r)));
    facts.push((
        "Operator",
        format!(
            "{}, database role {role}, from host {}",
            cell(&first.operator),
            cell(&first.client_host)
        ),
    ));
    facts.push((
        "Target",
        first.target.as_ref().map_or("none recorded".into(), |t| {
            format!("`{}:{}/{}`", cell(&t.host), t.port, cell(&t.database))
        }),
    ));
    let start = s.start.unwrap_or(first);
    facts.push(("Started", time(start)));
    match s.end {
        Some(end) => {
            facts.push(("Ended", time(end)));
            let ms = (end.ts - start.ts).num_milliseconds().max(0);
            facts.push(("Duration", format_ms(u64::try_from(ms).unwrap_or(0))));
            let result = cell(end.outcome.as_deref().unwrap_or("ended"));
            facts.push((
                "Result",
                match &end.message {
                    Some(m) => format!("**{result}**: {}", cell(m)),
                    None => format!("**{result}**"),
                },
            ));
        }
        None => {
            facts.push((
                "Ended",
                format!("not recorded (last record {})", time(last)),
            ));
            facts.push((
                "Result",
                "**unknown**: no session end recorded (pgpilot stopped, or the records were \
                 filtered out)"
                    .into(),
            ));
        }
    }
    let t = s.tally();
    facts.push((
        "Summary",
        format!(
            "{} step(s) succeeded, {} skipped, {} failed, {} rolled back",
            t.succeeded, t.skipped, t.failed, t.rolled_back
        ),
    ));
    facts.push((
        "Audit records",
        match records.len() {
            1 => format!("seq {} (1 record)", first.seq),
            n => format!("seq {}–{} ({n} records)", first.seq, last.seq),
        },
    ));
    facts
}

fn guards(out: &mut String, s: &SessionSummary) {
    if s.guards.is_empty() && s.session_confirmations.is_empty() {
        return;
    }
    out.push_str("\n### Guards\n\n| Guard | Result | Detail |\n|---|---|---|\n");
    for g in &s.guards {
        let msg = g.message.as_deref().unwrap_or("");
        let (name, detail) = msg.split_once(": ").unwrap_or((msg, ""));
        let result = g.outcome.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            cell(name),
            cell(result),
            cell(detail)
        );
    }
    for c in &s.session_confirmations {
        let result = c.outcome.as_deref().unwrap_or("-");
        let detail = c.message.as_deref().unwrap_or("");
        let _ = writeln!(
            out,
            "| typed confirmation | {} | {} |",
            cell(result),
            cell(detail)
        );
    }
}

fn steps(out: &mut String, s: &SessionSummary) {
    if s.rows.is_empty() {
        return;
    }
    out.push_str(
        "\n### Steps\n\n\
         | # | Phase | Step | Action | Outcome | Duration | Attempts | Confirmation | Notes |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, r) in s.rows.iter().enumerate() {
        let mut notes = r.notes.clone();
        if r.retries > 0 {
            let plural = if r.retries == 1 { "y" } else { "ies" };
            notes.insert(0, format!("{} retr{plural} after lock_timeout", r.retries));
        }
        let dash = |empty: bool, text: String| if empty { "-".to_string() } else { text };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            cell(r.phase.unwrap_or("-")),
            cell(r.step),
            r.kind.word(),
            cell(&r.outcome),
            r.duration_ms.map_or("-".into(), format_ms),
            dash(r.attempts == 0, r.attempts.to_string()),
            dash(
                r.confirmations.is_empty(),
                cell(&r.confirmations.join(", then "))
            ),
            dash(notes.is_empty(), cell(&notes.join("; "))),
        );
    }
}

/// Skips with reasons, rollbacks, failures, and what the operator did to
/// other sessions: the lists a reviewer reads first.
fn outcome_lists(out: &mut String, s: &SessionSummary) {
    let of_kind = |k: RowKind| s.rows.iter().filter(move |r| r.kind == k);
    if of_kind(RowKind::Skip).next().is_some() {
        out.push_str("\n### Skipped steps\n\n");
        for r in of_kind(RowKind::Skip) {
            let reason = r.notes.first().map_or("no reason recorded", |n| {
                n.strip_prefix("reason: ").unwrap_or(n)
            });
            let _ = writeln!(out, "- `{}`: {}", r.step, cell(reason));
        }
    }
    if s.has_rollback() {
        out.push_str("\n### Rollbacks\n\n");
        for r in of_kind(RowKind::Rollback) {
            let took = r
                .duration_ms
                .map(|d| format!(" in {}", format_ms(d)))
                .unwrap_or_default();
            let _ = writeln!(out, "- `{}`: {}{took}", r.step, r.outcome);
        }
    }
    if !s.failures.is_empty() {
        out.push_str("\n### Failures\n\n");
        for (f, kind) in &s.failures {
            let _ = writeln!(
                out,
                "- {} `{}` ({}): {}",
                f.ts.format("%H:%M:%SZ"),
                f.step.as_deref().unwrap_or("-"),
                kind.word(),
                cell(&failure_text(f))
            );
        }
    }
    if !s.interventions.is_empty() {
        out.push_str("\n### Interventions and notices\n\n");
        for r in &s.interventions {
            let detail = [r.outcome.as_deref(), r.message.as_deref()]
                .into_iter()
                .flatten()
                .map(cell)
                .collect::<Vec<_>>()
                .join(": ");
            let _ = writeln!(out, "- {} {}: {detail}", r.ts.format("%H:%M:%SZ"), r.action);
        }
    }
}

/// The SQL each step ran, with its hash, as recorded (passwords redacted).
fn statements(out: &mut String, s: &SessionSummary) {
    let with_sql: Vec<(&StepRow, &AuditRecord)> = s
        .rows
        .iter()
        .filter_map(|r| r.sql.map(|rec| (r, rec)))
        .collect();
    if with_sql.is_empty() {
        return;
    }
    out.push_str("\n### Statements\n");
    for (r, rec) in with_sql {
        let sql = rec.sql.as_deref().unwrap_or("");
        let fence = crate::text::markdown_fence(sql);
        let fence = fence.as_str();
        let _ = writeln!(
            out,
            "\n`{}` ({}), SHA-256 `{}`:\n\n{fence}sql\n{}\n{fence}",
            r.step,
            r.kind.word(),
            rec.sql_sha256.as_deref().unwrap_or("-"),
            sql.trim_end()
        );
    }
}

fn time(rec: &AuditRecord) -> String {
    rec.ts.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Text safe inside a table cell: one line, inert (pipes included).
fn cell(s: &str) -> String {
    crate::text::markdown_text(s)
}
