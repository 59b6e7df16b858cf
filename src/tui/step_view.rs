//! One step as the screens show it: its state in this session and on the
//! target, its SQL, analysis and phrase, and what its rollback restores.

use std::time::Duration;

use crate::analysis::StepAnalysis;
use crate::check::risk_reason;
use crate::runbook::{Risk, StepKind, format_duration};

use super::app::shown;
use super::rollback_view::{RollbackView, lock_lines};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running {
        attempt: u32,
        of: u32,
    },
    Applied,
    Passed,
    Acknowledged,
    Rehearsed,
    Failed(String),
    Skipped(String),
    RolledBack,
    /// A check or verify passed before this change step was rolled back.
    Stale(String),
    /// Found `in_progress` / `rolling_back` on the target: in doubt.
    InProgress,
    RollingBack,
}

impl StepState {
    pub fn label(&self) -> String {
        match self {
            StepState::Pending => "pending".into(),
            StepState::Running { attempt: 1, .. } => "running".into(),
            StepState::Running { attempt, of } => format!("retry {attempt}/{of}"),
            StepState::Applied => "applied".into(),
            StepState::Passed => "passed".into(),
            StepState::Acknowledged => "done".into(),
            StepState::Rehearsed => "rehearsed".into(),
            StepState::Failed(_) => "FAILED".into(),
            StepState::Skipped(_) => "skipped".into(),
            StepState::RolledBack => "rolled back".into(),
            StepState::Stale(_) => "stale".into(),
            StepState::InProgress => "in progress".into(),
            StepState::RollingBack => "rolling back".into(),
        }
    }
}

/// One step as the screens show it.
#[derive(Debug, Clone)]
pub struct StepView {
    pub phase: String,
    pub id: String,
    pub title: Option<String>,
    pub kind: StepKind,
    pub state: StepState,
    pub duration: Option<Duration>,
    pub sql: String,
    pub rollback: Option<String>,
    pub explain: Option<String>,
    pub instructions: Option<String>,
    pub risk: Risk,
    pub risk_reason: String,
    /// What the analysis says, line by line, in plain words.
    pub analysis: Vec<String>,
    pub findings: Vec<(String, String, String)>,
    pub confirm: Option<String>,
    /// Why a high-risk step asks no phrase.
    pub no_phrase: Option<&'static str>,
    pub settings: String,
    /// Lock-timeout (55P03) retries in this session.
    pub retries: u32,
    /// Yields of the lock queue (`max_queue_stall`) in this session.
    pub yields: u32,
    /// Something happened to it in this session (it ran, failed, was skipped
    /// or rolled back); a state found on the target alone is not that.
    pub touched: bool,
    /// The variable it captures, and those its SQL, rollback or expectation use.
    pub capture: Option<String>,
    pub uses: Vec<String>,
    /// The rollback's own analysis (what the rollback screens show).
    pub restores: Option<RollbackView>,
    /// A backfill's last progress in this session.
    pub progress: Option<BackfillProgress>,
}

/// What the last `EngineEvent::Progress` said of a backfill.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillProgress {
    pub done: u64,
    pub total_estimate: u64,
    pub rate_per_s: f64,
    pub eta: Option<Duration>,
    /// The next batch's size.
    pub batch_size: u64,
    /// Paused by the operator (`p`).
    pub paused: bool,
    /// Waiting by itself, and why ("standby lag").
    pub waiting: Option<String>,
}

impl StepView {
    pub(super) fn new(phase: &str, step: &crate::runbook::Step, a: &StepAnalysis) -> StepView {
        // Lock lines, findings and the phrase name the objects a step
        // touches, as their creators named them: shown as the SQL is.
        let mut analysis: Vec<String> =
            lock_lines(&a.statements).iter().map(|l| shown(l)).collect();
        if a.rewrites {
            analysis.push("rewrites the table: time grows with its size, under its lock".into());
        }
        if !a.transactional {
            analysis.push("cannot run in a transaction block: runs in autocommit".into());
        }
        let findings = a
            .findings()
            .map(|f| (f.rule.to_string(), shown(&f.message), shown(&f.advice)))
            .collect();
        let s = &step.settings;
        StepView {
            phase: phase.to_string(),
            id: step.id.clone(),
            title: step.title.as_deref().map(shown),
            kind: step.kind,
            state: StepState::Pending,
            duration: None,
            sql: step.sql().map(|s| shown(s.text.trim())).unwrap_or_default(),
            rollback: step.rollback.as_ref().map(|r| shown(r.text.trim())),
            explain: step.explain.as_deref().map(shown),
            instructions: step.instructions().map(shown),
            risk: a.risk,
            risk_reason: risk_reason(a),
            analysis,
            findings,
            confirm: a.confirm.as_deref().map(shown),
            no_phrase: crate::check::no_phrase_reason(a),
            settings: format!(
                "lock_timeout {} · {} retries · statement_timeout {}",
                format_duration(s.lock_timeout),
                s.lock_retries,
                format_duration(s.statement_timeout)
            ),
            retries: 0,
            yields: 0,
            touched: false,
            capture: step.capture.clone(),
            uses: super::truth::uses(step),
            restores: step.rollback.as_ref().map(|_| RollbackView::of(a)),
            progress: None,
        }
    }
}
