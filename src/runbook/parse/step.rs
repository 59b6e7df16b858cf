//! From TOML text to a [`Runbook`], with every problem reported at its place.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::diag::{BOM, Diagnostic, Location, SourceFile, nearest};
use crate::regular_file::{FileError, SOURCE_LIMIT, mib, read_regular};
use crate::runbook::toml_string::decode_offsets;
use crate::runbook::vars;
use crate::runbook::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    runbook: Option<Spanned<RawHeader>>,
    target: Option<RawTarget>,
    settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    phase: Vec<Spanned<RawPhase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    id: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    description: Option<String>,
    change_type: Option<Spanned<String>>,
    risk: Option<Spanned<String>>,
    ticket: Option<String>,
    sql_root: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    environments: Vec<String>,
    database: Option<String>,
    require_primary: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    lock_timeout: Option<Spanned<String>>,
    statement_timeout: Option<Spanned<String>>,
    lock_retries: Option<Spanned<i64>>,
    retry_backoff: Option<Spanned<String>>,
    long_transaction: Option<Spanned<String>>,
    on_blockers: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    id: Option<Spanned<String>>,
    title: Option<String>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so the per-step
// setting overrides are spelled out here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Option<Spanned<String>>,
    title: Option<String>,
    kind: Option<Spanned<String>>,
    sql: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    instructions: Option<Spanned<String>>,
    expect: Option<Spanned<RawExpect>>,
    capture: Option<Spanned<String>>,
    rollback: Option<Spanned<String>>,
    transaction: Option<Spanned<bool>>,
    confirm: Option<Spanned<String>>,
    explain: Option<String>,
    irreversible: Option<Spanned<String>>,
    lock_timeout: Option<Spanned<String>>,
    statement_timeout: Option<Spanned<String>>,
    lock_retries: Option<Spanned<i64>>,
    retry_backoff: Option<Spanned<String>>,
    long_transaction: Option<Spanned<String>>,
    on_blockers: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    rows: Option<Spanned<i64>>,
    scalar: Option<Spanned<ScalarValue>>,
    empty: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScalarValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl ScalarValue {
    fn into_text(self) -> String {
        match self {
            ScalarValue::Text(s) => s,
            ScalarValue::Integer(i) => i.to_string(),
            ScalarValue::Float(f) => f.to_string(),
            ScalarValue::Bool(b) => if b { "t" } else { "f" }.to_string(),
        }
    }
}

/// Reads and validates a runbook file and the SQL files it names.
pub fn load(path: &Path) -> Result<Runbook, Vec<Diagnostic>> {
    let bytes = read_regular(path, SOURCE_LIMIT).map_err(|e| {
        let help = match &e {
            FileError::Io(_) | FileError::NotRegular(_) => {
                "check the path; runbooks are TOML files such as runbooks/add-column.toml"
                    .to_string()
            }
            FileError::TooLarge { .. } => format!(
                "pgpilot reads runbooks of up to {}; split the change into several runbooks",
                mib(SOURCE_LIMIT)
            ),
            FileError::Replaced => "run the command again".to_string(),
        };
        vec![
            Diagnostic::error(
                Location::file(path),
                format!("cannot read the runbook: {e}"),
            )
            .with_help(help),
        ]
    })?;
    let text = text_of(path, bytes).map_err(|d| vec![d])?;
    parse_str(path, text)
}

/// The bytes of a runbook or SQL file as text, or a diagnostic saying why not.
fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    if bytes.contains(&0) {
        return Err(
            Diagnostic::error(Location::file(path), "this is a binary file, not text")
                .with_help("point pgpilot at the runbook's .toml file"),
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
        let file = SourceFile::new(path, prefix);
        Diagnostic::error(file.location(offset), "the file is not valid UTF-8 text")
            .with_help("save the file as UTF-8")
    })
}

/// Validates runbook text as if read from `path` (SQL files are still read relative to it).
pub fn parse_str(path: &Path, text: String) -> Result<Runbook, Vec<Diagnostic>> {
    let file = SourceFile::new(path, text);
    let mut p = Parser {
        file: file.clone(),
        diags: Vec::new(),
        hasher: Sha256::new(),
        sql_roots: Vec::new(),
    };
    p.hasher.update(file.text.as_bytes());
    if file.text.trim_start_matches(BOM).trim().is_empty() {
        return Err(vec![
            Diagnostic::error(Location::file(path), "the runbook is empty").with_help(
                "a runbook needs a [runbook] table with id and title, and at least one [[phase]] with a [[phase.step]]",
            ),
        ]);
    }
    let raw: RawFile = toml::from_str(&file.text).map_err(|e| vec![p.toml_error(&e)])?;
    let runbook = p.runbook(raw);
    let errors: Vec<Diagnostic> = p.diags.into_iter().filter(|d| d.is_error()).collect();
    match runbook {
        Some(r) if errors.is_empty() => Ok(r),
        _ => Err(errors),
    }
}

struct Parser {
    file: Arc<SourceFile>,
    diags: Vec<Diagnostic>,
    hasher: Sha256,
    /// The canonical folders a step's `file` may lie in: the runbook's own,
    /// and `sql_root` when declared.
    sql_roots: Vec<PathBuf>,
}

const TOP_KEYS: [&str; 4] = ["runbook", "target", "settings", "phase"];

impl Parser {
    fn at(&self, offset: usize) -> Location {
        self.file.location(offset)
    }

    fn error(&mut self, offset: usize, message: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::error(self.at(offset), message);
        d.help = help;
        self.diags.push(d);
    }

    fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let (message, help) = explain_toml_message(e.message(), &self.file.text, e.span());
        let mut d = Diagnostic::error(self.at(offset), message);
        d.help = help;
        d
    }

    fn runbook(&mut self, raw: RawFile) -> Option<Runbook> {
        let Some(header) = raw.runbook else {
            self.error(
                0,
                "missing the [runbook] table",
                Some(format!(
                    "start the file with\n    [runbook]\n    id = \"my-change\"\n    title = \"What it does\"\n  (top-level tables: {})",
                    TOP_KEYS.join(", ")
                )),
            );
            return None;
        };
        let header_at = header.span().start;
        let header = header.into_inner();
        let id = self.required_id(header.id, header_at, "runbook id", "[runbook]");
        let title = match header.title {
            Some(t) if !t.get_ref().trim().is_empty() => t.into_inner(),
            Some(t) => {
                self.error(
                    t.span().start,
                    "the runbook title is empty",
                    Some("say in a few words what the change does".into()),
                );
                String::new()
            }
            None => {
                self.error(
                    header_at,
                    "[runbook] has no title",
                    Some("add title = \"What the change does\"".into()),
                );
                String::new()
            }
        };
        let change_type = match header.change_type {
            None => ChangeType::Minor,
            Some(c) => self
                .choice(&c, &ChangeType::NAMES, "change_type", ChangeType::parse)
                .unwrap_or(ChangeType::Minor),
        };
        let (declared_risk, declared_risk_at) = match header.risk {
            None => (None, None),
            Some(r) => (
                self.choice(&r, &Risk::NAMES, "risk", Risk::parse),
                Some(self.at(r.span().start)),
            ),
        };
        let target = raw.target.map(|t| Target {
            environments: t.environments,
            database: t.database,
            require_primary: t.require_primary.unwrap_or(false),
        });
        let settings = match raw.settings {
            Some(s) => {
                let s = s.into_inner();
                self.settings(&Settings::default(), s)
            }
            None => Settings::default(),
        };
        let sql_root = self.sql_roots(header.sql_root.as_ref());
        let phases = self.phases(raw.phase, &settings);
        if phases.is_empty() && self.diags.iter().all(|d| !d.is_error()) {
            self.error(
                self.file.text.len(),
                "the runbook has no phases",
                Some("add at least one\n    [[phase]]\n    id = \"change\"\n    [[phase.step]]\n    id = \"…\"\n    kind = \"change\"\n    sql = \"…\"".into()),
            );
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Some(Runbook {
            file: self.file.clone(),
            sha256,
            id: id?,
            title,
            description: header.description,
            change_type,
            declared_risk,
            declared_risk_at,
            ticket: header.ticket,
            sql_root,
            target: target.unwrap_or_default(),
            settings,
            phases,
        })
    }

    fn required_id(
        &mut self,
        id: Option<Spanned<String>>,
        table_at: usize,
        what: &str,
        table: &str,
    ) -> Option<String> {
        let Some(id) = id else {
            self.error(
                table_at,
                format!("{table} has no id"),
                Some(format!(
                    "add id = \"…\": the {what}, letters, digits, '.', '_' and '-'"
                )),
            );
            return None;
        };
        let valid = !id.get_ref().is_empty()
            && id.get_ref().len() <= 63
            && id
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.error(
                id.span().start,
                format!("{what} {:?} is not a valid id", id.get_ref()),
                Some("use 1 to 63 letters, digits, '.', '_' or '-', e.g. \"add-column\"".into()),
            );
            return None;
        }
        Some(id.into_inner())
    }

    fn choice<T>(
        &mut self,
        value: &Spanned<String>,
        names: &[&str],
        key: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value.get_ref());
        if parsed.is_none() {
            let help = match nearest(value.get_ref(), names.iter().copied()) {
                Some(n) => format!(
                    "did you mean \"{n}\"? {key} is one of: {}",
                    names.join(", ")
                ),
                None => format!("{key} is one of: {}", names.join(", ")),
            };
            self.error(
                value.span().start,
                format!("{key} {:?} is not known", value.get_ref()),
                Some(help),
            );
        }
        parsed
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(message) => {
                self.error(value.span().start, format!("{key}: {message}"), None);
                None
            }
        }
    }

    fn settings(&mut self, base: &Settings, raw: RawSettings) -> Settings {
        let mut s = base.clone();
        if let Some(v) = &raw.lock_timeout
            && let Some(d) = self.duration(v, "lock_timeout")
        {
            if d.is_zero() {
                self.error(
                    v.span().start,
                    "lock_timeout must be more than 0",
                    Some("an unbounded lock wait queues every later query on the table behind the step; use e.g. \"2s\"".into()),
                );
            } else {
                s.lock_timeout = d;
            }
        }
        if let Some(v) = &raw.statement_timeout
            && let Some(d) = self.duration(v, "statement_timeout")
        {
            s.statement_timeout = d;
        }
        if let Some(v) = &raw.retry_backoff
            && let Some(d) = self.duration(v, "retry_backoff")
        {
            s.retry_backoff = d;
        }
        if let Some(v) = &raw.long_transaction
            && let Some(d) = self.duration(v, "long_transaction")
        {
            s.long_transaction = d;
        }
        if let Some(v) = &raw.lock_retries {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= 1000 => s.lock_retries = n,
                _ => self.error(
                    v.span().start,
                    format!("lock_retries = {} is out of range", v.get_ref()),
                    Some("use a whole number from 0 to 1000".into()),
                ),
            }
        }
        if let Some(v) = &raw.on_blockers
            && let Some(o) = self.choice(v, &OnBlockers::NAMES, "on_blockers", OnBlockers::parse)
        {
            s.on_blockers = o;
        }
        s
    }

    fn phases(&mut self, raw: Vec<Spanned<RawPhase>>, settings: &Settings) -> Vec<Phase> {
        let mut phase_ids: HashMap<String, Location> = HashMap::new();
        let mut step_ids: HashMap<String, Location> = HashMap::new();
        let mut captured: HashSet<String> = HashSet::new();
        let mut phases = Vec::new();
        for phase in raw {
            let at = phase.span().start;
            let phase = phase.into_inner();
            let id_at = phase.id.as_ref().map(|i| i.span().start).unwrap_or(at);
            let Some(id) = self.required_id(phase.id, at, "phase id", "[[phase]]") else {
                continue;
            };
            if let Some(first) = phase_ids.get(&id) {
                self.error(
                    id_at,
                    format!("phase id {id:?} is used twice"),
                    Some(format!(
                        "it is first used at {first}; phase ids must be unique"
                    )),
                );
            }
            phase_ids.insert(id.clone(), self.at(id_at));
            if phase.step.is_empty() {
                self.error(
                    at,
                    format!("phase {id:?} has no steps"),
                    Some("add a [[phase.step]] under it, or remove the phase".into()),
                );
            }
            let mut steps = Vec::new();
            for step in phase.step {
                if let Some(s) = self.step(step, settings, &mut step_ids, &mut captured) {
                    steps.push(s);
                }
            }
            phases.push(Phase {
                title: phase.title.unwrap_or_else(|| id.clone()),
                id,
                at: self.at(at),
                steps,
            });
        }
        phases
    }

    fn step(
        &mut self,
        raw: Spanned<RawStep>,
        base: &Settings,
        step_ids: &mut HashMap<String, Location>,
        captured: &mut HashSet<String>,
    ) -> Option<Step> {
        let at = raw.span().start;
        let mut raw = raw.into_inner();
        let id_at = raw.id.as_ref().map(|i| i.span().start).unwrap_or(at);
        let id = self.required_id(raw.id.take(), at, "step id", "[[phase.step]]");
        if let Some(id) = &id {
            if let Some(first) = step_ids.get(id) {
                self.error(
                    id_at,
                    format!("step id {id:?} is used twice"),
                    Some(format!(
                        "it is first used at {first}; step ids are unique within a runbook"
                    )),
                );
            } else {
                step_ids.insert(id.clone(), self.at(id_at));
            }
        }
        let kind = match &raw.kind {
            None => {
                self.error(
                    at,
                    "the step has no kind",
                    Some(format!(
                        "add kind = \"…\", one of: {}",
                        StepKind::NAMES.join(", ")
                    )),
                );
                None
            }
            Some(k) => self.choice(k, &StepKind::NAMES, "kind", StepKind::parse),
        };
        let kind = kind?;
        let mut spans = StepSpans {
            kind: raw.kind.as_ref().map(|k| self.at(k.span().start)),
            ..StepSpans::default()
        };

        let body = self.step_body(kind, &raw, at, &mut spans);
        if kind == StepKind::Pause {
            for (present, key) in [
                (raw.expect.is_some(), "expect"),
                (raw.capture.is_some(), "capture"),
                (raw.rollback.is_some(), "rollback"),
                (raw.transaction.is_some(), "transaction"),
                (raw.irreversible.is_some(), "irreversible"),
            ] {
                if present {
                    self.error(
                        at,
                        format!("a pause step cannot have {key}"),
                        Some("pause steps only show instructions and wait for the operator".into()),
                    );
                }
            }
        }
        if let Some(r) = &raw.rollback
            && matches!(kind, StepKind::Check | StepKind::Verify)
        {
            self.error(
                r.span().start,
                format!("a {} step cannot have a rollback", kind.as_str()),
                Some("only change and backup steps are rolled back; checks change nothing".into()),
            );
        }
        if let Some(i) = &raw.irreversible
            && kind != StepKind::Change
        {
            self.error(
                i.span().start,
                "irreversible is only for change steps",
                None,
            );
        }

        let expect_at = raw.expect_at();
        let expect = raw.expect.take().map(|e| {
            let e_at = e.span().start;
            (e_at, e.into_inner())
        });
        let expect = match expect {
            None => None,
            Some((e_at, e)) => self.expect(e_at, e),
        };

        // Variables: each {{name}} must be captured by an earlier step.
        let capture = raw
            .capture
            .as_ref()
            .map(|c| (c.span().start, c.get_ref().clone()));
        if let (Some(StepBody::Sql(sql)), Some(step_id)) = (&body, &id) {
            self.check_vars_in_sql(sql, captured, step_id);
        }
        if let Some(Expect::Scalar(s)) = &expect {
            self.check_vars_in_plain(s, expect_at, captured);
        }
        if let Some((c_at, name)) = &capture {
            if !vars::is_identifier(name) {
                self.error(
                    *c_at,
                    format!("capture name {name:?} is not a variable name"),
                    Some("use letters, digits and _, e.g. capture = \"rows_before\"".into()),
                );
            } else if !captured.insert(name.clone()) {
                self.error(
                    *c_at,
                    format!("variable {name:?} is already captured by an earlier step"),
                    Some("give this capture another name".into()),
                );
            }
        }
        let rollback = raw.rollback.as_ref().map(|r| {
            spans.rollback = Some(self.at(r.span().start));
            self.inline_sql(r)
        });
        if let (Some(rb), Some(step_id)) = (&rollback, &id) {
            if rb.text.trim().is_empty() {
                self.error(
                    raw.rollback.as_ref().map(|r| r.span().start).unwrap_or(at),
                    "the rollback is empty",
                    Some("write the SQL that undoes this step, or remove the key".into()),
                );
            }
            self.check_vars_in_sql(rb, captured, step_id);
        }
        spans.transaction = raw.transaction.as_ref().map(|t| self.at(t.span().start));

        let overrides = RawSettings {
            lock_timeout: raw.lock_timeout,
            statement_timeout: raw.statement_timeout,
            lock_retries: raw.lock_retries,
            retry_backoff: raw.retry_backoff,
            long_transaction: raw.long_transaction,
            on_blockers: raw.on_blockers,
        };
        let settings = self.settings(base, overrides);
        let file = raw.file.as_ref().map(|f| PathBuf::from(f.get_ref()));
        Some(Step {
            id: id?,
            title: raw.title,
            kind,
            at: self.at(at),
            body: body?,
            file,
            expect,
            capture: capture.map(|(_, n)| n),
            rollback,
            transaction: raw.transaction.map(|t| t.into_inner()),
            confirm: raw.confirm.map(|c| c.into_inner()),
            explain: raw.explain,
            irreversible: raw.irreversible.map(|i| i.into_inner()),
            settings,
            spans,
        })
    }

    fn step_body(
        &mut self,
        kind: StepKind,
        raw: &RawStep,
        at: usize,
        spans: &mut StepSpans,
    ) -> Option<StepBody> {
        if kind == StepKind::Pause {
            if let Some(s) = raw.sql.as_ref().or(raw.file.as_ref()) {
                self.error(s.span().start, "a pause step has no SQL", Some("pause steps show `instructions` and wait; put SQL in a check or change step".into()));
            }
            return match &raw.instructions {
                Some(i) if !i.get_ref().trim().is_empty() => {
                    Some(StepBody::Instructions(i.get_ref().clone()))
                }
                _ => {
                    self.error(
                        at,
                        "a pause step needs instructions",
                        Some(
                            "add instructions = \"What the operator does before continuing\""
                                .into(),
                        ),
                    );
                    None
                }
            };
        }
        if let Some(i) = &raw.instructions {
            self.error(
                i.span().start,
                format!(
                    "instructions are only for pause steps, not {} steps",
                    kind.as_str()
                ),
                Some("use explain = \"…\" to describe a step to trainees".into()),
            );
        }
        match (&raw.sql, &raw.file) {
            (Some(_), Some(f)) => {
                self.error(
                    f.span().start,
                    "a step has either sql or file, not both",
                    Some("keep one of them".into()),
                );
                None
            }
            (None, None) => {
                self.error(
                    at,
                    format!("the {} step has no SQL", kind.as_str()),
                    Some(
                        "add sql = \"…\" or file = \"sql/….sql\" (relative to the runbook)".into(),
                    ),
                );
                None
            }
            (Some(sql), None) => {
                spans.sql = Some(self.at(sql.span().start));
                if sql.get_ref().trim().is_empty() {
                    self.error(
                        sql.span().start,
                        "the step's sql is empty",
                        Some("write the statement(s) the step runs".into()),
                    );
                    return None;
                }
                Some(StepBody::Sql(self.inline_sql(sql)))
            }
            (None, Some(f)) => {
                spans.sql = Some(self.at(f.span().start));
                self.sql_file(f).map(StepBody::Sql)
            }
        }
    }

    fn inline_sql(&self, value: &Spanned<String>) -> SqlText {
        let span = value.span();
        let text = value.get_ref().clone();
        match decode_offsets(&self.file.text, span.start, span.end) {
            Some(map) if map.len() == text.len() => {
                SqlText::new(text, self.file.clone(), Some(map), span.start)
            }
            _ => SqlText::detached(text, self.file.clone(), span.start),
        }
    }

    /// The runbook's folder, as written (`.` for a bare file name).
    fn folder(&self) -> PathBuf {
        match self.file.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Sets where SQL files may lie: the runbook's folder, and the declared
    /// `sql_root`, both with every link resolved. Returns the canonical
    /// `sql_root`.
    fn sql_roots(&mut self, declared: Option<&Spanned<String>>) -> Option<PathBuf> {
        let folder = self.folder();
        if let Ok(own) = std::fs::canonicalize(&folder) {
            self.sql_roots.push(own);
        }
        let declared = declared?;
        let at = declared.span().start;
        let written = Path::new(declared.get_ref());
        if written.as_os_str().is_empty() || written.is_absolute() {
            self.error(
                at,
                format!("sql_root {:?} is not a folder relative to the runbook's folder", declared.get_ref()),
                Some("name the folder of the runbook's .sql files relative to the runbook, e.g. sql_root = \"../db/migrations\"".into()),
            );
            return None;
        }
        let shown = folder.join(written);
        let root = match std::fs::canonicalize(&shown) {
            Ok(r) => r,
            Err(e) => {
                self.error(
                    at,
                    format!("sql_root: cannot find the folder {}: {e}", shown.display()),
                    Some("sql_root is relative to the runbook's folder; check the name, or create the folder".into()),
                );
                return None;
            }
        };
        if !root.is_dir() {
            self.error(
                at,
                format!("sql_root: {} is not a folder", shown.display()),
                Some("name the folder that holds the runbook's .sql files".into()),
            );
            return None;
        }
        self.sql_roots.push(root.clone());
        Some(root)
    }

    /// Where a step's `file` is: the path as written (for messages) and the
    /// canonical path to read, which must lie below one of the SQL roots.
    fn sql_path(&self, name: &str) -> Result<(PathBuf, PathBuf), (String, String)> {
        let roots_help = "keep .sql files in the runbook's folder, or declare the folder that holds them with sql_root = \"…\" in [runbook] (a folder relative to the runbook's folder)";
        let written = Path::new(name);
        if written.is_absolute() {
            return Err((
                format!(
                    "file {name:?} is an absolute path; a step's file is relative to the runbook's folder"
                ),
                roots_help.to_string(),
            ));
        }
        let shown = self.folder().join(written);
        let real = std::fs::canonicalize(&shown).map_err(|e| {
            (
                format!("cannot read SQL file {}: {e}", shown.display()),
                "file is relative to the runbook's folder; check the name".to_string(),
            )
        })?;
        if !self.sql_roots.iter().any(|root| real.starts_with(root)) {
            let resolved = if real == shown {
                String::new()
            } else {
                format!(" (it resolves to {})", real.display())
            };
            return Err((
                format!(
                    "SQL file {} is outside the runbook's folder{}{resolved}",
                    shown.display(),
                    if self.sql_roots.len() > 1 {
                        " and its sql_root"
                    } else {
                        ""
                    },
                ),
                roots_help.to_string(),
            ));
        }
        Ok((shown, real))
    }

    fn sql_file(&mut self, f: &Spanned<String>) -> Option<SqlText> {
        let at = f.span().start;
        let (path, real) = match self.sql_path(f.get_ref()) {
            Ok(p) => p,
            Err((message, help)) => {
                self.error(at, message, Some(help));
                return None;
            }
        };
        let bytes = match read_regular(&real, SOURCE_LIMIT) {
            Ok(b) => b,
            Err(e) => {
                let help = match &e {
                    FileError::Io(_) => {
                        "file is relative to the runbook's folder; check the name".to_string()
                    }
                    FileError::NotRegular(_) => {
                        "name a .sql file: pgpilot reads only regular files".to_string()
                    }
                    FileError::TooLarge { .. } => format!(
                        "pgpilot reads SQL files of up to {}; split the statements over several steps",
                        mib(SOURCE_LIMIT)
                    ),
                    FileError::Replaced => "run the command again".to_string(),
                };
                self.error(
                    at,
                    format!("cannot read SQL file {}: {e}", path.display()),
                    Some(help),
                );
                return None;
            }
        };
        self.hasher.update(&bytes);
        match text_of(&path, bytes) {
            Err(d) => {
                self.diags.push(d);
                None
            }
            Ok(text) => {
                // A byte-order mark is no SQL; PostgreSQL's parser would
                // take it for a token. The source keeps it, so locations
                // are counted from the file's real start.
                let bom = if text.starts_with(BOM) {
                    BOM.len_utf8()
                } else {
                    0
                };
                let sql = text[bom..].to_string();
                if sql.trim().is_empty() {
                    self.diags.push(
                        Diagnostic::error(Location::file(&path), "the SQL file is empty")
                            .with_help(
                                "write the step's statements in it, or point file at another file",
                            ),
                    );
                    return None;
                }
                let source = SourceFile::new(path, text);
                Some(SqlText::new(sql, source, None, bom))
            }
        }
    }

    fn expect(&mut self, at: usize, e: RawExpect) -> Option<Expect> {
        let given = [e.rows.is_some(), e.scalar.is_some(), e.empty.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given != 1 {
            self.error(at, "expect takes exactly one of rows, scalar or empty", Some("e.g. expect = { rows = 0 }, expect = { scalar = \"42\" } or expect = { empty = true }".into()));
            return None;
        }
        if let Some(rows) = e.rows {
            return match u64::try_from(*rows.get_ref()) {
                Ok(n) => Some(Expect::Rows(n)),
                Err(_) => {
                    self.error(rows.span().start, "expect.rows cannot be negative", None);
                    None
                }
            };
        }
        if let Some(s) = e.scalar {
            return Some(Expect::Scalar(s.into_inner().into_text()));
        }
        e.empty.map(Expect::Empty)
    }

    fn check_vars_in_sql(&mut self, sql: &SqlText, captured: &HashSet<String>, step_id: &str) {
        // An unreadable statement is reported by the analysis at its place;
        // here only where each reference stands.
        let readable = pg_query::scan_tokens(&vars::placeholder_text(&sql.text)).is_ok();
        let found = if readable {
            vars::placements(&sql.text).map(|p| p.into_iter().map(|p| p.var).collect())
        } else {
            vars::references(&sql.text)
        };
        match found {
            Err(e) => {
                let mut d = Diagnostic::error(sql.location(e.offset), e.message);
                if let Some(h) = e.help {
                    d = d.with_help(h);
                }
                self.diags.push(d);
            }
            Ok(refs) => {
                for r in refs {
                    if !captured.contains(&r.name) {
                        self.diags.push(undefined_var(
                            sql.location(r.start),
                            &r.name,
                            step_id,
                            captured,
                        ));
                    }
                }
            }
        }
    }

    fn check_vars_in_plain(&mut self, text: &str, at: usize, captured: &HashSet<String>) {
        match vars::references(text) {
            Err(e) => self.error(at, e.message, None),
            Ok(refs) => {
                for r in refs {
                    if !captured.contains(&r.name) {
                        self.diags
                            .push(undefined_var(self.at(at), &r.name, "this", captured));
                    }
                }
            }
        }
    }
}

impl RawStep {
    fn expect_at(&self) -> usize {
        self.expect.as_ref().map(|e| e.span().start).unwrap_or(0)
    }
}

fn undefined_var(
    at: Location,
    name: &str,
    step_id: &str,
    captured: &HashSet<String>,
) -> Diagnostic {
    let help = match nearest(name, captured.iter().map(String::as_str)) {
        Some(n) => format!(
            "did you mean {{{{{n}}}}}? Variables come from capture = \"…\" on a step before {step_id}"
        ),
        None => {
            format!("add capture = \"{name}\" to a step before {step_id} that selects the value")
        }
    };
    Diagnostic::error(
        at,
        format!("variable {{{{{name}}}}} is not captured by any earlier step"),
    )
    .with_help(help)
}

/// Rewrites serde's and toml's messages into pgpilot's words, with a suggestion
/// for a misspelled key.
fn explain_toml_message(
    message: &str,
    text: &str,
    span: Option<std::ops::Range<usize>>,
) -> (String, Option<String>) {
    let message = message.trim().replace('\n', "; ");
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        let allowed: Vec<&str> = quoted.iter().skip(1).copied().collect();
        let table = span
            .map(|s| enclosing_table(text, s.start))
            .unwrap_or_default();
        let msg = if table.is_empty() {
            format!("unknown key `{key}`")
        } else {
            format!("unknown key `{key}` in {table}")
        };
        let help = match nearest(key, allowed.iter().copied()) {
            Some(n) => format!(
                "did you mean `{n}`? Keys allowed here: {}",
                allowed.join(", ")
            ),
            None if allowed.is_empty() => "remove it".to_string(),
            None => format!("keys allowed here: {}", allowed.join(", ")),
        };
        return (msg, Some(help));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or_default();
        return (
            format!("missing key `{key}`"),
            Some(format!("add {key} = …")),
        );
    }
    if message.starts_with("invalid type") {
        let message = message
            .replace("invalid type: ", "wrong type: found ")
            .replace("expected i64", "expected an integer")
            .replace("expected a string", "expected a string in quotes")
            .replace("expected a boolean", "expected true or false");
        let key = span.map(|s| key_before(text, s.start)).unwrap_or_default();
        let message = if key.is_empty() {
            message
        } else {
            format!("{key}: {message}")
        };
        return (
            message,
            Some("see docs/runbook-format.md for each key's type".into()),
        );
    }
    if message.contains("did not match any variant") {
        return (
            "wrong type for expect.scalar".into(),
            Some("write the expected value as a string, e.g. scalar = \"42\"".into()),
        );
    }
    (
        format!("invalid TOML: {message}"),
        Some("fix the TOML syntax at this place; see docs/runbook-format.md".into()),
    )
}

/// The key whose value starts at `offset` (`key = value` on one line).
fn key_before(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.rsplit('\n').next().unwrap_or_default();
    match line.rsplit_once('=') {
        Some((key, _)) => key
            .trim()
            .trim_start_matches('{')
            .trim()
            .rsplit([',', '{'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        None => String::new(),
    }
}

/// The `[table]` or `[[array]]` header in force at `offset`, for messages.
fn enclosing_table(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.split(']')
                .next()
                .map(|h| format!("{h}]"))
                .unwrap_or_default()
        })
        .map(|h| {
            if h.starts_with("[[") {
                format!("{h}]")
            } else {
                h
            }
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Runbook, Vec<Diagnostic>> {
        parse_str(Path::new("t.toml"), text.to_string())
    }

    const MINIMAL: &str = "[runbook]\nid = \"r\"\ntitle = \"T\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"check\"\nsql = \"SELECT 1\"\n";

    #[test]
    fn minimal_runbook_has_defaults() {
        let r = parse(MINIMAL).unwrap();
        assert_eq!(r.id, "r");
        assert_eq!(r.change_type, ChangeType::Minor);
        assert_eq!(r.settings, Settings::default());
        assert_eq!(r.phases[0].steps[0].id, "s");
        assert_eq!(r.sha256.len(), 64);
    }

    #[test]
    fn unknown_key_names_place_and_suggests() {
        let text = MINIMAL.replace("kind = \"check\"", "kind = \"check\"\ntittle = \"x\"");
        let errs = parse(&text).unwrap_err();
        let e = &errs[0];
        assert_eq!(e.location.line, 9);
        assert!(
            e.message.contains("unknown key `tittle` in [[phase.step]]"),
            "{e}"
        );
        assert!(
            e.help.as_deref().unwrap().contains("did you mean `title`"),
            "{e}"
        );
    }

    #[test]
    fn step_setting_overrides_runbook_default() {
        let text = MINIMAL.replace("[[phase]]", "[settings]\nlock_timeout = \"1s\"\n[[phase]]")
            + "lock_timeout = \"500ms\"\n";
        let r = parse(&text).unwrap();
        assert_eq!(r.settings.lock_timeout, Duration::from_secs(1));
        assert_eq!(
            r.phases[0].steps[0].settings.lock_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn sql_locations_point_into_the_runbook() {
        let text = MINIMAL.replace(
            "sql = \"SELECT 1\"",
            "sql = \"\"\"\nSELECT 1;\nSELEC 2\"\"\"",
        );
        let r = parse(&text).unwrap();
        let sql = r.phases[0].steps[0].sql().unwrap();
        let at = sql.location(sql.text.find("SELEC 2").unwrap());
        assert_eq!((at.line, at.col), (11, 1));
    }
}
