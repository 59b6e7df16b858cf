//! The migration tools' own history tables (`[runbook] history`): read, so
//! a run starts where the team's tool stopped, and written with each
//! migration pgpilot applies or rolls back, so the tool never applies it
//! again. The tables' shapes are the tools' own:
//!
//! - Flyway: `flyway_schema_history`, one row per migration run; applied
//!   means a `success` row with its `version`.
//! - golang-migrate: `schema_migrations(version bigint, dirty boolean)`,
//!   one row, the latest version applied; `dirty` means a migration failed
//!   half-way and needs a person.
//! - dbmate: `schema_migrations(version varchar)`, one row per migration.
//! - sqitch: its registry (`sqitch.changes`, `events`, … see
//!   `migrations::sqitch::registry`), keyed by sqitch's change ids.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Client;

use crate::engine::state::{self, Status, StepState};
use crate::migrations::sqitch::{Project, registry};
use crate::runbook::vars::quote_literal;
use crate::runbook::{HistoryTool, Runbook, Step};

/// What a tool's history says is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The versions applied (Flyway, dbmate).
    Versions(HashSet<String>),
    /// golang-migrate: every version up to this one; `dirty` is a failed
    /// migration left for a person.
    UpTo { version: i64, dirty: bool },
    /// No history table: nothing applied by the tool.
    Nothing,
    /// The history cannot be trusted or written as it is: why, with what
    /// to do.
    Refused(String),
}

impl Applied {
    pub fn contains(&self, version: &str) -> bool {
        match self {
            Applied::Versions(v) => v.contains(version),
            Applied::UpTo { version: upto, .. } => version.parse::<i64>().is_ok_and(|v| v <= *upto),
            Applied::Nothing | Applied::Refused(_) => false,
        }
    }
}

fn table(tool: HistoryTool) -> &'static str {
    match tool {
        HistoryTool::Flyway => "flyway_schema_history",
        HistoryTool::GolangMigrate | HistoryTool::Dbmate => "schema_migrations",
        HistoryTool::Sqitch => "sqitch.changes",
    }
}

/// The sqitch project a runbook's steps come from: its `sql_root`, or the
/// runbook's own folder (a folder run on the fly, or imported into it).
fn sqitch_project(runbook: &Runbook) -> Result<Project, String> {
    let dir = match &runbook.sql_root {
        Some(root) => root.clone(),
        None => runbook
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    };
    Project::load(&dir).map_err(|d| {
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Makes the tool's history ready before the first step: creates the
/// table as the tool would on first use (sqitch: its registry, when
/// absent, and the project's row), so a folder pgpilot applies first
/// leaves the history the tool expects. Inside a rehearsal's transaction.
pub async fn prepare(client: &Client, runbook: &Runbook, tool: HistoryTool) -> Result<(), String> {
    let pg = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => crate::pg::redact(&e.to_string()),
    };
    if tool != HistoryTool::Sqitch {
        return client.batch_execute(create_sql(tool)).await.map_err(pg);
    }
    let p = sqitch_project(runbook)?;
    let present: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AS present",
            &[&registry::changes_table(&p)],
        )
        .await
        .map_err(pg)?
        .try_get("present")
        .map_err(pg)?;
    if !present {
        client
            .batch_execute(&registry::create_sql(&p))
            .await
            .map_err(pg)?;
    }
    client
        .batch_execute(&registry::register_sql(&p))
        .await
        .map_err(pg)
}

/// Creates the tool's history table as the tool would on first use, so a
/// folder pgpilot applies first leaves the history the tool expects. Run
/// at the session's start (inside a rehearsal's transaction); sqitch's
/// registry is made by `prepare`.
fn create_sql(tool: HistoryTool) -> &'static str {
    match tool {
        HistoryTool::Flyway => {
            "SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS flyway_schema_history (
    installed_rank integer NOT NULL PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
    type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum integer,
    installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL, success boolean NOT NULL);
RESET client_min_messages"
        }
        HistoryTool::GolangMigrate => {
            "SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
RESET client_min_messages"
        }
        HistoryTool::Dbmate => {
            "SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS schema_migrations (version varchar(128) PRIMARY KEY);
RESET client_min_messages"
        }
        HistoryTool::Sqitch => "",
    }
}

/// Reads the tool's history on the target (the table as the tool names
/// it, found through the search_path as the tool finds it).
pub async fn read(
    client: &Client,
    runbook: &Runbook,
    tool: HistoryTool,
) -> Result<Applied, tokio_postgres::Error> {
    if tool == HistoryTool::Sqitch {
        return read_sqitch(client, runbook).await;
    }
    let present: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AS present",
            &[&table(tool)],
        )
        .await?
        .try_get("present")?;
    if !present {
        return Ok(Applied::Nothing);
    }
    match tool {
        HistoryTool::Flyway | HistoryTool::Dbmate => {
            let sql = if tool == HistoryTool::Flyway {
                "SELECT version::text AS version FROM flyway_schema_history WHERE success AND version IS NOT NULL"
            } else {
                "SELECT version::text AS version FROM schema_migrations"
            };
            let rows = client.query(sql, &[]).await?;
            let mut versions = HashSet::new();
            for r in rows {
                versions.insert(r.try_get::<_, String>("version")?);
            }
            Ok(Applied::Versions(versions))
        }
        HistoryTool::Sqitch => Ok(Applied::Nothing),
        HistoryTool::GolangMigrate => {
            let row = client
                .query_opt(
                    "SELECT version::bigint AS version, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1",
                    &[],
                )
                .await?;
            match row {
                None => Ok(Applied::Nothing),
                Some(r) => Ok(Applied::UpTo {
                    version: r.try_get("version")?,
                    dirty: r.try_get("dirty")?,
                }),
            }
        }
    }
}

/// sqitch's registry: the plan's changes whose change id it holds. A
/// deployed change the plan does not have (the plan was edited after it
/// was deployed, or another version of the project deployed it) is
/// refused: pgpilot would record rows sqitch cannot match.
async fn read_sqitch(client: &Client, runbook: &Runbook) -> Result<Applied, tokio_postgres::Error> {
    let p = match sqitch_project(runbook) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Applied::Refused(format!(
                "cannot read the sqitch project: {e}"
            )));
        }
    };
    let present: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AS present",
            &[&registry::changes_table(&p)],
        )
        .await?
        .try_get("present")?;
    if !present {
        return Ok(Applied::Nothing);
    }
    let (changes, projects) = registry::deployed_sql(&p);
    let mut applied = HashSet::new();
    let mut strangers = Vec::new();
    for row in client.query(&changes, &[]).await? {
        let id: String = row.try_get("change_id")?;
        let name: String = row.try_get("change")?;
        match p.scripts.iter().find(|s| s.id == id) {
            Some(s) => {
                applied.insert(s.key.clone());
            }
            None => strangers.push(format!("{name} ({})", &id[..id.len().min(12)])),
        }
    }
    if !strangers.is_empty() {
        return Ok(Applied::Refused(format!(
            "sqitch's registry has deployed change(s) of project {} that sqitch.plan does not have: {}; the plan was changed after they were deployed (a note, planner or date edited changes the change id): run `sqitch status` and `sqitch plan` to reconcile, then run pgpilot again",
            p.plan.project,
            strangers.join(", ")
        )));
    }
    if let Some(row) = client.query_opt(&projects, &[]).await? {
        let registered: Option<String> = row.try_get("uri")?;
        if registered != p.plan.uri {
            return Ok(Applied::Refused(format!(
                "sqitch's registry has project {} with URI {}, sqitch.plan says {}: sqitch itself refuses to deploy it; fix %uri in sqitch.plan",
                p.plan.project,
                registered.as_deref().unwrap_or("(none)"),
                p.plan.uri.as_deref().unwrap_or("(none)")
            )));
        }
    }
    Ok(if applied.is_empty() {
        Applied::Nothing
    } else {
        Applied::Versions(applied)
    })
}

/// Marks the steps of migrations the tool applied as applied in `states`
/// (pgpilot's own `applied` kept as it is); the ids marked.
pub fn mark_applied(
    runbook: &Runbook,
    tool: HistoryTool,
    applied: &Applied,
    states: &mut HashMap<String, StepState>,
) -> Vec<String> {
    let mut marked = Vec::new();
    for (_, step) in runbook.steps() {
        let Some(version) = step.migration.as_deref() else {
            continue;
        };
        let ours = states.get(&step.id).map(|s| s.status);
        if applied.contains(version) && ours != Some(Status::Applied) {
            states.insert(
                step.id.clone(),
                StepState {
                    step: step.id.clone(),
                    status: Status::Applied,
                    step_sha256: state::step_hash(step),
                    operator: tool.as_str().to_string(),
                    role: String::new(),
                    client_host: String::new(),
                    captured: None,
                    rows: None,
                    duration_ms: None,
                    updated_at: String::new(),
                    updated_us: 0,
                    cursor: None,
                    rows_done: None,
                    rows_total: None,
                    backup: None,
                },
            );
            marked.push(step.id.clone());
        }
    }
    marked
}

/// Why a run is refused on this history, with what to do.
pub fn refusal(tool: HistoryTool, applied: &Applied) -> Option<String> {
    match (tool, applied) {
        (
            HistoryTool::GolangMigrate,
            Applied::UpTo {
                version,
                dirty: true,
            },
        ) => Some(format!(
            "golang-migrate left version {version} dirty (a migration failed half-way): fix the database by hand and run `migrate force {version}`, then run pgpilot again"
        )),
        (_, Applied::Refused(why)) => Some(why.clone()),
        _ => None,
    }
}

/// Whether `step` is the last step of its migration: a migration split
/// over several steps is recorded applied when all of them are.
fn last_of_migration(runbook: &Runbook, step: &Step) -> bool {
    let mut steps = runbook
        .steps()
        .map(|(_, s)| s)
        .skip_while(|s| s.id != step.id);
    steps.next();
    steps
        .next()
        .is_none_or(|next| next.migration != step.migration)
}

fn first_of_migration(runbook: &Runbook, step: &Step) -> bool {
    previous_step(runbook, step).is_none_or(|prev| prev.migration != step.migration)
}

fn previous_step<'a>(runbook: &'a Runbook, step: &Step) -> Option<&'a Step> {
    let mut prev = None;
    for (_, s) in runbook.steps() {
        if s.id == step.id {
            return prev;
        }
        prev = Some(s);
    }
    None
}

/// The version of the migration before `step`'s, in runbook order.
fn previous_version<'a>(runbook: &'a Runbook, step: &Step) -> Option<&'a str> {
    let mut prev = None;
    for (_, s) in runbook.steps() {
        if s.id == step.id {
            return prev;
        }
        if s.migration != step.migration {
            prev = s.migration.as_deref();
        }
    }
    None
}

/// SQL recording that `step`'s migration is applied (`applied`) or rolled
/// back, in the tool's history; run in the step's own transaction. `None`
/// when the runbook keeps no tool's history or this step does not finish
/// (or, rolled back, undo) its migration. An error when the history's
/// rows cannot be made (a sqitch project no longer readable).
pub fn record_sql(runbook: &Runbook, step: &Step, applied: bool) -> Result<Option<String>, String> {
    let (Some(tool), Some(version)) = (runbook.history, step.migration.as_deref()) else {
        return Ok(None);
    };
    if applied && !last_of_migration(runbook, step) {
        return Ok(None);
    }
    // Rolled back in reverse order, a migration is undone when its first
    // step is (which carries the migration's down script).
    if !applied && !first_of_migration(runbook, step) {
        return Ok(None);
    }
    if tool == HistoryTool::Sqitch {
        let p = sqitch_project(runbook)?;
        let Some((_, _, scripts)) = p.change(version) else {
            return Err(format!("sqitch.plan has no change {version:?} any more"));
        };
        let script = std::fs::read(p.dir.join(&scripts.deploy))
            .map_err(|e| format!("cannot read {}: {e}", scripts.deploy))?;
        return Ok(registry::record_sql(&p, version, applied, &script));
    }
    let v = quote_literal(version);
    let sql = match (tool, applied) {
        (HistoryTool::Flyway, true) => {
            let script = step
                .file
                .as_ref()
                .and_then(|f| f.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let description = step.title.clone().unwrap_or_default();
            let checksum = step
                .sql()
                .map(|s| flyway_checksum(s.source_text()).to_string())
                .unwrap_or_else(|| "NULL".into());
            format!(
                "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success)
SELECT (SELECT coalesce(max(installed_rank), 0) + 1 FROM flyway_schema_history), {v}, {d}, 'SQL', {s}, {checksum}, current_user, 0, true
 WHERE NOT EXISTS (SELECT 1 FROM flyway_schema_history WHERE version = {v} AND success)",
                d = quote_literal(&description),
                s = quote_literal(&script),
            )
        }
        (HistoryTool::Flyway, false) => {
            format!("DELETE FROM flyway_schema_history WHERE version = {v}")
        }
        (HistoryTool::GolangMigrate, true) => format!(
            "DELETE FROM schema_migrations;
INSERT INTO schema_migrations (version, dirty) VALUES ({v}, false)"
        ),
        (HistoryTool::GolangMigrate, false) => match previous_version(runbook, step) {
            Some(prev) => format!(
                "DELETE FROM schema_migrations;
INSERT INTO schema_migrations (version, dirty) VALUES ({}, false)",
                quote_literal(prev)
            ),
            None => "DELETE FROM schema_migrations".into(),
        },
        (HistoryTool::Dbmate, true) => {
            format!("INSERT INTO schema_migrations (version) VALUES ({v}) ON CONFLICT DO NOTHING")
        }
        (HistoryTool::Dbmate, false) => {
            format!("DELETE FROM schema_migrations WHERE version = {v}")
        }
        (HistoryTool::Sqitch, _) => return Ok(None),
    };
    Ok(Some(sql))
}

/// Flyway's checksum of a script: CRC-32 of its lines without their line
/// breaks (and without a byte-order mark), as a signed 32-bit integer, so
/// `flyway validate` accepts the row pgpilot wrote.
pub fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut crc = Crc32::default();
    // Java's readLine ends a line at \n, \r or \r\n.
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split_inclusive('\n') {
        crc.update(line.trim_end_matches('\n').as_bytes());
    }
    crc.value() as i32
}

/// CRC-32 (IEEE 802.3), as java.util.zip.CRC32 computes it.
struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Crc32 {
        Crc32(0xFFFF_FFFF)
    }
}

impl Crc32 {
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }

    fn value(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = Crc32::default();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xCBF4_3926);
    }

    #[test]
    fn flyway_checksum_ignores_line_breaks_and_bom() {
        assert_eq!(
            flyway_checksum("SELECT 1;\r\nSELECT 2;\n"),
            flyway_checksum("\u{feff}SELECT 1;\nSELECT 2;")
        );
    }

    #[test]
    fn golang_migrate_versions_up_to_the_recorded_one_are_applied() {
        let a = Applied::UpTo {
            version: 3,
            dirty: false,
        };
        assert!(a.contains("0002") && a.contains("3") && !a.contains("4"));
        assert!(refusal(HistoryTool::GolangMigrate, &a).is_none());
        let dirty = Applied::UpTo {
            version: 3,
            dirty: true,
        };
        assert!(
            refusal(HistoryTool::GolangMigrate, &dirty)
                .unwrap()
                .contains("golang-migrate left version 3 dirty")
        );
    }
}
