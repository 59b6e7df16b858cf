//! A health gate's SQL must be one read-only SELECT: it runs before every
//! step, on the executor's connection, and must change nothing.

use super::{Context, LockMode, StatementKind, analyze_sql};
use crate::diag::Diagnostic;
use crate::runbook::Runbook;

/// What is wrong with the runbook's `[[health]]` queries, each at its place.
pub fn gate_diagnostics(runbook: &Runbook) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for gate in &runbook.health {
        let statements = match analyze_sql(&gate.sql.text, &mut Context::default()) {
            Ok(s) => s,
            Err(e) => {
                diags.push(
                    Diagnostic::error(
                        gate.sql.location(e.offset),
                        format!("SQL syntax error in health gate {:?}: {}", gate.name, e.message),
                    )
                    .with_help("pgpilot parses SQL with PostgreSQL's own parser; fix the statement at this place"),
                );
                continue;
            }
        };
        let real: Vec<_> = statements
            .iter()
            .filter(|s| s.kind != StatementKind::EMPTY)
            .collect();
        let help = "a health gate is one SELECT that returns one number, e.g. SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
        match real.as_slice() {
            [one] => {
                // A data-modifying CTE or FOR UPDATE takes more than ACCESS SHARE.
                // pg_query sees the tables a statement writes, in CTEs too.
                let writes = pg_query::parse(&gate.sql.text, 0)
                    .map(|p| !p.dml_tables().is_empty() || !p.ddl_tables().is_empty())
                    .unwrap_or(true);
                let read_only = one.kind == StatementKind::SELECT_STMT
                    && !writes
                    && !one.destructive
                    && !one.opaque
                    && one.lock.is_none_or(|l| l <= LockMode::AccessShare);
                if !read_only {
                    diags.push(
                        Diagnostic::error(
                            gate.sql.location(one.start),
                            format!(
                                "health gate {:?} must be a read-only SELECT, not {}",
                                gate.name,
                                one.kind.as_str()
                            ),
                        )
                        .with_help(help),
                    );
                }
            }
            _ => diags.push(
                Diagnostic::error(
                    gate.sql.location(0),
                    format!(
                        "health gate {:?} has {} statements; it takes exactly one SELECT",
                        gate.name,
                        real.len()
                    ),
                )
                .with_help(help),
            ),
        }
    }
    diags
}
