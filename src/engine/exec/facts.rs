//! The runbook facts the change record needs (`audit::change`), taken from
//! the runbook as this session runs it and written with its start record.

use super::Exec;
use crate::audit::change::ChangeFacts;
use crate::runbook::StepKind;

impl Exec<'_> {
    pub(super) fn change_facts(&self) -> ChangeFacts {
        let rb = &self.s.runbook;
        let folder = rb.path().parent();
        let shown = |p: &std::path::Path| {
            folder
                .and_then(|f| p.strip_prefix(f).ok())
                .unwrap_or(p)
                .display()
                .to_string()
        };
        let mut files: Vec<String> = Vec::new();
        let sql_files = rb
            .steps()
            .flat_map(|(_, s)| s.sql().into_iter().chain(s.rollback.as_ref()))
            .map(|sql| sql.path())
            .filter(|p| *p != rb.path());
        for p in sql_files {
            let name = shown(p);
            if !files.contains(&name) {
                files.push(name);
            }
        }
        let ids = |kind: StepKind| {
            rb.steps()
                .filter(|(_, s)| s.kind == kind)
                .map(|(_, s)| s.id.clone())
                .collect()
        };
        let computed = self.s.analysis.risk;
        let effective = rb.declared_risk.map_or(computed, |d| d.max(computed));
        ChangeFacts {
            title: Some(rb.title.clone()).filter(|t| !t.is_empty()),
            description: rb.description.clone(),
            declared_risk: rb.declared_risk.map(|r| r.as_str().to_string()),
            effective_risk: Some(effective.as_str().to_string()),
            runbook_file: Some(rb.path().display().to_string()),
            files,
            checks: ids(StepKind::Check),
            verifies: ids(StepKind::Verify),
        }
    }
}
