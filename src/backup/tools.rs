//! Finding `pg_dump` and `pg_restore` whose major version is not older than
//! the server's: a pg_dump older than the server refuses to dump it (and a
//! pg_restore may not read a newer dump's format), so pgpilot picks one it
//! knows will work, or says which version to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::BackupError;
use crate::sandbox::{is_executable, parse_version};

/// A directory searched instead of PATH and /usr/lib/postgresql/*/bin
/// (like pg_upgrade's `-B`): the client tools of a chosen version.
pub const BIN_DIR_ENV: &str = "PGPILOT_PG_BINDIR";

/// A client tool and its major version.
#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    pub major: u32,
}

/// The major version of `server_version_num` (160004 → 16, 90624 → 9).
pub fn server_major(server_version_num: i32) -> u32 {
    // Before 10 the major was two numbers (9.6 → 90600): 9 is older than
    // any tool that matters here, which is all the comparison needs.
    server_version_num.max(0) as u32 / 10_000
}

/// The major version in a tool's `--version` line
/// (`pg_dump (PostgreSQL) 16.4 (Ubuntu 16.4-1)` → 16).
pub fn parse_version_line(line: &str) -> Option<u32> {
    let after = line.split(')').nth(1).unwrap_or(line);
    after
        .split_whitespace()
        .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
}

/// Whether a tool of major version `tool` can work with a server of major
/// version `server`: the same or newer.
pub fn fits(tool: u32, server: u32) -> bool {
    tool >= server
}

/// The directories searched, in order.
fn candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let v = parse_version(&e.file_name())?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    dirs.extend(versioned.into_iter().map(|(_, p)| p));
    dirs
}

fn version_of(path: &Path) -> Option<u32> {
    let out = Command::new(path).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_version_line(String::from_utf8_lossy(&out.stdout).lines().next()?)
}

/// The first `name` (in search order) whose major version is at least the
/// server's; refused, naming the version needed, when none is.
pub fn find(name: &str, server: u32) -> Result<Tool, BackupError> {
    let mut found: Vec<Tool> = Vec::new();
    for dir in candidates() {
        let path = dir.join(name);
        if !is_executable(&path) || found.iter().any(|t| t.path == path) {
            continue;
        }
        let Some(major) = version_of(&path) else {
            continue;
        };
        if fits(major, server) {
            return Ok(Tool { path, major });
        }
        found.push(Tool { path, major });
    }
    Err(BackupError::NoTool {
        tool: name.to_string(),
        server,
        found: found
            .iter()
            .map(|t| format!("{} ({})", t.path.display(), t.major))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_compared_by_major() {
        assert_eq!(
            parse_version_line("pg_dump (PostgreSQL) 16.4 (Ubuntu 16.4-1.pgdg22.04+1)"),
            Some(16)
        );
        assert_eq!(parse_version_line("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(server_major(160004), 16);
        assert_eq!(server_major(90624), 9);
        assert!(fits(17, 16));
        assert!(fits(16, 16));
        assert!(!fits(15, 16));
    }
}
