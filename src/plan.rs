//! `pgpilot plan`: every step with its analysis, risk and confirmation phrase,
//! as JSON for scripts (a contract, see DESIGN.md) or as text for a trainee.
//! This file holds the JSON document and what both forms are built from;
//! `text.rs` prints the words.

mod text;

use serde::Serialize;

use crate::analysis::{LockMode, StatementAnalysis};
use crate::check::Checked;
use crate::forecast::Forecast;
use crate::runbook::{ChangeType, Expect, Risk, Step, StepKind, format_duration};

pub use text::{to_text, to_text_with};

#[derive(Serialize)]
pub struct Plan<'a> {
    pub runbook: RunbookSummary<'a>,
    /// The `[[health]]` gates checked before each step.
    pub health: Vec<PlanGate<'a>>,
    /// The approvals a run needs (`governance::plan`).
    pub approvals: crate::governance::plan::PlanApprovals,
    pub steps: Vec<PlanStep<'a>>,
}

#[derive(Serialize)]
pub struct PlanGate<'a> {
    pub name: &'a str,
    pub sql: String,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Serialize)]
pub struct RunbookSummary<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub change_type: ChangeType,
    /// The runbook's risk: the computed one, or the declared one when higher.
    pub risk: Risk,
    pub computed_risk: Risk,
    pub declared_risk: Option<Risk>,
    pub ticket: Option<&'a str>,
    pub path: String,
    pub sha256: &'a str,
}

#[derive(Serialize)]
pub struct PlanStep<'a> {
    pub phase: &'a str,
    pub id: &'a str,
    pub kind: StepKind,
    pub title: Option<&'a str>,
    pub transactional: bool,
    pub destructive: bool,
    pub rewrites: bool,
    pub lock: Option<LockMode>,
    pub confirm: Option<&'a str>,
    /// Why a high-risk step asks no phrase (`null` when it asks one, or is not high risk).
    pub no_confirm_reason: Option<&'static str>,
    /// Variables the generated phrase contains: known only at run time.
    pub confirm_depends_on: &'a [String],
    pub risk: Risk,
    pub statements: &'a [StatementAnalysis],
    pub rollback: Option<String>,
    pub rollback_statements: &'a [StatementAnalysis],
    pub rollback_confirm: Option<&'a str>,
    pub expect: Option<&'a Expect>,
    pub capture: Option<&'a str>,
    pub instructions: Option<&'a str>,
    pub explain: Option<&'a str>,
    pub lock_timeout: String,
    pub statement_timeout: String,
    pub lock_retries: u32,
    /// `max_queue_stall`, or `null` when it is off ("0").
    pub max_queue_stall: Option<String>,
    /// Sizes, seconds and lock from the target (`plan --db`); `null` without a connection.
    pub forecast: Option<Forecast>,
    /// `max_replica_lag`, or `null` when the standbys are not watched.
    pub max_replica_lag: Option<String>,
    /// A backfill's walk (`null` for other steps).
    pub backfill: Option<BackfillPlan<'a>>,
}

/// How a backfill step walks its table, as `plan` shows it.
#[derive(Serialize)]
pub struct BackfillPlan<'a> {
    pub table: &'a str,
    pub key: &'a str,
    pub batch_size: u64,
    /// Adapted batch size target, e.g. "500ms" (`null`: the size stays fixed).
    pub target_batch_time: Option<String>,
    pub batch_pause: String,
    pub max_replica_lag: Option<String>,
    /// The rollback is walked in batches too (it uses $1 and $2).
    pub rollback_batched: bool,
}

impl<'a> BackfillPlan<'a> {
    fn of(step: &'a Step) -> Option<BackfillPlan<'a>> {
        let b = step.backfill.as_ref()?;
        Some(BackfillPlan {
            table: &b.table,
            key: &b.key,
            batch_size: b.batch_size,
            target_batch_time: b.target_batch_time.map(format_duration),
            batch_pause: format_duration(b.batch_pause),
            max_replica_lag: step.settings.max_replica_lag.map(format_duration),
            rollback_batched: step
                .rollback
                .as_ref()
                .is_some_and(|r| crate::analysis::uses_batch_bounds(&r.text)),
        })
    }
}

impl<'a> Plan<'a> {
    /// The plan with each step's forecast (`None`: no connection).
    pub fn with_forecasts(c: &'a Checked, forecasts: Option<&[Forecast]>) -> Plan<'a> {
        let mut plan = Plan::new(c);
        if let Some(f) = forecasts {
            for (step, f) in plan.steps.iter_mut().zip(f) {
                step.forecast = Some(f.clone());
            }
        }
        plan
    }

    pub fn new(c: &'a Checked) -> Plan<'a> {
        let r = &c.runbook;
        Plan {
            runbook: RunbookSummary {
                id: &r.id,
                title: &r.title,
                change_type: r.change_type,
                risk: c.effective_risk(),
                computed_risk: c.analysis.risk,
                declared_risk: r.declared_risk,
                ticket: r.ticket.as_deref(),
                path: r.path().display().to_string(),
                sha256: &r.sha256,
            },
            approvals: crate::governance::plan::PlanApprovals::new(c),
            health: r
                .health
                .iter()
                .map(|g| PlanGate {
                    name: &g.name,
                    sql: crate::text::redact(&g.sql.text),
                    max: g.max,
                    min: g.min,
                })
                .collect(),
            steps: r
                .steps()
                .zip(&c.analysis.steps)
                .map(|((phase, step), a)| PlanStep {
                    phase: &phase.id,
                    id: &step.id,
                    kind: step.kind,
                    title: step.title.as_deref(),
                    transactional: a.transactional,
                    destructive: a.destructive,
                    rewrites: a.rewrites,
                    lock: a.lock,
                    confirm: a.confirm.as_deref(),
                    no_confirm_reason: crate::check::no_phrase_reason(a),
                    confirm_depends_on: &a.confirm_depends_on,
                    risk: a.risk,
                    statements: &a.statements,
                    rollback: step.rollback.as_ref().map(|s| crate::text::redact(&s.text)),
                    rollback_statements: &a.rollback,
                    rollback_confirm: a.rollback_confirm.as_deref(),
                    expect: step.expect.as_ref(),
                    capture: step.capture.as_deref(),
                    instructions: step.instructions(),
                    explain: step.explain.as_deref(),
                    lock_timeout: format_duration(step.settings.lock_timeout),
                    statement_timeout: format_duration(step.settings.statement_timeout),
                    lock_retries: step.settings.lock_retries,
                    max_queue_stall: (!step.settings.max_queue_stall.is_zero())
                        .then(|| format_duration(step.settings.max_queue_stall)),
                    forecast: None,
                    max_replica_lag: step.settings.max_replica_lag.map(format_duration),
                    backfill: BackfillPlan::of(step),
                })
                .collect(),
        }
    }
}

pub fn to_json(c: &Checked) -> String {
    to_json_with(c, None)
}

/// The JSON plan with each step's forecast (`plan --db`).
pub fn to_json_with(c: &Checked, forecasts: Option<&[Forecast]>) -> String {
    serde_json::to_string_pretty(&Plan::with_forecasts(c, forecasts))
        .map(crate::text::json_safe)
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
