//! Taking a dump: pg_dump into a file pgpilot creates (mode 0600, in a
//! 0700 directory), renamed into place only once `pg_restore --list` shows
//! every table's data in it; a failure leaves no file behind.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{BackupError, BackupId, Tool, ToolConn, dump_args};
use crate::runbook::TableName;

/// `DATA_DIR/backups/RUNBOOK`, created mode 0700.
pub fn backup_dir(runbook_id: &str) -> Result<PathBuf, BackupError> {
    let data = crate::audit::local::data_dir().map_err(|e| BackupError::Other(e.to_string()))?;
    let dir = data.join("backups").join(file_part(runbook_id));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| BackupError::Io {
            action: "create the directory",
            path: dir.clone(),
            source,
        })?;
    for d in [data.join("backups"), dir.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(|source| {
            BackupError::Io {
                action: "restrict the directory",
                path: d.clone(),
                source,
            }
        })?;
    }
    Ok(dir)
}

/// Ids are letters, digits, `.`, `_` and `-` already; anything else (and a
/// leading dot) becomes `_`, so a name never leaves its folder.
fn file_part(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

/// Runs pg_dump of `tables` into `DATA_DIR/backups/RUNBOOK/STEP-TIMESTAMP.dump`
/// and verifies it with pg_restore; returns its id. Past `limit`, or when
/// `cancel` completes first, pg_dump's process group is killed; on any
/// failure no file is left behind.
#[allow(clippy::too_many_arguments)]
pub async fn take_dump(
    pg_dump: &Tool,
    pg_restore: &Tool,
    conn: &ToolConn,
    tables: &[TableName],
    runbook_id: &str,
    step_id: &str,
    limit: Duration,
    cancel: impl Future<Output = ()>,
) -> Result<BackupId, BackupError> {
    let dir = backup_dir(runbook_id)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let path = dir.join(format!("{}-{stamp}.dump", file_part(step_id)));
    let partial = path.with_extension("dump.partial");
    let group = AtomicI32::new(0);
    let result = tokio::select! {
        r = dump_into(pg_dump, pg_restore, conn, tables, &partial, &path, &group) => r,
        () = tokio::time::sleep(limit) => Err(BackupError::TimedOut(limit)),
        () = cancel => Err(BackupError::Cancelled),
    };
    if result.is_err() {
        // The dump's future is dropped (its child killed on drop); the
        // group goes too, in case pg_dump started helpers.
        let pgid = group.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: killpg only sends a signal; a group already gone is ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        let _ = fs::remove_file(&partial);
        let _ = fs::remove_file(&path);
    }
    result
}

async fn dump_into(
    pg_dump: &Tool,
    pg_restore: &Tool,
    conn: &ToolConn,
    tables: &[TableName],
    partial: &Path,
    path: &Path,
    group: &AtomicI32,
) -> Result<BackupId, BackupError> {
    let io = |action: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| BackupError::Io {
            action,
            path: p,
            source,
        }
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(io("create", partial))?;
    let mut cmd = tokio::process::Command::new(&pg_dump.path);
    cmd.args(dump_args(tables))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().map_err(io("open", partial))?))
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal reaches pgpilot
        // (which cancels the step) and not pg_dump behind its back.
        .process_group(0)
        .kill_on_drop(true);
    conn.apply(&mut cmd);
    let child = cmd.spawn().map_err(io("run", &pg_dump.path))?;
    if let Some(pid) = child.id() {
        group.store(pid as i32, Ordering::SeqCst);
    }
    // Not `output()`: tokio's would pipe stdout, away from the file.
    let out = child
        .wait_with_output()
        .await
        .map_err(io("run", &pg_dump.path))?;
    group.store(0, Ordering::SeqCst);
    if !out.status.success() {
        return Err(BackupError::ToolFailed {
            tool: "pg_dump".into(),
            message: tool_message(&out.stderr, out.status),
        });
    }
    file.sync_all().map_err(io("sync", partial))?;
    drop(file);
    verify_dump(pg_restore, partial, tables).await?;
    let (size, sha256) = digest(partial)?;
    fs::rename(partial, path).map_err(io("rename", partial))?;
    Ok(BackupId {
        path: path.to_path_buf(),
        size,
        sha256,
    })
}

/// A tool's stderr as one safe line: passwords redacted, control
/// characters gone.
pub fn tool_message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = crate::text::one_line(&crate::text::redact(text.trim()));
    if line.is_empty() {
        format!("exited with {status}")
    } else {
        line
    }
}

/// Size and SHA-256 of a file.
pub fn digest(path: &Path) -> Result<(u64, String), BackupError> {
    let io = |source| BackupError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// `pg_restore --list` of the dump must show a TABLE DATA entry for every
/// table (the catalog and the data of each are separate entries).
pub async fn verify_dump(
    pg_restore: &Tool,
    path: &Path,
    tables: &[TableName],
) -> Result<(), BackupError> {
    let out = tokio::process::Command::new(&pg_restore.path)
        .arg("--list")
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| BackupError::Io {
            action: "run",
            path: pg_restore.path.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(BackupError::ToolFailed {
            tool: "pg_restore --list".into(),
            message: tool_message(&out.stderr, out.status),
        });
    }
    let listed = table_data(&String::from_utf8_lossy(&out.stdout));
    for t in tables {
        let present = listed
            .iter()
            .any(|(schema, name)| *name == t.name && t.schema.as_ref().is_none_or(|s| s == schema));
        if !present {
            return Err(BackupError::Missing(t.to_string()));
        }
    }
    Ok(())
}

/// `(schema, table)` of each TABLE DATA entry of a `pg_restore --list`:
/// lines like `3380; 0 16390 TABLE DATA public users postgres`.
pub(crate) fn table_data(list: &str) -> Vec<(String, String)> {
    list.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let (_, rest) = l.split_once(" TABLE DATA ")?;
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_data_entries_are_read_from_the_list() {
        let list = ";\n; Archive created at 2026-01-01\n215; 1259 16390 TABLE public users postgres\n3380; 0 16390 TABLE DATA public users postgres\n";
        assert_eq!(
            table_data(list),
            vec![("public".to_string(), "users".to_string())]
        );
    }

    #[test]
    fn file_parts_stay_in_their_folder() {
        assert_eq!(file_part("../x"), "_.._x");
        assert_eq!(file_part("users-drop"), "users-drop");
    }
}
