//! One runbook session read back from its records: who, when, and what
//! happened to each step. The change record ([`super::markdown`]) renders it.

use std::collections::HashMap;

use super::export::one_line;
use super::record::{Action, AuditRecord};

/// Records grouped by session, sessions in order of first appearance.
pub(crate) fn sessions(records: &[AuditRecord]) -> Vec<Vec<&AuditRecord>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<&AuditRecord>> = Vec::new();
    for r in records {
        let i = *index.entry(r.session.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(r);
    }
    groups
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RowKind {
    Apply,
    Rollback,
    Skip,
    Pause,
    /// Only confirmations were recorded: the step never started.
    Confirm,
}

impl RowKind {
    pub(crate) fn word(self) -> &'static str {
        match self {
            RowKind::Apply => "apply",
            RowKind::Rollback => "rollback",
            RowKind::Skip => "skip",
            RowKind::Pause => "pause",
            RowKind::Confirm => "confirmation",
        }
    }
}

/// What happened to one step in one direction.
pub(crate) struct StepRow<'a> {
    pub(crate) phase: Option<&'a str>,
    pub(crate) step: &'a str,
    pub(crate) kind: RowKind,
    pub(crate) outcome: String,
    pub(crate) duration_ms: Option<u64>,
    pub(crate) attempts: u32,
    pub(crate) retries: u32,
    pub(crate) confirmations: Vec<&'a str>,
    pub(crate) notes: Vec<String>,
    pub(crate) sql: Option<&'a AuditRecord>,
}

impl<'a> StepRow<'a> {
    fn new(rec: &'a AuditRecord, kind: RowKind, outcome: &str) -> StepRow<'a> {
        StepRow {
            phase: rec.phase.as_deref(),
            step: rec.step.as_deref().unwrap_or("-"),
            kind,
            outcome: outcome.into(),
            duration_ms: None,
            attempts: 0,
            retries: 0,
            confirmations: Vec::new(),
            notes: Vec::new(),
            sql: None,
        }
    }
}

/// The facts of one session, gathered in one pass.
#[derive(Default)]
pub(crate) struct SessionSummary<'a> {
    pub(crate) start: Option<&'a AuditRecord>,
    pub(crate) end: Option<&'a AuditRecord>,
    pub(crate) guards: Vec<&'a AuditRecord>,
    pub(crate) rows: Vec<StepRow<'a>>,
    /// Confirmations not tied to a step (e.g. typing the database name).
    pub(crate) session_confirmations: Vec<&'a AuditRecord>,
    pub(crate) failures: Vec<(&'a AuditRecord, RowKind)>,
    pub(crate) interventions: Vec<&'a AuditRecord>,
    /// What went wrong or needed a decision, in order: failures, retries
    /// (yields included), skips, health breaches, blockers, replica lag,
    /// cancels, terminations, failed guards.
    pub(crate) issues: Vec<&'a AuditRecord>,
    /// The success records of dump backups (their message holds the id).
    pub(crate) backups: Vec<&'a AuditRecord>,
}

pub(crate) fn summarize<'a>(records: &[&'a AuditRecord]) -> SessionSummary<'a> {
    let mut s = SessionSummary::default();
    // The latest row of each step, for retries, notices and outcomes.
    let mut current: HashMap<&'a str, usize> = HashMap::new();
    let mut pending: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
    for &rec in records {
        let step = rec.step.as_deref().unwrap_or("-");
        let existing = current.get(step).copied();
        // A failed guard, or a question before a step (a step that may
        // outlast the change window: continued or stopped).
        let failed_guard = rec.action == Action::Guard
            && (rec.outcome.as_deref() == Some("fail") || rec.step.is_some());
        if failed_guard
            || matches!(
                rec.action,
                Action::StepFailure
                    | Action::RollbackFailure
                    | Action::Retry
                    | Action::Skip
                    | Action::Health
                    | Action::Blockers
                    | Action::ReplicaLag
                    | Action::Cancel
                    | Action::Terminate
            )
        {
            s.issues.push(rec);
        }
        if rec.action == Action::StepSuccess
            && rec.outcome.as_deref() == Some("verified")
            && rec
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("backup "))
        {
            s.backups.push(rec);
        }
        match rec.action {
            Action::SessionStart => s.start = s.start.or(Some(rec)),
            Action::SessionEnd => s.end = Some(rec),
            // A backfill's course: its start and end rows say what it did.
            Action::Progress | Action::Restore | Action::NotifyFailure => {}
            Action::Guard => s.guards.push(rec),
            Action::Confirmation => match &rec.step {
                None => s.session_confirmations.push(rec),
                Some(_) => pending
                    .entry(step)
                    .or_default()
                    .push(rec.outcome.as_deref().unwrap_or("?")),
            },
            Action::StepStart | Action::RollbackStart => {
                let kind = if rec.action == Action::StepStart {
                    RowKind::Apply
                } else {
                    RowKind::Rollback
                };
                let i = open_row(
                    &mut s,
                    &mut current,
                    &mut pending,
                    rec,
                    kind,
                    "started, no outcome recorded",
                );
                let row = &mut s.rows[i];
                row.attempts = rec.attempt.unwrap_or(1);
                row.sql = rec.sql.as_ref().map(|_| rec);
            }
            Action::StepSuccess
            | Action::StepFailure
            | Action::RollbackSuccess
            | Action::RollbackFailure => {
                let kind = if matches!(rec.action, Action::StepSuccess | Action::StepFailure) {
                    RowKind::Apply
                } else {
                    RowKind::Rollback
                };
                let i = match existing.filter(|&i| s.rows[i].kind == kind) {
                    Some(i) => i,
                    None => open_row(&mut s, &mut current, &mut pending, rec, kind, ""),
                };
                let failed = matches!(rec.action, Action::StepFailure | Action::RollbackFailure);
                let row = &mut s.rows[i];
                row.outcome = match (rec.action, &rec.outcome) {
                    (_, Some(o)) => o.clone(),
                    (Action::StepSuccess, None) if rec.rehearsal => "succeeded (rehearsal)".into(),
                    (Action::StepSuccess, None) => "succeeded".into(),
                    (Action::RollbackSuccess, None) => "rolled back".into(),
                    _ => "failed".into(),
                };
                row.duration_ms = rec.duration_ms.or(row.duration_ms);
                row.attempts = row
                    .attempts
                    .max(rec.attempt.unwrap_or(1))
                    .max(row.retries + 1);
                if let Some(n) = rec.rows {
                    row.notes.push(format!("{n} row(s)"));
                }
                if failed {
                    row.notes.push(failure_text(rec));
                    s.failures.push((rec, kind));
                }
            }
            Action::Retry => {
                let i = match existing {
                    Some(i) => i,
                    None => open_row(
                        &mut s,
                        &mut current,
                        &mut pending,
                        rec,
                        RowKind::Apply,
                        "retried, no outcome recorded",
                    ),
                };
                let row = &mut s.rows[i];
                row.retries += 1;
                row.attempts = row.attempts.max(rec.attempt.unwrap_or(row.retries) + 1);
            }
            Action::Skip => {
                let i = open_row(
                    &mut s,
                    &mut current,
                    &mut pending,
                    rec,
                    RowKind::Skip,
                    "skipped",
                );
                if let Some(reason) = &rec.message {
                    s.rows[i]
                        .notes
                        .push(format!("reason: {}", one_line(reason)));
                }
            }
            Action::PauseAcknowledged => {
                open_row(
                    &mut s,
                    &mut current,
                    &mut pending,
                    rec,
                    RowKind::Pause,
                    "acknowledged",
                );
            }
            Action::Notice => match existing {
                Some(i) => s.rows[i].notes.push(format!(
                    "{}: {}",
                    rec.outcome.as_deref().unwrap_or("notice"),
                    one_line(rec.message.as_deref().unwrap_or(""))
                )),
                None => s.interventions.push(rec),
            },
            Action::Cancel => {
                if let Some(i) = existing {
                    s.rows[i].notes.push("cancelled by the operator".into());
                }
                s.interventions.push(rec);
            }
            Action::Terminate
            | Action::Blockers
            | Action::Health
            | Action::ReplicaLag
            | Action::Approve
            | Action::Revoke => s.interventions.push(rec),
        }
    }
    // Confirmations for steps that never started: refused at the prompt.
    let mut leftover: Vec<(&str, Vec<&str>)> = pending.into_iter().collect();
    leftover.sort_by_key(|(step, _)| *step);
    for (step, confirmations) in leftover {
        let refused = confirmations.last().is_none_or(|c| *c != "accepted");
        s.rows.push(StepRow {
            phase: None,
            step,
            kind: RowKind::Confirm,
            outcome: if refused {
                "refused, not run".into()
            } else {
                "confirmed, not started".into()
            },
            duration_ms: None,
            attempts: 0,
            retries: 0,
            confirmations,
            notes: Vec::new(),
            sql: None,
        });
    }
    s
}

/// Starts a row for a step, taking the confirmations typed for it so far.
fn open_row<'a>(
    s: &mut SessionSummary<'a>,
    current: &mut HashMap<&'a str, usize>,
    pending: &mut HashMap<&'a str, Vec<&'a str>>,
    rec: &'a AuditRecord,
    kind: RowKind,
    outcome: &str,
) -> usize {
    let mut row = StepRow::new(rec, kind, outcome);
    if let Some(c) = pending.remove(row.step) {
        row.confirmations = c;
    }
    let step = row.step;
    s.rows.push(row);
    current.insert(step, s.rows.len() - 1);
    s.rows.len() - 1
}

pub(crate) fn failure_text(rec: &AuditRecord) -> String {
    let code = rec
        .sqlstate
        .as_deref()
        .map(|c| format!("SQLSTATE {c}: "))
        .unwrap_or_default();
    format!(
        "{code}{}",
        one_line(rec.message.as_deref().unwrap_or("no message recorded"))
    )
}

/// How the steps of a session ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) succeeded: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    pub(crate) rolled_back: usize,
}

impl SessionSummary<'_> {
    pub(crate) fn tally(&self) -> Tally {
        let mut t = Tally {
            failed: self.failures.len(),
            ..Tally::default()
        };
        for r in &self.rows {
            match r.kind {
                RowKind::Apply
                    if r.outcome.starts_with("succeeded")
                        || r.outcome == "applied"
                        || r.outcome == "passed"
                        || r.outcome == "verified" =>
                {
                    t.succeeded += 1
                }
                RowKind::Rollback if r.outcome == "rolled back" => t.rolled_back += 1,
                RowKind::Skip => t.skipped += 1,
                _ => {}
            }
        }
        t
    }

    pub(crate) fn has_rollback(&self) -> bool {
        self.rows.iter().any(|r| r.kind == RowKind::Rollback)
    }
}
