//! What the target says of each step when a session opens, as the screens
//! show it: its status from `pgpilot.step_state`, whether a check's pass is
//! stale (what it verified was rolled back after it), and the values it
//! captured. Pure: `status` and the engine's opening event share it.

use std::collections::HashMap;

use super::state::{Status, StepState};
use crate::runbook::{Runbook, StepKind};

/// One step's state on the target, as found when the session opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownState {
    pub step: String,
    pub status: Status,
    /// A check or verify that passed before this (earlier) change or backup
    /// step was rolled back: what it verified is gone, its pass is stale.
    pub stale_after: Option<String>,
    /// The values it captured (`capture = "name"`), as stored.
    pub captured: Vec<(String, String)>,
    /// When it was written (UTC) and by whom.
    pub at: String,
    pub operator: String,
}

/// The stored captures of a state row (`{"name": "value"}`).
pub fn captured_values(st: &StepState) -> Vec<(String, String)> {
    st.captured
        .as_deref()
        .and_then(|c| serde_json::from_str::<HashMap<String, String>>(c).ok())
        .map(|m| {
            let mut v: Vec<(String, String)> = m.into_iter().collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

/// For each check or verify step whose pass is stale: the change or backup
/// step before it (in runbook order) that was rolled back after it passed,
/// the nearest such one.
pub fn stale_checks(
    runbook: &Runbook,
    states: &HashMap<String, StepState>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let steps: Vec<_> = runbook.steps().map(|(_, s)| s).collect();
    for (i, check) in steps.iter().enumerate() {
        if !matches!(check.kind, StepKind::Check | StepKind::Verify) {
            continue;
        }
        let Some(passed) = states.get(&check.id).filter(|s| s.status == Status::Passed) else {
            continue;
        };
        let undone = steps[..i].iter().rev().find(|earlier| {
            earlier.kind.changes()
                && states.get(&earlier.id).is_some_and(|s| {
                    matches!(s.status, Status::RolledBack | Status::RollingBack)
                        && s.updated_us >= passed.updated_us
                })
        });
        if let Some(undone) = undone {
            out.insert(check.id.clone(), undone.id.clone());
        }
    }
    out
}

/// Every step the target has a state for, in runbook order.
pub fn known_states(runbook: &Runbook, states: &HashMap<String, StepState>) -> Vec<KnownState> {
    let stale = stale_checks(runbook, states);
    runbook
        .steps()
        .filter_map(|(_, step)| {
            let st = states.get(&step.id)?;
            Some(KnownState {
                step: step.id.clone(),
                status: st.status,
                stale_after: stale.get(&step.id).cloned(),
                captured: captured_values(st),
                at: st.updated_at.clone(),
                operator: st.operator.clone(),
            })
        })
        .collect()
}

/// The one word (or two) a state is shown by.
pub fn label(status: Status, stale: bool) -> &'static str {
    match (status, stale) {
        (Status::Passed, true) => "stale",
        (Status::Applied, _) => "applied",
        (Status::Passed, _) => "passed",
        (Status::Acknowledged, _) => "acknowledged",
        (Status::Skipped, _) => "skipped",
        (Status::InProgress, _) => "in progress",
        (Status::RollingBack, _) => "rolling back",
        (Status::RolledBack, _) => "rolled back",
        (Status::Failed, _) => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook() -> Runbook {
        let text = "[runbook]\nid = \"r\"\ntitle = \"T\"\n[[phase]]\nid = \"p\"\n\
            [[phase.step]]\nid = \"pre\"\nkind = \"check\"\nsql = \"SELECT 1\"\n\
            [[phase.step]]\nid = \"add\"\nkind = \"change\"\nsql = \"CREATE TABLE t (a int)\"\nrollback = \"DROP TABLE t\"\n\
            [[phase.step]]\nid = \"verify\"\nkind = \"verify\"\nsql = \"SELECT 1\"\n";
        crate::runbook::parse_str(std::path::Path::new("t.toml"), text.into())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn st(step: &str, status: Status, us: i64) -> (String, StepState) {
        (
            step.into(),
            StepState {
                step: step.into(),
                status,
                step_sha256: String::new(),
                operator: "op".into(),
                role: String::new(),
                client_host: String::new(),
                captured: None,
                rows: None,
                duration_ms: None,
                updated_at: String::new(),
                updated_us: us,
                cursor: None,
                rows_done: None,
                rows_total: None,
                backup: None,
            },
        )
    }

    #[test]
    fn a_verify_is_stale_once_what_it_verified_is_rolled_back_after_it() {
        let rb = runbook();
        let states: HashMap<_, _> = [
            st("pre", Status::Passed, 1),
            st("add", Status::RolledBack, 30),
            st("verify", Status::Passed, 20),
        ]
        .into();
        let stale = stale_checks(&rb, &states);
        // The precheck ran before the change: rolling it back stales nothing of it.
        assert_eq!(stale, HashMap::from([("verify".into(), "add".into())]));
        let known = known_states(&rb, &states);
        assert_eq!(known.len(), 3);
        assert_eq!(
            label(known[2].status, known[2].stale_after.is_some()),
            "stale"
        );
    }

    #[test]
    fn a_verify_that_passed_again_after_the_rollback_is_not_stale() {
        let states: HashMap<_, _> = [
            st("add", Status::RolledBack, 30),
            st("verify", Status::Passed, 40),
        ]
        .into();
        assert!(stale_checks(&runbook(), &states).is_empty());
    }
}
