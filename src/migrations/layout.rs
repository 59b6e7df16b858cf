//! Which migration tool a folder belongs to, and its migrations in the order
//! the tool applies them, read from the file names the tool expects.

use std::cmp::Ordering;
use std::path::Path;

use serde::Serialize;

/// The migration tools whose folders pgpilot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `V<version>__<description>.sql`, undo `U<version>__….sql`.
    Flyway,
    /// `<version>_<name>.up.sql` / `.down.sql`.
    GolangMigrate,
    /// `<version>_<name>.sql` with `-- migrate:up` / `-- migrate:down`.
    Dbmate,
    /// `sqitch.plan` with `deploy/`, `revert/`, `verify/` scripts.
    Sqitch,
    /// Numbered files `001_x.sql`, each applied once, in order.
    Plain,
}

impl Layout {
    /// The tool's history table, when it keeps one pgpilot knows.
    pub fn history(self) -> Option<crate::runbook::HistoryTool> {
        use crate::runbook::HistoryTool as H;
        match self {
            Layout::Flyway => Some(H::Flyway),
            Layout::GolangMigrate => Some(H::GolangMigrate),
            Layout::Dbmate => Some(H::Dbmate),
            Layout::Sqitch => Some(H::Sqitch),
            Layout::Plain => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Flyway => "flyway",
            Layout::GolangMigrate => "golang-migrate",
            Layout::Dbmate => "dbmate",
            Layout::Sqitch => "sqitch",
            Layout::Plain => "plain",
        }
    }
}

/// One migration file as its tool names it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The version the tool records in its history (`3`, `20240101120000`).
    pub version: String,
    /// The description in the name (`add_index`).
    pub description: String,
    /// The file name, relative to the folder.
    pub up: String,
    /// The undo file, when the tool keeps it apart (flyway `U`, golang-migrate `.down.sql`).
    pub down: Option<String>,
}

/// The layout the folder's file names say, or `None` when none fits.
pub fn detect(names: &[String], has_section: impl Fn(&str) -> bool) -> Option<Layout> {
    if names
        .iter()
        .any(|n| flyway(n).is_some_and(|(k, _, _)| k == 'V'))
    {
        return Some(Layout::Flyway);
    }
    if names.iter().any(|n| golang(n).is_some()) {
        return Some(Layout::GolangMigrate);
    }
    let numbered: Vec<&String> = names.iter().filter(|n| numbered(n).is_some()).collect();
    if numbered.is_empty() {
        return None;
    }
    if numbered.iter().any(|n| has_section(n)) {
        return Some(Layout::Dbmate);
    }
    Some(Layout::Plain)
}

/// The migrations of `layout` among `names`, in the tool's order.
pub fn entries(layout: Layout, names: &[String]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    match layout {
        Layout::Flyway => {
            let undo: std::collections::HashMap<&str, &String> = names
                .iter()
                .filter_map(|u| match flyway(u) {
                    Some(('U', v, _)) => Some((v, u)),
                    _ => None,
                })
                .collect();
            for n in names {
                if let Some(('V', version, description)) = flyway(n) {
                    let down = undo.get(version).map(|u| (*u).clone());
                    // Flyway records V2_1 as version 2.1.
                    out.push(Entry {
                        version: version.replace('_', "."),
                        description: description.to_string(),
                        up: n.clone(),
                        down,
                    });
                }
            }
        }
        Layout::GolangMigrate => {
            let downs: std::collections::HashMap<&str, &String> = names
                .iter()
                .filter_map(|d| match golang(d) {
                    Some((v, _, false)) => Some((v, d)),
                    _ => None,
                })
                .collect();
            for n in names {
                if let Some((version, description, true)) = golang(n) {
                    let down = downs.get(version).map(|d| (*d).clone());
                    out.push(Entry {
                        version: version.to_string(),
                        description: description.to_string(),
                        up: n.clone(),
                        down,
                    });
                }
            }
        }
        // sqitch's order is its plan's (see `migrations::sqitch`).
        Layout::Sqitch => {}
        Layout::Dbmate | Layout::Plain => {
            for n in names {
                if let Some((version, description)) = numbered(n) {
                    out.push(Entry {
                        version: version.to_string(),
                        description: description.to_string(),
                        up: n.clone(),
                        down: None,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| version_order(&a.version, &b.version).then_with(|| a.up.cmp(&b.up)));
    out
}

/// Flyway's versions compare part by part as numbers: 1.10 after 1.9
/// (`_` separates parts in a file name, as `.` does).
pub fn version_order(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u128> {
        v.split(['.', '_'])
            .map(|p| p.parse::<u128>().unwrap_or(u128::MAX))
            .collect()
    };
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

/// `V3__add_index.sql` → ('V', "3", "add_index"); `U…` for undo.
fn flyway(name: &str) -> Option<(char, &str, &str)> {
    let stem = name.strip_suffix(".sql")?;
    let kind = stem.chars().next().filter(|c| matches!(c, 'V' | 'U'))?;
    let (version, description) = stem[1..].split_once("__")?;
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_');
    ok.then_some((kind, version, description))
}

/// `0003_add_index.up.sql` → ("0003", "add_index", true).
fn golang(name: &str) -> Option<(&str, &str, bool)> {
    let (stem, up) = match name.strip_suffix(".up.sql") {
        Some(s) => (s, true),
        None => (name.strip_suffix(".down.sql")?, false),
    };
    let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
    (!version.is_empty() && version.chars().all(|c| c.is_ascii_digit())).then_some((
        version,
        description,
        up,
    ))
}

/// `001_create_users.sql` / `20240101120000_x.sql` → ("001", "create_users").
fn numbered(name: &str) -> Option<(&str, &str)> {
    let stem = name.strip_suffix(".sql")?;
    let digits = stem
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(stem.len());
    if digits == 0 {
        return None;
    }
    let rest = &stem[digits..];
    let description = rest.strip_prefix(['_', '-']).unwrap_or(rest);
    Some((&stem[..digits], description))
}

/// The `.sql` file names directly in `dir`, sorted.
pub fn sql_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn layouts_are_told_apart_by_their_names() {
        let none = |_: &str| false;
        assert_eq!(
            detect(&names(&["V1__a.sql", "U1__a.sql"]), none),
            Some(Layout::Flyway)
        );
        assert_eq!(
            detect(&names(&["1_a.up.sql", "1_a.down.sql"]), none),
            Some(Layout::GolangMigrate)
        );
        assert_eq!(
            detect(&names(&["20240101_a.sql"]), |_| true),
            Some(Layout::Dbmate)
        );
        assert_eq!(detect(&names(&["001_a.sql"]), none), Some(Layout::Plain));
        assert_eq!(detect(&names(&["schema.sql"]), none), None);
    }

    #[test]
    fn flyway_versions_sort_as_numbers_and_pair_undo() {
        let e = entries(
            Layout::Flyway,
            &names(&["V10__c.sql", "V2__b.sql", "V1.1__a.sql", "U2__b.sql"]),
        );
        let order: Vec<&str> = e.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(order, ["1.1", "2", "10"]);
        assert_eq!(e[1].down.as_deref(), Some("U2__b.sql"));
    }
}
