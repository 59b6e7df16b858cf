//! The backup rule (`backup-before-data-loss`): a step that removes data
//! (DROP TABLE, DROP COLUMN, TRUNCATE, DELETE, a column type change) must
//! come after a backup of each table it removes data from: a dump backup
//! step of it, or an earlier step whose SQL copies it (`CREATE TABLE … AS
//! SELECT … FROM t`, `INSERT INTO … SELECT … FROM t`), unless the step
//! says `no_backup = "REASON"`. `check` warns; a production run refuses.
//! UPDATE (backfills included) is left to its rollback: it overwrites
//! values a rollback can put back, and holding every UPDATE to a dump would
//! teach people to write `no_backup` without reading it.
//!
//! A rule of the whole runbook (it needs the steps before), so it is not
//! one of the statement findings in [`super::RULES`].

use super::{LockMode, RelationName, RunbookAnalysis, StatementKind};
use crate::diag::Location;
use crate::runbook::{Runbook, StepKind, TableName};

/// The rule's id, as `check` and the refusal show it.
pub const BACKUP_RULE_ID: &str = "backup-before-data-loss";

/// What pgpilot says to do about a finding of the rule.
pub const BACKUP_RULE_ADVICE: &str = "add a backup step before it (kind = \"backup\", dump = { tables = [\"…\"] }), or say why none is needed with no_backup = \"REASON\" on the step";

/// The verbs (see `AtRisk`) of statements that remove data.
const REMOVES: [&str; 5] = [
    "drop table",
    "drop column",
    "retype column",
    "delete from",
    "truncate",
];

/// A table a step removes data from with no backup before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub step: String,
    pub table: String,
    /// The statement's verb: "drop table", "delete from", …
    pub what: &'static str,
    pub at: Location,
}

impl Uncovered {
    pub fn message(&self) -> String {
        format!(
            "{BACKUP_RULE_ID}: step {} removes data of {} ({}) and no earlier backup step covers it",
            self.step, self.table, self.what
        )
    }
}

/// A table a backup covers: schema (when named) and name.
struct Covered {
    schema: Option<String>,
    name: String,
}

impl Covered {
    fn of_relation(r: &RelationName) -> Covered {
        Covered {
            schema: r.schema().map(str::to_string),
            name: r.name().to_string(),
        }
    }

    fn of_table(t: &TableName) -> Covered {
        Covered {
            schema: t.schema.clone(),
            name: t.name.clone(),
        }
    }

    /// The same table when the names match and the schemas do or one is
    /// left to the search path.
    fn covers(&self, r: &RelationName) -> bool {
        self.name == r.name()
            && match (&self.schema, r.schema()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Every table a step removes data from that no earlier step backs up, in
/// runbook order.
pub fn uncovered(runbook: &Runbook, analysis: &RunbookAnalysis) -> Vec<Uncovered> {
    let mut covered: Vec<Covered> = Vec::new();
    let mut created: Vec<RelationName> = Vec::new();
    let mut out = Vec::new();
    for ((_, step), a) in runbook.steps().zip(&analysis.steps) {
        if let Some(d) = step.dump() {
            covered.extend(d.tables.iter().map(Covered::of_table));
            continue;
        }
        if matches!(step.kind, StepKind::Change | StepKind::Backfill) && step.no_backup.is_none() {
            for s in &a.statements {
                let Some(what) = s
                    .at_risk
                    .as_ref()
                    .and_then(|r| REMOVES.iter().find(|v| **v == r.verb))
                else {
                    continue;
                };
                // A change to varchar/text keeps every value (too long a value
                // fails the statement instead): nothing to lose.
                if *what == "retype column"
                    && s.findings.iter().any(|f| f.rule == "coercible-type-change")
                {
                    continue;
                }
                for l in s.locks.iter().filter(|l| {
                    matches!(l.mode, LockMode::AccessExclusive | LockMode::RowExclusive)
                }) {
                    let t = &l.relation;
                    // A table made earlier in the runbook holds nothing of value yet.
                    if created.contains(t)
                        || covered.iter().any(|c| c.covers(t))
                        || out
                            .iter()
                            .any(|u: &Uncovered| u.step == step.id && u.table == t.to_string())
                    {
                        continue;
                    }
                    out.push(Uncovered {
                        step: step.id.clone(),
                        table: t.to_string(),
                        what,
                        at: step.spans.sql.clone().unwrap_or_else(|| step.at.clone()),
                    });
                }
            }
        }
        // What this step copies covers the steps after it.
        for s in &a.statements {
            if s.kind == StatementKind::CREATE_TABLE_AS_STMT || s.kind == StatementKind::INSERT_STMT
            {
                covered.extend(
                    s.locks
                        .iter()
                        .filter(|l| l.mode == LockMode::AccessShare)
                        .map(|l| Covered::of_relation(&l.relation)),
                );
            }
            created.extend(s.creates.iter().cloned());
        }
    }
    out
}
