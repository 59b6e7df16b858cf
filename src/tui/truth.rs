//! The step list and the captured values as the target and the engine say
//! they are: states found when the session opens, a check's pass gone stale
//! when what it verified is rolled back, a kept value beside a new one.

use crate::engine::state::Status;
use crate::engine::truth::{KnownState, label};
use crate::runbook::{Expect, Step, StepKind, vars};

use super::app::{App, LogLevel, StepState, shown};

/// A variable's value as the steps after its capture use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedValue {
    /// The value later steps use.
    pub value: String,
    /// Captured by this session (else on an earlier run, from the target).
    pub this_run: bool,
    /// A check ran again and captured this other value; `value` is kept
    /// because `because` was applied with it.
    pub fresh: Option<(String, String)>,
}

/// The variables a step's SQL, rollback or expectation use, in order, once each.
pub fn uses(step: &Step) -> Vec<String> {
    let mut texts: Vec<&str> = Vec::new();
    if let Some(sql) = step.sql() {
        texts.push(&sql.text);
    }
    if let Some(rb) = &step.rollback {
        texts.push(&rb.text);
    }
    if let Some(Expect::Scalar(s)) = &step.expect {
        texts.push(s);
    }
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        for r in vars::references(t).unwrap_or_default() {
            if !out.contains(&r.name) {
                out.push(r.name);
            }
        }
    }
    out
}

/// How a state found on the target is shown in the step list.
fn shown_state(k: &KnownState) -> StepState {
    match k.status {
        Status::Applied => StepState::Applied,
        Status::Passed => match &k.stale_after {
            Some(undone) => StepState::Stale(undone.clone()),
            None => StepState::Passed,
        },
        Status::Acknowledged => StepState::Acknowledged,
        Status::Skipped => StepState::Skipped("skipped on an earlier run".into()),
        Status::InProgress => StepState::InProgress,
        Status::RollingBack => StepState::RollingBack,
        Status::RolledBack => StepState::RolledBack,
        Status::Failed => StepState::Failed(format!(
            "failed on an earlier run ({} by {})",
            shown(&k.at),
            shown(&k.operator)
        )),
    }
}

impl App {
    /// What `pgpilot.step_state` says, before anything runs.
    pub fn on_states(&mut self, states: Vec<KnownState>) {
        if states.is_empty() {
            return;
        }
        let mut said = Vec::new();
        for k in &states {
            let stale = k.stale_after.is_some();
            said.push(format!("{} {}", k.step, label(k.status, stale)));
            if let Some(s) = self.step_mut(&k.step) {
                s.state = shown_state(k);
            }
            for (name, value) in &k.captured {
                self.captured.insert(
                    name.clone(),
                    CapturedValue {
                        value: shown(value),
                        this_run: false,
                        fresh: None,
                    },
                );
            }
        }
        self.log(
            LogLevel::Info,
            format!("on this target: {}", said.join(", ")),
        );
    }

    /// A step's capture as this session got it. A value kept beside a new
    /// one (see `on_recaptured`) stays as that says.
    pub(super) fn captured_now(&mut self, name: &str, value: &str) {
        let entry = self
            .captured
            .entry(name.to_string())
            .or_insert_with(|| CapturedValue {
                value: String::new(),
                this_run: true,
                fresh: None,
            });
        if entry.fresh.is_none() {
            entry.value = shown(value);
            entry.this_run = true;
        }
    }

    pub(super) fn on_recaptured(
        &mut self,
        step: &str,
        name: String,
        kept: String,
        fresh: String,
        because: String,
    ) {
        self.log(
            LogLevel::Warn,
            format!(
                "[{step}] {{{{{name}}}}}: this run captured {fresh:?}, but later steps use {kept:?}, captured on an earlier run: {because} was applied with it"
            ),
        );
        self.captured.insert(
            name,
            CapturedValue {
                value: shown(&kept),
                this_run: false,
                fresh: Some((shown(&fresh), shown(&because))),
            },
        );
    }

    /// `undone` was rolled back: the passes of the checks after it are stale.
    pub(super) fn stale_after(&mut self, undone: &str) {
        let Some(at) = self.steps.iter().position(|s| s.id == undone) else {
            return;
        };
        for s in self.steps.iter_mut().skip(at + 1) {
            if matches!(s.kind, StepKind::Check | StepKind::Verify) && s.state == StepState::Passed
            {
                s.state = StepState::Stale(undone.to_string());
            }
        }
    }
}
