//! What stays on the terminal after the TUI leaves its screen: how the
//! session ended, each step that did something (with its duration and
//! retries), the totals, and where the audit log is. Without it, `q` would
//! leave the operator with an empty shell and no record in view.

use std::fmt::Write as _;
use std::path::Path;

use super::app::{App, SessionKind, StepState, human};
use crate::engine::Outcome;

/// The summary printed after the terminal is restored; `code` is the exit code.
pub fn summary(app: &App, outcome: Option<&Outcome>, code: u8, audit: &Path) -> String {
    let mut out = String::new();
    let what = match app.kind {
        SessionKind::Run => "run",
        SessionKind::Rehearsal => "rehearsal",
        SessionKind::Rollback => "rollback",
    };
    let _ = writeln!(
        out,
        "pgpilot {what} of {}: {} (exit {code})",
        safe(&app.runbook_id),
        outcome.map_or_else(|| "ended".to_string(), ended)
    );
    let done: Vec<_> = app
        .steps
        .iter()
        .filter(|s| s.touched || s.retries > 0 || s.yields > 0)
        .collect();
    let id_width = done.iter().map(|s| s.id.chars().count()).max().unwrap_or(0);
    let state_width = done
        .iter()
        .map(|s| s.state.label().chars().count())
        .max()
        .unwrap_or(0);
    for s in &done {
        let mut line = format!(
            "  {:<id_width$}  {:<state_width$}",
            safe(&s.id),
            s.state.label()
        );
        let took = s.duration.map(human).unwrap_or_default();
        let _ = write!(line, "  {took:>8}");
        if s.retries > 0 {
            let _ = write!(
                line,
                "  {} {}",
                s.retries,
                if s.retries == 1 { "retry" } else { "retries" }
            );
        }
        if s.yields > 0 {
            let _ = write!(
                line,
                "  {} {}",
                s.yields,
                if s.yields == 1 { "yield" } else { "yields" }
            );
        }
        match &s.state {
            StepState::Failed(m) => {
                let _ = write!(line, "  {}", safe(&crate::text::one_line(m)));
            }
            StepState::Skipped(r) => {
                let _ = write!(line, "  ({})", safe(&crate::text::one_line(r)));
            }
            _ => {}
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    // What this session did; states found on the target are the earlier
    // runs' work, counted apart.
    let count = |wanted: &dyn Fn(&StepState) -> bool| {
        app.steps
            .iter()
            .filter(|s| s.touched && wanted(&s.state))
            .count()
    };
    let totals = [
        (
            count(&|s| matches!(s, StepState::Applied | StepState::Rehearsed)),
            "applied",
        ),
        (count(&|s| matches!(s, StepState::Passed)), "passed"),
        (
            count(&|s| matches!(s, StepState::Acknowledged)),
            "acknowledged",
        ),
        (count(&|s| matches!(s, StepState::Failed(_))), "failed"),
        (
            count(&|s| matches!(s, StepState::RolledBack)),
            "rolled back",
        ),
        (count(&|s| matches!(s, StepState::Skipped(_))), "skipped"),
        (
            app.steps.iter().filter(|s| !s.touched).count(),
            "not run in this session",
        ),
    ];
    let totals: Vec<String> = totals
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    let retries: u32 = app.steps.iter().map(|s| s.retries).sum();
    let _ = writeln!(out, "steps: {}", totals.join(", "));
    let _ = writeln!(out, "lock-timeout retries: {retries}");
    // Yields are retries too (they count against lock_retries), but of
    // another cause: said apart so that neither reads as the other.
    let yields: u32 = app.steps.iter().map(|s| s.yields).sum();
    if yields > 0 {
        let _ = writeln!(out, "queue yields (max_queue_stall): {yields}");
    }
    let _ = writeln!(out, "audit log: {}", safe(&audit.display().to_string()));
    out
}

/// How the session ended, in words; server text made safe.
fn ended(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done => "done".into(),
        Outcome::Failed(m) => format!("failed: {}", safe(&crate::text::one_line(m))),
        Outcome::Refused(m) => format!("refused: {}", safe(&crate::text::one_line(m))),
        Outcome::Interrupted => "interrupted: the running step was cancelled".into(),
    }
}

/// Text from a runbook or the server as the terminal gets it: passwords
/// masked, control characters visible.
fn safe(text: &str) -> String {
    crate::text::for_terminal(&crate::text::redact(text)).into_owned()
}
