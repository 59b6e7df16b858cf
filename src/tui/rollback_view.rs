//! What a step's rollback does, as the rollback screens show it: its
//! locks, its findings and its phrase, from the analysis of the rollback SQL.

use super::app::shown;
use crate::analysis::{StatementAnalysis, StepAnalysis};

/// A step's rollback, analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackView {
    /// The locks it takes, in plain words.
    pub analysis: Vec<String>,
    /// (rule, message, advice)
    pub findings: Vec<(String, String, String)>,
    /// The phrase it asks, when it is destructive.
    pub confirm: Option<String>,
    /// What it destroys, when it does.
    pub destroys: Option<String>,
}

impl RollbackView {
    pub fn of(a: &StepAnalysis) -> RollbackView {
        let destroys: Vec<String> = a
            .rollback
            .iter()
            .filter(|s| s.destructive)
            .map(|s| match &s.at_risk {
                Some(r) => r.phrase(),
                None => format!("a {} pgpilot cannot see into", s.kind),
            })
            .collect();
        let mut analysis = lock_lines(&a.rollback);
        if a.rollback.iter().any(|s| s.rewrites) {
            analysis.push("rewrites the table: time grows with its size, under its lock".into());
        }
        if a.rollback.iter().any(|s| !s.transactional) {
            analysis.push("cannot run in a transaction block: runs in autocommit".into());
        }
        // Names and phrases come from the runbook: shown as the screen shows text.
        RollbackView {
            analysis: analysis.iter().map(|l| shown(l)).collect(),
            findings: a
                .rollback
                .iter()
                .flat_map(|s| s.findings.iter())
                .map(|f| (shown(f.rule), shown(&f.message), shown(&f.advice)))
                .collect(),
            confirm: a.rollback_confirm.as_deref().map(shown),
            destroys: (!destroys.is_empty()).then(|| shown(&destroys.join(", "))),
        }
    }
}

/// Each lock the statements take, with what it blocks.
pub fn lock_lines(statements: &[StatementAnalysis]) -> Vec<String> {
    statements
        .iter()
        .flat_map(|s| s.locks.iter())
        .map(|l| {
            format!(
                "{} on {}: {}",
                l.mode.sql_name(),
                l.relation,
                l.mode.blocks()
            )
        })
        .collect()
}
