//! `pgpilot check`: a runbook read, analyzed, and held to the rules that need
//! both (transaction blocks, rollbacks for destructive steps, declared risk).

use std::path::Path;

use std::collections::BTreeSet;

use crate::analysis::version::{TargetVersion, VersionSource};
use crate::analysis::{
    FindingSeverity, RuleId, RunbookAnalysis, StepAnalysis, analyze_runbook_for,
};
use crate::diag::Diagnostic;
use crate::runbook::{Runbook, Step, StepKind};

/// A runbook that passed every check, with its analysis and the warnings worth showing.
pub struct Checked {
    pub runbook: Runbook,
    pub analysis: RunbookAnalysis,
    pub warnings: Vec<Diagnostic>,
}

impl Checked {
    /// The risk to treat the runbook with: the computed one, or the declared
    /// one when the author knows of more (a policy, a large table).
    pub fn effective_risk(&self) -> crate::runbook::Risk {
        self.runbook
            .declared_risk
            .map_or(self.analysis.risk, |d| d.max(self.analysis.risk))
    }
}

/// What `check` is told beyond the runbook itself.
#[derive(Default)]
pub struct CheckOptions<'a> {
    /// Opt-in rules turned on (`--enable`), besides the runbook's `[lint] enable`.
    pub enabled: BTreeSet<RuleId>,
    /// The target's version when known (the server's, or `--pg-version`):
    /// over the runbook's `[target] server_version`.
    pub version: Option<TargetVersion>,
    /// What the target itself says (`check --db`): table sizes, column
    /// types, dependents. Called on the analysis before it is judged.
    pub refine: Option<&'a Refine<'a>>,
}

/// What `check --db` does to an analysis with what the target says.
pub type Refine<'a> = dyn Fn(&Runbook, &mut RunbookAnalysis) + 'a;

/// Loads, analyzes and validates a runbook (or a `.sql` file or migration
/// folder, see `crate::migrations`); all errors at once where possible.
pub fn check_file(path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    check_file_with(path, &BTreeSet::new())
}

/// [`check_file`] with opt-in rules turned on.
pub fn check_file_with(
    path: &Path,
    enabled: &BTreeSet<RuleId>,
) -> Result<Checked, Vec<Diagnostic>> {
    check_file_opts(
        path,
        &CheckOptions {
            enabled: enabled.clone(),
            ..CheckOptions::default()
        },
    )
}

/// [`check_file`] with everything `check`'s flags can say.
pub fn check_file_opts(path: &Path, opts: &CheckOptions) -> Result<Checked, Vec<Diagnostic>> {
    check_file_versioned(path, opts).0
}

/// [`check_file_opts`], and the PostgreSQL version the findings assumed
/// (also when the check failed), when the runbook could be read.
pub fn check_file_versioned(
    path: &Path,
    opts: &CheckOptions,
) -> (Result<Checked, Vec<Diagnostic>>, Option<TargetVersion>) {
    let (runbook, diags) = match crate::migrations::load_source(path) {
        Ok(r) => r,
        Err(d) => return (Err(d), opts.version),
    };
    let version = crate::analysis::target_version(&runbook, opts.version);
    (check_loaded(runbook, diags, opts), Some(version))
}

/// Analyzes and validates a runbook already read.
pub fn check_runbook(
    runbook: Runbook,
    enabled: &BTreeSet<RuleId>,
) -> Result<Checked, Vec<Diagnostic>> {
    let opts = CheckOptions {
        enabled: enabled.clone(),
        ..CheckOptions::default()
    };
    check_loaded(runbook, Vec::new(), &opts)
}

/// The checks of a runbook read with `diags` already found while reading it
/// (a migration folder's warnings, e.g. CONCURRENTLY inside a transaction).
fn check_loaded(
    runbook: Runbook,
    mut diags: Vec<Diagnostic>,
    opts: &CheckOptions,
) -> Result<Checked, Vec<Diagnostic>> {
    let mut analysis = analyze_runbook_for(&runbook, &opts.enabled, opts.version)?;
    if let Some(refine) = opts.refine {
        refine(&runbook, &mut analysis);
    }
    if let Some((declared, at)) = &runbook.target.server_version
        && analysis.version.source != VersionSource::Runbook
        && analysis.version.major != *declared
    {
        diags.push(
            Diagnostic::warning(
                at.clone(),
                format!(
                    "[target] server_version = {declared}, but the findings assume PostgreSQL {} from {}",
                    analysis.version.major,
                    analysis.version.source.described()
                ),
            )
            .with_help("correct server_version to the version the target runs"),
        );
    }
    for ((_, step), a) in runbook.steps().zip(&analysis.steps) {
        check_step(step, a, &mut diags);
    }
    for u in crate::analysis::backup_rule::uncovered(&runbook, &analysis) {
        diags.push(
            Diagnostic::warning(u.at.clone(), u.message())
                .with_help(crate::analysis::backup_rule::BACKUP_RULE_ADVICE),
        );
    }
    if let Some(at) = runbook.notify.as_ref().and_then(|n| n.literal_at.as_ref()) {
        diags.push(
            Diagnostic::warning(
                at.clone(),
                "the webhook's URL is written in the runbook: the token it carries lives in the reviewed file",
            )
            .with_help("keep a literal webhook for a local receiver; for Slack or Teams say webhook_env = \"PGPILOT_WEBHOOK_URL\" (the URL from the environment) or webhook_file = \"…\" (a file kept out of review)"),
        );
    }
    if let (Some(declared), Some(at)) = (runbook.declared_risk, &runbook.declared_risk_at)
        && declared < analysis.risk
    {
        let why = runbook
            .steps()
            .zip(&analysis.steps)
            .find(|(_, a)| a.risk == analysis.risk)
            .map(|((_, s), a)| format!("step {} is {}", s.id, risk_reason(a)))
            .unwrap_or_default();
        diags.push(
            Diagnostic::error(
                at.clone(),
                format!(
                    "declared risk \"{}\" is lower than the computed risk \"{}\"",
                    declared.as_str(),
                    analysis.risk.as_str()
                ),
            )
            .with_help(format!(
                "{why}; declare risk = \"{}\" or make the step safer",
                analysis.risk.as_str()
            )),
        );
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(Diagnostic::is_error);
    if errors.is_empty() {
        Ok(Checked {
            runbook,
            analysis,
            warnings,
        })
    } else {
        Err(errors)
    }
}

/// Why a high-risk step asks no phrase, when it asks none: a phrase guards
/// what cannot come back (data, objects), and a step that is high risk only
/// because clients break (SET NOT NULL, a rename) loses nothing. A phrase asked on every breaking step would
/// teach operators to type phrases without reading them. The author can
/// still ask one with `confirm = "…"`.
pub fn no_phrase_reason(a: &StepAnalysis) -> Option<&'static str> {
    (a.risk == crate::runbook::Risk::High && a.confirm.is_none() && !a.destructive).then_some(
        "no phrase is asked: it breaks running clients but destroys no data (a phrase guards what cannot come back); give the step confirm = \"…\" to ask one",
    )
}

/// Why a step has its risk, in a few words, ready for a terminal: the
/// phrase names objects whose names their creators chose (control
/// characters included), so it is shown as `plan` shows the SQL.
pub fn risk_reason(a: &StepAnalysis) -> String {
    if let Some(s) = a.statements.iter().find(|s| s.destructive) {
        return match &s.at_risk {
            Some(r) => format!("destructive ({})", crate::text::for_terminal(&r.phrase())),
            None => format!("destructive ({} cannot be analyzed)", s.kind),
        };
    }
    if a.breaking {
        return "breaking for running clients".into();
    }
    if a.rewrites {
        return "rewriting a table".into();
    }
    if !a.transactional {
        return "running outside a transaction".into();
    }
    if a.lock == Some(crate::analysis::LockMode::AccessExclusive) {
        return "taking ACCESS EXCLUSIVE on an existing table".into();
    }
    "low risk".into()
}

fn check_step(step: &Step, a: &StepAnalysis, diags: &mut Vec<Diagnostic>) {
    let Some(sql) = step.sql() else { return };
    let at = |offset: usize| sql.location(offset);

    // A statement that cannot run in a transaction block stands alone.
    if a.statements.len() > 1 {
        for s in a.statements.iter().filter(|s| !s.transactional) {
            diags.push(
                Diagnostic::error(
                    at(s.start),
                    format!("{} cannot run inside a transaction block, so it must be the only statement of its step", first_words(&s.sql)),
                )
                .with_help("move the other statements of this step into steps of their own"),
            );
        }
    }
    if step.transaction == Some(true)
        && let Some(s) = a.statements.iter().find(|s| !s.transactional)
    {
        let place = step
            .spans
            .transaction
            .clone()
            .unwrap_or_else(|| at(s.start));
        diags.push(
            Diagnostic::error(
                place,
                format!(
                    "transaction = true, but {} cannot run inside a transaction block",
                    first_words(&s.sql)
                ),
            )
            .with_help("remove `transaction = true`; pgpilot runs this step in autocommit"),
        );
    }
    // `-- pgpilot: ignore RULE — reason` on the line before a statement.
    let mut prev_end = 0;
    let mut ignores = Vec::new();
    for s in &a.statements {
        let gap = sql.text.get(prev_end..s.start).unwrap_or("");
        ignores.push(crate::suppress::ignores_before(gap, prev_end));
        prev_end = s.end;
    }
    for (s, ignore) in a.statements.iter().zip(&ignores) {
        let Some(i) = ignore else { continue };
        for rule in &i.rules {
            if !s.findings.iter().any(|f| f.rule == rule.as_str()) {
                let mut d = Diagnostic::warning(
                    at(i.at),
                    format!("pgpilot: ignore {rule} matches no finding of the next statement"),
                )
                .with_help("remove the stale ignore, or name the rule the statement raises");
                d.rule = Some("unused-ignore");
                diags.push(d);
            }
        }
        if !i.has_reason {
            let mut d = Diagnostic::warning(at(i.at), "an ignore without a reason")
                .with_help("say why after a dash: -- pgpilot: ignore RULE — why it is safe here");
            d.rule = Some("ignore-without-reason");
            diags.push(d);
        }
    }
    // `ignore = ["RULE"]` on the step: each must match a finding of it.
    for rule in &step.ignore {
        if !a.findings().any(|f| f.rule == rule.as_str()) {
            let place = step.ignore_at.clone().unwrap_or_else(|| step.at.clone());
            let mut d = Diagnostic::warning(
                place,
                format!(
                    "ignore = [\"{rule}\"] matches no finding of step {}",
                    step.id
                ),
            )
            .with_help("remove the stale ignore, or name the rule the step raises");
            d.rule = Some("unused-ignore");
            diags.push(d);
        }
    }
    for level in [
        FindingSeverity::Error,
        FindingSeverity::Warning,
        FindingSeverity::Note,
    ] {
        for (s, ignore) in a.statements.iter().zip(&ignores) {
            let ignored = |rule: &str| {
                step.ignore.iter().any(|r| r == rule)
                    || ignore
                        .as_ref()
                        .is_some_and(|i| i.rules.iter().any(|r| r == rule))
            };
            for f in s
                .findings
                .iter()
                .filter(|f| f.severity == level && !ignored(f.rule))
            {
                let message = format!("{}: {}", f.rule, f.message);
                let d = match level {
                    FindingSeverity::Error => Diagnostic::error(at(s.start), message),
                    FindingSeverity::Warning => Diagnostic::warning(at(s.start), message),
                    FindingSeverity::Note => Diagnostic::note(at(s.start), message),
                };
                let mut d = d.with_help(f.advice.clone());
                d.rule = Some(f.rule);
                diags.push(d);
            }
        }
    }
    check_rollback(step, a, diags);
    if let Some(b) = &step.backfill {
        check_backfill(step, b, sql, a, diags);
    }
    match step.kind {
        StepKind::Check | StepKind::Verify => {
            if let Some(s) = a.statements.iter().find(|s| s.destructive) {
                diags.push(
                    Diagnostic::error(
                        at(s.start),
                        format!(
                            "a {} step must not change data, but {} is destructive",
                            step.kind.as_str(),
                            first_words(&s.sql)
                        ),
                    )
                    .with_help("make it a change step, with a rollback"),
                );
            }
        }
        StepKind::Change
            if a.destructive && step.rollback.is_none() && step.irreversible.is_none() =>
        {
            let what = a
                .statements
                .iter()
                .find_map(|s| s.at_risk.as_ref().map(|r| r.phrase()))
                .unwrap_or_else(|| "a statement pgpilot cannot analyze".into());
            diags.push(
                Diagnostic::error(step.spans.sql.clone().unwrap_or_else(|| step.at.clone()), format!("step {} is destructive ({what}) but has no rollback", step.id))
                    .with_help("add rollback = \"…\" that undoes it, or irreversible = \"why it cannot be undone\" (and a backup step before it)"),
            );
        }
        _ => {}
    }
}

/// A backfill's batch statement must use both batch bounds and touch the
/// table walked: a batch that ignores `$1`/`$2` would redo the whole table
/// once per batch.
fn check_backfill(
    step: &Step,
    b: &crate::runbook::Backfill,
    sql: &crate::runbook::SqlText,
    a: &StepAnalysis,
    diags: &mut Vec<Diagnostic>,
) {
    let place = step.spans.sql.clone().unwrap_or_else(|| step.at.clone());
    if !crate::analysis::uses_batch_bounds(&sql.text) {
        diags.push(
            Diagnostic::error(
                place.clone(),
                format!(
                    "backfill step {}'s sql does not use both $1 and $2",
                    step.id
                ),
            )
            .with_help(format!(
                "bound each batch by its first and last key, e.g. WHERE {key} BETWEEN $1 AND $2",
                key = b.key
            )),
        );
    }
    if a.statements.len() != 1 {
        diags.push(
            Diagnostic::error(
                place.clone(),
                format!(
                    "backfill step {}'s sql must be one statement, not {}",
                    step.id,
                    a.statements.len()
                ),
            )
            .with_help("run other statements in change steps of their own"),
        );
    }
    let walked = table_parts(&b.table);
    let touched = a.statements.iter().flat_map(|s| &s.relations).any(|r| {
        walked.as_ref().is_some_and(|(schema, name)| {
            r.name() == name
                && (schema.is_none() || r.schema().is_none() || r.schema() == schema.as_deref())
        })
    });
    if !touched {
        diags.push(
            Diagnostic::error(
                b.table_at.clone().unwrap_or(place),
                format!(
                    "backfill step {}: table {:?} is not among the relations its sql touches",
                    step.id, b.table
                ),
            )
            .with_help("name the table whose key the batches walk, the one the sql updates"),
        );
    }
}

/// `name` or `schema.name` as PostgreSQL reads an identifier: folded to
/// lower case unless double-quoted.
fn table_parts(table: &str) -> Option<(Option<String>, String)> {
    let tokens = pg_query::scan_tokens(table).ok()?;
    let parts: Vec<String> = tokens
        .iter()
        .filter_map(|t| table.get(t.start as usize..t.end as usize))
        .filter(|p| *p != ".")
        .map(
            |p| match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => p.to_lowercase(),
            },
        )
        .collect();
    match parts.as_slice() {
        [name] => Some((None, name.clone())),
        [schema, name] => Some((Some(schema.clone()), name.clone())),
        _ => None,
    }
}

/// A rollback is held to the same rules as the step: it runs under pressure,
/// the worst moment to find it cannot run.
fn check_rollback(step: &Step, a: &StepAnalysis, diags: &mut Vec<Diagnostic>) {
    let Some(rb) = &step.rollback else { return };
    if a.rollback.len() > 1 {
        for s in a.rollback.iter().filter(|s| !s.transactional) {
            diags.push(
                Diagnostic::error(
                    rb.location(s.start),
                    format!("{} in a rollback cannot run inside a transaction block, so it must be the rollback's only statement", first_words(&s.sql)),
                )
                .with_help("keep a CONCURRENTLY statement alone in its rollback; undo the rest in the rollback of another step"),
            );
        }
    }
    for s in &a.rollback {
        for f in s
            .findings
            .iter()
            .filter(|f| f.severity == FindingSeverity::Error)
        {
            let mut d = Diagnostic::error(
                rb.location(s.start),
                format!("{} in the rollback: {}", f.rule, f.message),
            )
            .with_help(f.advice.clone());
            d.rule = Some(f.rule);
            diags.push(d);
        }
    }
}

/// The first few words of a statement, for messages.
pub fn first_words(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().take(4).collect();
    let mut s = words.join(" ");
    if sql.split_whitespace().count() > 4 {
        s.push_str(" …");
    }
    s
}
