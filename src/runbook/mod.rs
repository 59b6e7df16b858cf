//! The runbook model: what a runbook file says, validated, with the places it
//! said it so later stages can point back into the file.

mod approvals;
mod duration;
pub mod notify;
mod parse;
pub mod sql_parts;
mod toml_string;
pub mod vars;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::diag::{Location, SourceFile};

pub use approvals::{AllowedSigners, ApprovalsSection, Notice, seed_required, valid_kind};
pub use duration::{format_duration, parse_duration};
pub use notify::{NotifyEvent, NotifySection, WebhookSource};
pub use parse::{load, parse_str};

/// A validated runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub file: Arc<SourceFile>,
    /// SHA-256 of the runbook file and every SQL file it includes, in order.
    pub sha256: String,
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub change_type: ChangeType,
    pub declared_risk: Option<Risk>,
    pub declared_risk_at: Option<Location>,
    pub ticket: Option<String>,
    /// `version`: the schema version this runbook brings the database to,
    /// recorded in `pgpilot.schema_versions` when every step is applied.
    pub version: Option<semver::Version>,
    /// `requires_version`: the database's current version must be exactly
    /// this for `run` to start (drift is refused).
    pub requires_version: Option<semver::Version>,
    /// `sql_root` from `[runbook]`, canonical: a folder outside the runbook's
    /// own that its steps' files may lie in.
    pub sql_root: Option<std::path::PathBuf>,
    /// `history` from `[runbook]`: the migration tool whose history table
    /// the steps with a `migration` version are read from and recorded in.
    pub history: Option<HistoryTool>,
    pub target: Target,
    pub settings: Settings,
    /// `[approvals]` as written; `None` when the runbook has none (then a
    /// production run takes the seed's defaults by change type).
    pub approvals: Option<ApprovalsSection>,
    /// `[[health]]` gates, checked before each step (and between a
    /// backfill's batches).
    pub health: Vec<HealthGate>,
    /// `[notify]`: where the run's events are posted. Outside the approval
    /// hash (a responder rotates the webhook).
    pub notify: Option<NotifySection>,
    /// `[lint] enable`: opt-in finding rules turned on for this runbook
    /// (like `check --enable`). Not in the approval hash: they change what
    /// is reported, not what runs.
    pub lint_enable: std::collections::BTreeSet<crate::analysis::RuleId>,
    pub phases: Vec<Phase>,
}

impl Runbook {
    pub fn path(&self) -> &std::path::Path {
        &self.file.path
    }

    /// Every step with the phase it belongs to, in runbook order.
    pub fn steps(&self) -> impl Iterator<Item = (&Phase, &Step)> {
        self.phases
            .iter()
            .flat_map(|p| p.steps.iter().map(move |s| (p, s)))
    }

    /// The tightest `max_replica_lag` of the runbook or any step: the
    /// standbys are watched (a second query per poll) only when one is set.
    pub fn max_replica_lag(&self) -> Option<Duration> {
        self.steps()
            .filter_map(|(_, s)| s.settings.max_replica_lag)
            .chain(self.settings.max_replica_lag)
            .min()
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps().map(|(_, s)| s).find(|s| s.id == id)
    }
}

/// The seeds' change classes: major breaks consumers, minor adds, patch fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeType {
    Major,
    Minor,
    Patch,
}

impl ChangeType {
    pub const NAMES: [&'static str; 3] = ["major", "minor", "patch"];

    pub fn parse(s: &str) -> Option<ChangeType> {
        match s {
            "major" => Some(ChangeType::Major),
            "minor" => Some(ChangeType::Minor),
            "patch" => Some(ChangeType::Patch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Major => "major",
            ChangeType::Minor => "minor",
            ChangeType::Patch => "patch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub const NAMES: [&'static str; 3] = ["low", "medium", "high"];

    pub fn parse(s: &str) -> Option<Risk> {
        match s {
            "low" => Some(Risk::Low),
            "medium" => Some(Risk::Medium),
            "high" => Some(Risk::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// A migration tool whose own history table pgpilot reads and writes, so
/// the team's tool and pgpilot agree on what is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HistoryTool {
    /// `flyway_schema_history` (success rows by version).
    Flyway,
    /// `schema_migrations(version bigint, dirty boolean)`: one row, the latest.
    GolangMigrate,
    /// `schema_migrations(version varchar)`: one row per applied migration.
    Dbmate,
    /// sqitch's registry (`sqitch.changes`, `events`, …), by change id.
    Sqitch,
}

impl HistoryTool {
    pub const NAMES: [&'static str; 4] = ["flyway", "golang-migrate", "dbmate", "sqitch"];

    pub fn parse(s: &str) -> Option<HistoryTool> {
        match s {
            "flyway" => Some(HistoryTool::Flyway),
            "golang-migrate" => Some(HistoryTool::GolangMigrate),
            "dbmate" => Some(HistoryTool::Dbmate),
            "sqitch" => Some(HistoryTool::Sqitch),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Where a runbook may run; checked by the engine's guards before the first change.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub environments: Vec<String>,
    pub database: Option<String>,
    pub require_primary: bool,
    /// Weekly change windows; a run outside all of them is refused.
    pub windows: Vec<crate::governance::window::Window>,
    /// The IANA timezone the windows are written in (required with them).
    pub timezone: Option<chrono_tz::Tz>,
    /// `server_version`: the PostgreSQL major version the target runs, for
    /// the analysis offline (`check --pg-version` and `--db` override it).
    pub server_version: Option<(u32, crate::diag::Location)>,
}

/// What to do when sessions already hold locks on a table a step is about to lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBlockers {
    Ask,
    Wait,
    Proceed,
}

impl OnBlockers {
    pub const NAMES: [&'static str; 3] = ["ask", "wait", "proceed"];

    pub fn parse(s: &str) -> Option<OnBlockers> {
        match s {
            "ask" => Some(OnBlockers::Ask),
            "wait" => Some(OnBlockers::Wait),
            "proceed" => Some(OnBlockers::Proceed),
            _ => None,
        }
    }
}

/// Execution settings; the runbook's defaults, overridden per step.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Never zero: bounding the lock wait is the point of pgpilot.
    pub lock_timeout: Duration,
    /// Zero means no limit, as in PostgreSQL.
    pub statement_timeout: Duration,
    pub lock_retries: u32,
    pub retry_backoff: Duration,
    pub long_transaction: Duration,
    pub on_blockers: OnBlockers,
    /// Runbook-wide only: a rehearsal whose locks have made other sessions
    /// queue this long ends itself (rolled back). Zero turns it off.
    pub rehearsal_max_queue: Duration,
    /// Standbys replaying further behind than this make a step warn before
    /// it starts (and a backfill wait between batches). `None`: not watched.
    pub max_replica_lag: Option<Duration>,
    /// While a step's statement waits for a lock, the longest any session
    /// queued behind it may wait before pgpilot cancels its own statement,
    /// lets the queue drain and retries. Zero turns it off (lock_timeout
    /// alone bounds the wait).
    pub max_queue_stall: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(15 * 60),
            lock_retries: 5,
            retry_backoff: Duration::from_secs(1),
            long_transaction: Duration::from_secs(5 * 60),
            on_blockers: OnBlockers::Ask,
            rehearsal_max_queue: Duration::from_secs(30),
            max_replica_lag: None,
            max_queue_stall: Duration::from_millis(200),
        }
    }
}

/// A `[[health]]` gate: a query of one number that must stay within
/// `min`/`max` before each step runs.
#[derive(Debug, Clone)]
pub struct HealthGate {
    pub name: String,
    pub sql: SqlText,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub at: Location,
}

#[derive(Debug, Clone)]
pub struct Phase {
    pub id: String,
    pub title: String,
    pub at: Location,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Check,
    Change,
    Verify,
    Backup,
    Pause,
    /// A data change walked in keyset batches, each batch its own
    /// transaction with the cursor saved in it (see `Backfill`).
    Backfill,
}

impl StepKind {
    pub const NAMES: [&'static str; 6] =
        ["check", "change", "verify", "backup", "pause", "backfill"];

    pub fn parse(s: &str) -> Option<StepKind> {
        match s {
            "check" => Some(StepKind::Check),
            "change" => Some(StepKind::Change),
            "verify" => Some(StepKind::Verify),
            "backup" => Some(StepKind::Backup),
            "pause" => Some(StepKind::Pause),
            "backfill" => Some(StepKind::Backfill),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Steps that change the target and are recorded `applied`.
    pub fn changes(self) -> bool {
        matches!(
            self,
            StepKind::Change | StepKind::Backup | StepKind::Backfill
        )
    }
}

/// How a backfill step walks its table: `key` in keyset order, `batch_size`
/// rows at a time, its `sql` run once per batch with `$1`/`$2` bound to the
/// batch's first and last key.
#[derive(Debug, Clone, PartialEq)]
pub struct Backfill {
    /// The table walked, as written (`name` or `schema.name`).
    pub table: String,
    /// A unique, indexed, orderable column.
    pub key: String,
    pub batch_size: u64,
    /// Adapt the batch size (×2 / ÷2 per batch) to keep each batch near this.
    pub target_batch_time: Option<Duration>,
    /// Slept between batches.
    pub batch_pause: Duration,
    pub table_at: Option<Location>,
}

/// SQL text and the map from its bytes back to the file it was written in.
#[derive(Debug, Clone)]
pub struct SqlText {
    pub text: String,
    file: Arc<SourceFile>,
    /// File offset of each byte of `text`, or `None` when `text` is the file's
    /// text from `base` on (a .sql file, a literal string).
    offsets: Option<Vec<usize>>,
    base: usize,
}

impl SqlText {
    pub(crate) fn new(
        text: String,
        file: Arc<SourceFile>,
        offsets: Option<Vec<usize>>,
        base: usize,
    ) -> SqlText {
        SqlText {
            text,
            file,
            offsets,
            base,
        }
    }

    /// SQL that came from elsewhere (a generated statement); locations point at `at`.
    pub fn detached(text: String, file: Arc<SourceFile>, at: usize) -> SqlText {
        SqlText::new(text, file, Some(Vec::new()), at)
    }

    /// Where byte `offset` of the SQL text stands in its file.
    pub fn location(&self, offset: usize) -> Location {
        let file_offset = match &self.offsets {
            None => self.base + offset,
            Some(map) if map.is_empty() => self.base,
            Some(map) => map
                .get(offset)
                .or_else(|| map.last())
                .copied()
                .unwrap_or(self.base),
        };
        self.file.location(file_offset)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.file.path
    }

    /// The whole text of the file the SQL is part of.
    pub fn source_text(&self) -> &str {
        &self.file.text
    }
}

/// What a check or verify step expects of its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Rows(u64),
    Scalar(String),
    Empty(bool),
}

#[derive(Debug, Clone)]
pub enum StepBody {
    Sql(SqlText),
    Instructions(String),
    /// A backup step's `dump = { tables = [...] }`: a real pg_dump.
    Dump(Dump),
}

/// What a dump backup step copies: each table as written, unquoted
/// identifiers folded to lower case like SQL does (`name` or `schema.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub tables: Vec<TableName>,
    /// `timeout`: pg_dump is killed (and its partial file removed) when it
    /// has not finished by then, e.g. while it waits on a table's lock.
    pub timeout: Duration,
}

impl Dump {
    /// A dump's `timeout` when the runbook gives none.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
}

/// A table named by a runbook key (not SQL): an optional schema and a name,
/// both plain identifiers, already folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// `name` or `schema.name` of plain identifiers, folded to lower case
    /// as SQL folds them unquoted; `None` for anything else.
    pub fn parse(text: &str) -> Option<TableName> {
        fn plain(s: &str) -> bool {
            let mut chars = s.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && s.len() <= 63
        }
        let parts: Vec<&str> = text.split('.').collect();
        if !parts.iter().all(|p| plain(p)) {
            return None;
        }
        match parts.as_slice() {
            [name] => Some(TableName {
                schema: None,
                name: name.to_lowercase(),
            }),
            [schema, name] => Some(TableName {
                schema: Some(schema.to_lowercase()),
                name: name.to_lowercase(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: Option<String>,
    pub kind: StepKind,
    pub at: Location,
    pub body: StepBody,
    /// The .sql file the step's SQL came from, relative to the runbook.
    pub file: Option<PathBuf>,
    /// `migration`: the version of the migration (of a tool's folder) this
    /// step runs. Each migration ran at its own time, so what an earlier
    /// migration created is not new any more; with `[runbook] history`, the
    /// version the tool's history records.
    pub migration: Option<String>,
    pub expect: Option<Expect>,
    pub capture: Option<String>,
    pub rollback: Option<SqlText>,
    pub transaction: Option<bool>,
    pub confirm: Option<String>,
    pub explain: Option<String>,
    pub irreversible: Option<String>,
    /// `ignore = ["RULE", …]`: findings of these rules are not shown for this
    /// step, with where the key is (an ignore that matches nothing is a warning).
    pub ignore: Vec<String>,
    pub ignore_at: Option<Location>,
    /// A backfill step's walk (only on `kind = "backfill"`).
    pub backfill: Option<Backfill>,
    /// `no_backup = "REASON"`: this step removes data without an earlier
    /// backup, on purpose (the backup rule does not hold it).
    pub no_backup: Option<String>,
    pub settings: Settings,
    /// Places of keys that later validation may complain about.
    pub spans: StepSpans,
}

#[derive(Debug, Clone, Default)]
pub struct StepSpans {
    pub kind: Option<Location>,
    pub sql: Option<Location>,
    pub transaction: Option<Location>,
    pub rollback: Option<Location>,
}

impl Step {
    pub fn sql(&self) -> Option<&SqlText> {
        match &self.body {
            StepBody::Sql(sql) => Some(sql),
            StepBody::Instructions(_) | StepBody::Dump(_) => None,
        }
    }

    pub fn instructions(&self) -> Option<&str> {
        match &self.body {
            StepBody::Instructions(text) => Some(text),
            StepBody::Sql(_) | StepBody::Dump(_) => None,
        }
    }

    /// A dump backup step's tables.
    pub fn dump(&self) -> Option<&Dump> {
        match &self.body {
            StepBody::Dump(d) => Some(d),
            _ => None,
        }
    }
}
