//! Migrations as teams already write them: a plain `.sql` file or a folder
//! of a migration tool (Flyway, golang-migrate, dbmate, numbered files),
//! turned into a runbook that refers to the original files. `pgpilot
//! import` writes that runbook; `check`/`plan`/`run`/`rollback`/`status`
//! on a folder build the same runbook in memory, so both paths analyse,
//! number and record the same steps under the same runbook id.

mod folder_file;
pub mod import;
mod layout;
pub mod sqitch;
mod toml_text;

use std::path::{Path, PathBuf};

use crate::analysis::{Context, analyze_sql};
use crate::diag::{Diagnostic, Location, SourceFile};
use crate::runbook::{Runbook, sql_parts};

pub use layout::Layout;
pub use toml_text::runbook_toml;

/// The name of the file a folder may hold to declare its runbook id.
pub const ID_FILE: &str = ".pgpilot-id";

/// A folder of migrations (or one file), read and ordered.
#[derive(Debug, Clone)]
pub struct Folder {
    pub dir: PathBuf,
    pub layout: Layout,
    /// The runbook id: `.pgpilot-id`, or the folder's (or file's) name.
    pub id: String,
    pub name: String,
    pub migrations: Vec<Migration>,
    /// One `.sql` file rather than a folder: no tool history is kept for it
    /// (one file is not the tool's folder).
    pub single: bool,
    /// What linting the files as their tool runs them found (a
    /// CONCURRENTLY statement inside the tool's transaction).
    pub notes: Vec<Diagnostic>,
}

/// One migration and how the runbook runs it.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: String,
    pub description: String,
    /// Step id: the file's stem, made a valid id.
    pub id: String,
    pub up: String,
    /// `Some("up")` for dbmate.
    pub up_section: Option<&'static str>,
    pub down: Option<String>,
    pub down_section: Option<&'static str>,
    /// A script that checks the migration took (sqitch's verify script),
    /// run as a verify step after it.
    pub verify: Option<String>,
    /// Statement count when the file must run one statement per step
    /// (it holds a statement that cannot run in a transaction block).
    pub split: Option<usize>,
    /// Destructive with no down migration: imported as irreversible.
    pub destructive: bool,
}

/// Reads `path` as a migration source when it is one: a folder, or a
/// `.sql` file. `None` for anything else (a runbook).
pub fn is_migration_source(path: &Path) -> bool {
    path.is_dir() || path.extension().is_some_and(|e| e == "sql")
}

/// A runbook from a runbook file, a `.sql` file or a migration folder, with
/// the notes of linting migrations the way their tool runs them.
pub fn load_source(path: &Path) -> Result<(Runbook, Vec<Diagnostic>), Vec<Diagnostic>> {
    if !is_migration_source(path) {
        return crate::runbook::load(path).map(|r| (r, Vec::new()));
    }
    let folder = read(path, None)?;
    let virtual_path = folder.dir.join(".pgpilot-folder.toml");
    let text = runbook_toml(&folder, None);
    let runbook = crate::runbook::parse_str(&virtual_path, text)?;
    Ok((runbook, folder.notes))
}

/// Reads a folder (or one `.sql` file) of migrations; `layout` overrides
/// detection.
pub fn read(path: &Path, layout: Option<Layout>) -> Result<Folder, Vec<Diagnostic>> {
    let fail = |m: String, h: &str| vec![Diagnostic::error(Location::file(path), m).with_help(h)];
    let sqitch_dir = path.is_dir() && sqitch::is_project(path);
    if sqitch_dir && matches!(layout, None | Some(Layout::Sqitch)) {
        return read_sqitch(path);
    }
    if layout == Some(Layout::Sqitch) {
        return Err(fail(
            "not a sqitch project: no sqitch.plan in this folder".into(),
            "point pgpilot at the folder holding sqitch.plan",
        ));
    }
    let (dir, names, single) = if path.is_dir() {
        let names = layout::sql_names(path)
            .map_err(|e| fail(format!("cannot read the folder: {e}"), "check the path"))?;
        (path.to_path_buf(), names, false)
    } else {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| fail("not a file name".into(), "name a .sql file"))?;
        (dir, vec![name], true)
    };
    let texts = read_texts(&dir, &names)?;
    let by_name: std::collections::HashMap<&str, &str> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let has_section = |n: &str| {
        by_name
            .get(n)
            .is_some_and(|t| sql_parts::section(t, "up").is_some())
    };
    let layout = match layout.or_else(|| layout::detect(&names, has_section)) {
        Some(l) => l,
        // One file with no tool's name: one migration, run as one transaction.
        None if single => Layout::Plain,
        None => {
            return Err(fail(
                "no migrations found: no file is named as Flyway (V1__x.sql), golang-migrate (1_x.up.sql), dbmate or numbered files (001_x.sql) name them".into(),
                "point pgpilot at the folder of .sql migrations, or pass --layout",
            ));
        }
    };
    let entries = if single {
        let name = names[0].clone();
        let mut e = layout::entries(layout, &names);
        if e.is_empty() {
            let stem = name.trim_end_matches(".sql").to_string();
            e.push(layout::Entry {
                version: stem.clone(),
                description: stem,
                up: name,
                down: None,
            });
        }
        e
    } else {
        layout::entries(layout, &names)
    };
    let text_of = |n: &str| by_name.get(n).copied().unwrap_or("");
    let mut notes = Vec::new();
    let mut migrations = Vec::new();
    for e in entries {
        let text = text_of(&e.up);
        let conf = optional_file(&dir, &format!("{}.conf", e.up))?.unwrap_or_default();
        let m = migration(&dir, layout, e, text, &conf, &mut notes);
        migrations.push(m);
    }
    let name = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_stem().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "migrations".into());
    let declared = optional_file(&dir, ID_FILE)?;
    let id = match declared {
        Some(d) if !single => id_of(d.trim()),
        _ => id_of(&name),
    };
    Ok(Folder {
        dir,
        layout,
        id,
        name,
        migrations,
        single,
        notes,
    })
}

/// A sqitch project: its plan's changes in order, each deploy script a
/// migration with its revert and verify scripts. The runbook id is
/// `.pgpilot-id`, else the plan's `%project`.
fn read_sqitch(dir: &Path) -> Result<Folder, Vec<Diagnostic>> {
    let project = sqitch::Project::load(dir)?;
    let names: Vec<String> = project.scripts.iter().map(|s| s.deploy.clone()).collect();
    let texts = read_texts(dir, &names)?;
    let mut notes = Vec::new();
    let mut migrations = Vec::new();
    for ((scripts, change), (_, text)) in project
        .scripts
        .iter()
        .zip(&project.plan.changes)
        .zip(&texts)
    {
        let entry = layout::Entry {
            version: scripts.key.clone(),
            description: if change.note.is_empty() {
                change.name.clone()
            } else {
                crate::text::one_line(&change.note)
            },
            up: scripts.deploy.clone(),
            down: scripts.revert.clone(),
        };
        let mut m = migration(dir, Layout::Sqitch, entry, text, "", &mut notes);
        m.id = id_of(&scripts.key);
        m.verify = scripts.verify.clone();
        migrations.push(m);
    }
    let declared = optional_file(dir, ID_FILE)?;
    let id = match declared {
        Some(d) => id_of(d.trim()),
        None => id_of(&project.plan.project),
    };
    Ok(Folder {
        dir: dir.to_path_buf(),
        layout: Layout::Sqitch,
        id,
        name: project.plan.project.clone(),
        migrations,
        single: false,
        notes,
    })
}

/// A file the folder may hold beside its scripts; `None` when it has none.
fn optional_file(dir: &Path, name: &str) -> Result<Option<String>, Vec<Diagnostic>> {
    let at = Location::file(&dir.join(name));
    match folder_file::read_in_folder(dir, name, &at) {
        Ok(text) => Ok(Some(text)),
        Err(folder_file::Unread::Absent) => Ok(None),
        Err(folder_file::Unread::Refused(d)) => Err(vec![d]),
    }
}

fn read_texts(dir: &Path, names: &[String]) -> Result<Vec<(String, String)>, Vec<Diagnostic>> {
    use crate::regular_file::{SOURCE_LIMIT, read_regular};
    names
        .iter()
        .map(|n| {
            let path = dir.join(n);
            let bytes = read_regular(&path, SOURCE_LIMIT).map_err(|e| {
                vec![
                    Diagnostic::error(Location::file(&path), format!("cannot read: {e}"))
                        .with_help("pgpilot reads regular .sql files of up to 16 MiB"),
                ]
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                vec![
                    Diagnostic::error(Location::file(&path), "the file is not valid UTF-8 text")
                        .with_help("save the file as UTF-8"),
                ]
            })?;
            Ok((n.clone(), text))
        })
        .collect()
}

/// One migration: how its tool runs it, and what that means for the steps.
fn migration(
    dir: &Path,
    layout: Layout,
    e: layout::Entry,
    text: &str,
    conf: &str,
    notes: &mut Vec<Diagnostic>,
) -> Migration {
    let (up_section, down_section, up_range, tool_tx) = match layout {
        Layout::Dbmate => {
            let (range, tx) = match sql_parts::section(text, "up") {
                Some((m, r)) => (r, !m.options.contains("transaction:false")),
                None => (0..text.len(), true),
            };
            let down = sql_parts::section(text, "down")
                .filter(|(_, r)| !text[r.clone()].trim().is_empty())
                .map(|_| "down");
            (Some("up"), down, range, tx)
        }
        // Flyway wraps each file in a transaction unless its script
        // configuration opts out.
        Layout::Flyway => (
            None,
            None,
            0..text.len(),
            !conf
                .lines()
                .any(|l| l.replace(' ', "") == "executeInTransaction=false"),
        ),
        // golang-migrate sends the file as one query string: several
        // statements run as one implicit transaction.
        Layout::GolangMigrate => (None, None, 0..text.len(), false),
        // sqitch runs a script with `psql -f`: in autocommit, unless the
        // script opens its own transaction (its templates do).
        Layout::Sqitch => (None, None, 0..text.len(), false),
        Layout::Plain => (None, None, 0..text.len(), true),
    };
    let inner = sql_parts::without_own_transaction(text, up_range.clone());
    let own_tx = inner != up_range;
    let stmts = analyze_sql(&text[inner.clone()], &mut Context::default()).unwrap_or_default();
    let implicit_tx = layout == Layout::GolangMigrate && stmts.len() > 1;
    let in_tx = tool_tx || own_tx || implicit_tx;
    if in_tx && stmts.iter().any(|s| !s.transactional) {
        let source = SourceFile::new(dir.join(&e.up), text.to_string());
        for s in stmts.iter().filter(|s| !s.transactional) {
            let why = if own_tx {
                "the file's own BEGIN … COMMIT".to_string()
            } else if implicit_tx {
                "golang-migrate's one query string (an implicit transaction)".to_string()
            } else {
                format!("the transaction {} runs each file in", layout.as_str())
            };
            let remedy = match layout {
                Layout::Flyway => format!(
                    "put executeInTransaction=false in {}.conf, alone with it in its migration",
                    e.up
                ),
                Layout::Dbmate => {
                    "write `-- migrate:up transaction:false` and keep it alone in its migration"
                        .into()
                }
                Layout::Sqitch => {
                    "take it out of the script's BEGIN … COMMIT (psql then runs it in autocommit), alone in its change"
                        .into()
                }
                _ => "keep it alone in a migration of its own".into(),
            };
            notes.push(
                Diagnostic::warning(
                    source.location(inner.start + s.start),
                    format!(
                        "concurrently-in-transaction: {} cannot run inside a transaction block, and it would run inside {why}: it fails at run time",
                        crate::check::first_words(&s.sql)
                    ),
                )
                .with_help(format!(
                    "{remedy}; pgpilot runs it in a step of its own, in autocommit"
                )),
            );
        }
    }
    let split = (stmts.len() > 1 && stmts.iter().any(|s| !s.transactional)).then_some(stmts.len());
    let has_down = e.down.is_some() || down_section.is_some();
    Migration {
        id: id_of(e.up.trim_end_matches(".sql").trim_end_matches(".up")),
        version: e.version,
        description: e.description,
        up: e.up,
        up_section,
        down: e.down,
        down_section,
        verify: None,
        split,
        destructive: !has_down && stmts.iter().any(|s| s.destructive),
    }
}

/// `text` as a runbook or step id: letters, digits, `.`, `_`, `-`, at most
/// 56 bytes (room for a `.N` suffix of a split migration's steps).
pub fn id_of(text: &str) -> String {
    let mut id: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(56)
        .collect();
    if id.is_empty() {
        id.push_str("migrations");
    }
    id
}
