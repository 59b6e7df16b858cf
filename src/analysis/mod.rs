//! What each statement of a runbook does to a live database, from PostgreSQL's
//! own parser: locks, transactionality, rewrites, destruction, and findings
//! with the safer alternative.

pub mod backup_rule;
pub mod catalog;
mod classify;
mod health;
mod kind;
pub mod lock;
mod name;
mod params;
mod parse;
mod rules;
pub mod version;
mod work;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::diag::Diagnostic;
use crate::runbook::{Runbook, SqlText, Step, StepKind, vars};

pub use kind::StatementKind;
pub use lock::LockMode;
pub use name::{NameError, RelationName, quote_ident};
pub use params::{bound_params, uses_batch_bounds};
pub use parse::{SyntaxError, parse_statements};
pub use rules::{RULES, Rule, RuleId, finding};
pub use version::target_version;
pub use work::{TableWork, WorkKind};

/// A lock a statement takes on a relation that exists before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelationLock {
    pub relation: RelationName,
    pub mode: LockMode,
}

/// A rule's verdict on a statement, with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub message: String,
    pub advice: String,
    /// Errors fail `check`; warnings inform.
    pub severity: FindingSeverity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingSeverity {
    /// Advice worth knowing that needs no action (`check` passes quietly).
    Note,
    Warning,
    Error,
}

/// What a destructive statement puts at risk, for the confirmation phrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AtRisk {
    pub verb: &'static str,
    pub object: String,
}

impl AtRisk {
    pub fn phrase(&self) -> String {
        format!("{} {}", self.verb, self.object)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StatementAnalysis {
    pub sql: String,
    #[serde(rename = "type")]
    pub kind: StatementKind,
    pub relations: Vec<RelationName>,
    pub lock: Option<LockMode>,
    pub locks: Vec<RelationLock>,
    pub transactional: bool,
    pub destructive: bool,
    pub rewrites: bool,
    pub breaking: bool,
    /// pgpilot cannot see what the statement does (DO, CALL): it is treated as destructive.
    pub opaque: bool,
    pub at_risk: Option<AtRisk>,
    pub creates: Vec<RelationName>,
    /// The index a CREATE INDEX builds, for finding it in the catalog.
    #[serde(skip)]
    pub builds_index: Option<IndexBuild>,
    /// Tables it works through row by row while it holds its lock.
    #[serde(skip)]
    pub work: Vec<TableWork>,
    pub findings: Vec<Finding>,
    /// Column types it changes, for `check --db` to compare with the catalog.
    #[serde(skip)]
    pub retypes: Vec<catalog::Retype>,
    /// Objects it drops, for `check --db` to find their dependents.
    #[serde(skip)]
    pub drops: Vec<catalog::Dropped>,
    #[serde(skip)]
    pub start: usize,
    #[serde(skip)]
    pub end: usize,
}

/// A named index a CREATE INDEX builds: it lives in its table's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBuild {
    pub table: RelationName,
    /// The index's own name (no schema: it is the table's).
    pub name: String,
}

/// Facts a statement leaves for the statements after it in the same runbook.
/// Names compare by their exact parts: `"Orders"` is not `orders`, and
/// `"my.table"` is not table `table` in schema `my`.
#[derive(Debug, Default, Clone)]
pub struct Context {
    /// Relations created earlier in the runbook: locks on them hurt nobody.
    pub created: HashSet<RelationName>,
    /// CHECK (col IS NOT NULL) constraints: (table, constraint) → column.
    pub not_null_checks: HashMap<(RelationName, String), String>,
    /// (table, column) pairs with a validated NOT NULL check.
    pub validated_not_null: HashSet<(RelationName, String)>,
    /// Constraints added NOT VALID in the current step: (table, constraint).
    pub not_valid_in_step: HashSet<(RelationName, String)>,
    /// Opt-in rules turned on (`check --enable RULE`).
    pub enabled: BTreeSet<RuleId>,
    /// The PostgreSQL version the target runs, as far as pgpilot knows.
    pub version: version::TargetVersion,
}

/// Analyzes SQL text: statements with their facts, or the syntax error.
/// `{{variables}}` are replaced by same-length placeholders first
/// (see `vars::analysis_text`).
pub fn analyze_sql(text: &str, ctx: &mut Context) -> Result<Vec<StatementAnalysis>, SyntaxError> {
    analyze_as(text, &vars::analysis_text(text), ctx)
}

/// Analyzes SQL that will run as it is: values already substituted, so a
/// `{{` in it is data (inside a literal), not a reference.
fn analyze_resolved(text: &str, ctx: &mut Context) -> Result<Vec<StatementAnalysis>, SyntaxError> {
    analyze_as(text, text, ctx)
}

/// The statements of `parsable` (same length as `text`), shown as `text`.
fn analyze_as(
    text: &str,
    parsable: &str,
    ctx: &mut Context,
) -> Result<Vec<StatementAnalysis>, SyntaxError> {
    let parsed = parse_statements(parsable)?;
    Ok(parsed
        .into_iter()
        .map(|p| {
            // Shown by plan, check and the TUI: never with a password in it.
            let sql = crate::text::redact(&text[p.start..p.end]);
            let mut facts = match &p.node {
                Some(node) => classify::classify(node, ctx),
                None => classify::Facts::unknown(StatementKind::EMPTY),
            };
            classify::too_long(&parsable[p.start..p.end], &mut facts);
            let mut a = facts.into_analysis(sql, ctx);
            a.start = p.start;
            a.end = p.end;
            a
        })
        .collect())
}

/// The analysis of one step: its statements and the strongest of their facts.
#[derive(Debug, Clone, Serialize)]
pub struct StepAnalysis {
    pub statements: Vec<StatementAnalysis>,
    pub rollback: Vec<StatementAnalysis>,
    pub lock: Option<LockMode>,
    pub transactional: bool,
    pub destructive: bool,
    pub rewrites: bool,
    pub breaking: bool,
    pub confirm: Option<String>,
    pub rollback_destructive: bool,
    pub rollback_confirm: Option<String>,
    pub risk: crate::runbook::Risk,
    /// Variables the generated phrase names (an identifier from a capture):
    /// the final phrase is known only when the run gets there.
    pub confirm_depends_on: Vec<String>,
    /// The analysis context before this step, kept for steps with
    /// `{{variables}}`: what runs is analysed again with their values.
    #[serde(skip)]
    pub before: Option<Box<Context>>,
}

impl StepAnalysis {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.statements.iter().flat_map(|s| s.findings.iter())
    }
}

/// The whole runbook's analysis, step by step in runbook order.
#[derive(Debug, Clone)]
pub struct RunbookAnalysis {
    pub steps: Vec<StepAnalysis>,
    pub risk: crate::runbook::Risk,
    /// The PostgreSQL version the findings assume.
    pub version: version::TargetVersion,
}

impl RunbookAnalysis {
    pub fn step(&self, runbook: &Runbook, id: &str) -> Option<&StepAnalysis> {
        runbook
            .steps()
            .position(|(_, s)| s.id == id)
            .and_then(|i| self.steps.get(i))
    }
}

/// Analyzes every step; syntax errors become diagnostics at their place.
pub fn analyze_runbook(runbook: &Runbook) -> Result<RunbookAnalysis, Vec<Diagnostic>> {
    analyze_runbook_with(runbook, &BTreeSet::new())
}

/// Like [`analyze_runbook`], with opt-in rules turned on.
pub fn analyze_runbook_with(
    runbook: &Runbook,
    enabled: &BTreeSet<RuleId>,
) -> Result<RunbookAnalysis, Vec<Diagnostic>> {
    analyze_runbook_for(runbook, enabled, None)
}

/// Like [`analyze_runbook_with`], for the target version `known` when it is
/// known (see [`target_version`]). The runbook's `[lint] enable` rules are
/// on as well as `enabled`.
pub fn analyze_runbook_for(
    runbook: &Runbook,
    enabled: &BTreeSet<RuleId>,
    known: Option<version::TargetVersion>,
) -> Result<RunbookAnalysis, Vec<Diagnostic>> {
    let mut ctx = Context {
        enabled: enabled.union(&runbook.lint_enable).copied().collect(),
        version: target_version(runbook, known),
        ..Context::default()
    };
    let mut steps = Vec::new();
    let mut diags = Vec::new();
    let mut migration: Option<&str> = None;
    for (_, step) in runbook.steps() {
        // Each migration of a tool's folder ran at its own time: what an
        // earlier one created is an existing table now. What it validated
        // stays true (a validated CHECK still holds).
        if let Some(m) = step.migration.as_deref() {
            if migration.is_some_and(|prev| prev != m) {
                ctx.created.clear();
            }
            migration = Some(m);
        }
        match analyze_step(step, &mut ctx) {
            Ok(a) => steps.push(a),
            Err(d) => diags.push(d),
        }
    }
    diags.extend(health::gate_diagnostics(runbook));
    if !diags.is_empty() {
        return Err(diags);
    }
    let risk = steps
        .iter()
        .map(|s| s.risk)
        .max()
        .unwrap_or(crate::runbook::Risk::Low);
    Ok(RunbookAnalysis {
        steps,
        risk,
        version: ctx.version,
    })
}

fn syntax_diagnostic(sql: &SqlText, e: &SyntaxError, what: &str) -> Diagnostic {
    Diagnostic::error(
        sql.location(e.offset),
        format!("SQL syntax error in {what}: {}", e.message),
    )
    .with_help("pgpilot parses SQL with PostgreSQL's own parser; fix the statement at this place")
}

pub fn analyze_step(step: &Step, ctx: &mut Context) -> Result<StepAnalysis, Diagnostic> {
    let has_vars = step.sql().is_some_and(|s| s.text.contains("{{"))
        || step
            .rollback
            .as_ref()
            .is_some_and(|s| s.text.contains("{{"));
    // Only an identifier from a capture can change which relations a
    // statement touches, so only then does the re-analysis need the context
    // of earlier steps (created tables, validated checks); a literal or a
    // number cannot. Without it a relation created earlier in the runbook
    // counts as existing, so the re-analysis can only ask more, never less.
    // Copying it for every step with a value made `check` of a long runbook
    // quadratic.
    let names_from_values = [step.sql(), step.rollback.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|s| vars::references(&s.text).unwrap_or_default())
        .any(|r| r.form == vars::VarForm::Ident);
    let before = names_from_values.then(|| Box::new(ctx.clone()));
    // A step is one transaction: NOT VALID then VALIDATE within it gains nothing.
    ctx.not_valid_in_step.clear();
    let statements = match step.sql() {
        Some(sql) => {
            analyze_sql(&sql.text, ctx).map_err(|e| syntax_diagnostic(sql, &e, "the step"))?
        }
        None => Vec::new(),
    };
    // The rollback runs against the state after the step; its facts do not
    // carry into later steps.
    let rollback = match &step.rollback {
        Some(sql) => analyze_sql(&sql.text, &mut ctx.clone())
            .map_err(|e| syntax_diagnostic(sql, &e, "the rollback"))?,
        None => Vec::new(),
    };
    let mut a = summarize(step, statements, rollback);
    if has_vars {
        let refs = step
            .sql()
            .into_iter()
            .chain(step.rollback.as_ref())
            .flat_map(|s| {
                let refs = vars::references(&s.text).unwrap_or_default();
                refs.into_iter()
                    .map(|r| (s.text[r.start + 1..r.end - 1].to_string(), r.name))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        if step.confirm.is_none() {
            for (inner, name) in refs {
                // A placeholder shows as `{name}` (or `"{name:ident}"`) in a phrase.
                let quoted = format!("\"{inner}\"");
                let shown = format!("{{{{{name}}}}}");
                for phrase in [&mut a.confirm, &mut a.rollback_confirm]
                    .into_iter()
                    .flatten()
                {
                    if phrase.contains(&inner) {
                        *phrase = phrase.replace(&quoted, &shown).replace(&inner, &shown);
                        if !a.confirm_depends_on.contains(&name) {
                            a.confirm_depends_on.push(name.clone());
                        }
                    }
                }
            }
        }
        a.before = before;
    }
    Ok(a)
}

/// The analysis of what will actually run: the step's SQL and rollback with
/// the captured values in them, analysed again in the context the step had
/// in the plan. A value is one literal, identifier or number, so the
/// statements must be the planned ones in number and kind; anything else is
/// refused. Locks, destruction and the confirmation phrase come from this
/// analysis, since an identifier can change what a statement touches.
pub fn reanalyze(
    step: &Step,
    planned: &StepAnalysis,
    sql: Option<&str>,
    rollback: Option<&str>,
) -> Result<StepAnalysis, String> {
    let mut ctx = planned.before.as_deref().cloned().unwrap_or_default();
    let statements = match (sql, step.sql()) {
        (Some(t), _) => analyze_resolved(t, &mut ctx).map_err(|e| {
            format!(
                "with its values the step's SQL no longer parses: {}",
                e.message
            )
        })?,
        (None, Some(planned_sql)) => {
            // Only to bring the context to the state after the step.
            let _ = analyze_sql(&planned_sql.text, &mut ctx);
            planned.statements.clone()
        }
        (None, None) => Vec::new(),
    };
    let rollback_statements = match rollback {
        Some(t) => analyze_resolved(t, &mut ctx).map_err(|e| {
            format!(
                "with its values the rollback no longer parses: {}",
                e.message
            )
        })?,
        None => planned.rollback.clone(),
    };
    same_shape("the step", &planned.statements, &statements)?;
    same_shape("the rollback", &planned.rollback, &rollback_statements)?;
    Ok(summarize(step, statements, rollback_statements))
}

fn same_shape(
    what: &str,
    planned: &[StatementAnalysis],
    actual: &[StatementAnalysis],
) -> Result<(), String> {
    let kinds = |v: &[StatementAnalysis]| v.iter().map(|s| s.kind).collect::<Vec<_>>();
    let names = |v: &[StatementAnalysis]| {
        v.iter()
            .map(|s| s.kind.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if kinds(planned) != kinds(actual) {
        return Err(format!(
            "the captured values change {what}'s statements: planned {} ({}), would run {} ({}); refused",
            planned.len(),
            names(planned),
            actual.len(),
            names(actual)
        ));
    }
    Ok(())
}

/// A step's facts from its statements' facts.
fn summarize(
    step: &Step,
    statements: Vec<StatementAnalysis>,
    rollback: Vec<StatementAnalysis>,
) -> StepAnalysis {
    let lock = statements.iter().filter_map(|s| s.lock).max();
    let transactional =
        step.transaction != Some(false) && statements.iter().all(|s| s.transactional);
    let destructive = statements.iter().any(|s| s.destructive);
    let rewrites = statements.iter().any(|s| s.rewrites);
    let breaking = statements.iter().any(|s| s.breaking);
    // A destructive step always asks; `confirm` sets the phrase, and on a
    // step that is not destructive asks for it all the same.
    let confirm = match (&step.confirm, destructive) {
        (Some(phrase), _) => Some(phrase.clone()),
        (None, true) => Some(phrase_for(&statements, &step.id)),
        (None, false) => None,
    };
    let rollback_destructive = rollback.iter().any(|s| s.destructive);
    let rollback_confirm =
        rollback_destructive.then(|| format!("rollback {}", phrase_for(&rollback, &step.id)));
    let risk = if step.kind == StepKind::Pause {
        crate::runbook::Risk::Low
    } else {
        step_risk(&statements, transactional)
    };
    StepAnalysis {
        statements,
        rollback,
        lock,
        transactional,
        destructive,
        rewrites,
        breaking,
        confirm,
        rollback_destructive,
        rollback_confirm,
        risk,
        confirm_depends_on: Vec::new(),
        before: None,
    }
}

/// The phrase an operator types: what is at risk, in the statements' words.
fn phrase_for(statements: &[StatementAnalysis], step_id: &str) -> String {
    let mut seen = BTreeSet::new();
    let phrases: Vec<String> = statements
        .iter()
        .filter(|s| s.destructive)
        .map(|s| match &s.at_risk {
            Some(r) => r.phrase(),
            None => format!("run {step_id}"),
        })
        .filter(|p| seen.insert(p.clone()))
        .collect();
    if phrases.is_empty() {
        format!("run {step_id}")
    } else {
        phrases.join(", ")
    }
}

/// DESIGN.md's risk: high if destructive or breaking; medium if ACCESS
/// EXCLUSIVE on an existing table, a rewrite, or outside a transaction; low otherwise.
fn step_risk(statements: &[StatementAnalysis], transactional: bool) -> crate::runbook::Risk {
    use crate::runbook::Risk;
    if statements.iter().any(|s| s.destructive || s.breaking) {
        Risk::High
    } else if !transactional
        || statements
            .iter()
            .any(|s| s.rewrites || s.lock == Some(LockMode::AccessExclusive))
    {
        Risk::Medium
    } else {
        Risk::Low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze(sql: &str) -> Vec<StatementAnalysis> {
        analyze_sql(sql, &mut Context::default()).unwrap()
    }

    fn rules(a: &StatementAnalysis) -> Vec<&str> {
        a.findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn a_table_created_earlier_is_the_one_with_the_same_exact_name() {
        let a = analyze(
            r#"CREATE TABLE "a.b" (id int);
               ALTER TABLE a.b ADD COLUMN x int;
               ALTER TABLE "a.b" ADD COLUMN x int;
               CREATE TABLE "Orders" (id int);
               ALTER TABLE orders ADD COLUMN x int;
               ALTER TABLE "Orders" ADD COLUMN x int"#,
        );
        let locked = |i: usize| -> Vec<String> {
            a[i].locks.iter().map(|l| l.relation.to_string()).collect()
        };
        // Table `b` in schema `a`, and `orders`, already existed: their locks count.
        assert_eq!(locked(1), ["a.b"]);
        assert_eq!(locked(4), ["orders"]);
        // The tables the runbook created: nobody else can be holding them.
        assert!(locked(2).is_empty(), "{:?}", locked(2));
        assert!(locked(5).is_empty(), "{:?}", locked(5));
    }

    #[test]
    fn a_not_null_check_validated_on_another_table_does_not_cover_set_not_null() {
        let a = analyze(
            r#"ALTER TABLE "T" ADD CONSTRAINT x_nn CHECK (x IS NOT NULL) NOT VALID;
               ALTER TABLE t VALIDATE CONSTRAINT x_nn;
               ALTER TABLE "T" ALTER COLUMN x SET NOT NULL;
               ALTER TABLE "T" VALIDATE CONSTRAINT x_nn;
               ALTER TABLE "T" ALTER COLUMN x SET NOT NULL"#,
        );
        assert!(
            rules(&a[2]).contains(&"set-not-null"),
            "{:?}",
            a[2].findings
        );
        assert!(
            !rules(&a[4]).contains(&"set-not-null"),
            "{:?}",
            a[4].findings
        );
    }

    #[test]
    fn an_index_is_named_in_its_tables_schema_with_its_exact_name() {
        let a = analyze(r#"CREATE INDEX CONCURRENTLY "IdxUpper" ON "Sales"."Orders" (id)"#);
        assert_eq!(
            a[0].builds_index,
            Some(IndexBuild {
                table: RelationName::new(Some("Sales"), "Orders"),
                name: "IdxUpper".into(),
            })
        );
        assert_eq!(a[0].creates[0].to_string(), r#""Sales"."IdxUpper""#);
    }

    #[test]
    fn phrases_name_quoted_objects_in_their_sql_form() {
        let a = analyze(
            r#"DROP TABLE "my.table"; ALTER TABLE "Orders" DROP COLUMN "Total"; TRUNCATE public."Log", orders"#,
        );
        let phrases: Vec<String> = a
            .iter()
            .filter_map(|s| s.at_risk.as_ref().map(AtRisk::phrase))
            .collect();
        assert_eq!(
            phrases,
            [
                r#"drop table "my.table""#,
                r#"drop column "Orders"."Total""#,
                r#"truncate public."Log", orders"#,
            ]
        );
    }
}
