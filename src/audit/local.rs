//! The local audit log: one JSON object per line, hash-chained, fsynced.
//!
//! Every record is written here before its copy goes to the database
//! ([`super::db::DbAudit`]): the caller appends locally, and only then hands
//! the returned record to the database copy. The local file is the one that
//! exists whatever happens to the connection.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DurationRound, TimeDelta, Utc};

use super::chain::{self, GENESIS_HASH, Head};
use super::error::AuditError;
use super::record::{AuditRecord, Context, Event};
use super::redact::redact;

/// Environment variable naming the data directory (tests and CI set it).
pub const DATA_DIR_ENV: &str = "PGPILOT_DATA_DIR";
/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "audit.jsonl";

/// The data directory: `$PGPILOT_DATA_DIR`, else the platform's data
/// directory for pgpilot (`~/.local/share/pgpilot` on Linux).
pub fn data_dir() -> Result<PathBuf, AuditError> {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => directories::ProjectDirs::from("", "", "pgpilot")
            .map(|d| d.data_dir().to_path_buf())
            .ok_or(AuditError::NoDataDir),
    }
}

/// The default log: `audit.jsonl` in [`data_dir`].
pub fn default_log_path() -> Result<PathBuf, AuditError> {
    Ok(data_dir()?.join(LOG_FILE))
}

/// Creates the data directory (mode 0700) if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), AuditError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AuditError::io("create the directory", dir, e))
}

/// Opens (creating with mode 0600) a file for appending, and narrows its mode
/// to 0600 if someone widened it.
pub(crate) fn open_private(path: &Path) -> Result<File, AuditError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| AuditError::io("restrict to mode 0600", path, e))?;
    }
    Ok(file)
}

/// A `flock` on a file, released on drop (and by the kernel if
/// the process dies). Other pgpilot processes wait for it.
pub(crate) struct FileLock<'a> {
    file: &'a File,
}

impl<'a> FileLock<'a> {
    /// Waits for the only lock: writers.
    pub(crate) fn exclusive(file: &'a File, path: &Path) -> Result<FileLock<'a>, AuditError> {
        FileLock::take(file, path, libc::LOCK_EX)
    }

    /// Waits until no writer holds the file: readers that need the log and
    /// its head file to agree.
    pub(crate) fn shared(file: &'a File, path: &Path) -> Result<FileLock<'a>, AuditError> {
        FileLock::take(file, path, libc::LOCK_SH)
    }

    fn take(file: &'a File, path: &Path, how: libc::c_int) -> Result<FileLock<'a>, AuditError> {
        loop {
            // SAFETY: flock on a valid open descriptor has no memory effects.
            let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
            if rc == 0 {
                return Ok(FileLock { file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(AuditError::io("lock", path, err));
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking cannot fail in a way we could act on.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// The hash-chained JSON Lines log. Several instances, in one process or
/// many, may append to the same file: each append holds an exclusive lock.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    path: PathBuf,
    head: PathBuf,
}

impl AuditLog {
    /// The log in the default data directory (see [`data_dir`]).
    pub fn open_default() -> Result<AuditLog, AuditError> {
        AuditLog::open_in(&data_dir()?)
    }

    /// The log `audit.jsonl` in `dir`, creating both if missing.
    pub fn open_in(dir: &Path) -> Result<AuditLog, AuditError> {
        ensure_dir(dir)?;
        let path = dir.join(LOG_FILE);
        open_private(&path)?;
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            head: chain::head_path(&path),
            path,
        })
    }

    /// The data directory holding the log (and the database spool).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head file beside it.
    pub fn head_path(&self) -> &Path {
        &self.head
    }

    /// Appends one record and returns it as written.
    ///
    /// Under an exclusive lock: reads the last record (from the end of the
    /// file, not the whole file), checks it against the head file, writes the
    /// new line, fsyncs, then replaces the head file. Passwords in `sql` and
    /// `message` are redacted first, and `sql_sha256` is the hash of the SQL
    /// as recorded (redacted). Refuses to extend a log whose end disagrees
    /// with its head file, since that would hide the removed records.
    pub fn append(&mut self, ctx: &Context, ev: Event) -> Result<AuditRecord, AuditError> {
        let file = open_private(&self.path)?;
        let _lock = FileLock::exclusive(&file, &self.path)?;
        let tail = read_tail(&file, &self.path)?;
        let head = chain::read_head(&self.head)?;
        check_head(&self.path, &self.head, tail.last.as_ref(), head.as_ref())?;
        if let Some(at) = tail.torn_at {
            // A write cut short by a crash: never acknowledged (append returns
            // only after fsync), and the head confirms the record before it.
            file.set_len(at)
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    AuditError::io("remove the interrupted last line of", &self.path, e)
                })?;
        }

        let (seq, prev_hash) = match &tail.last {
            Some(last) => (last.seq + 1, last.hash.clone()),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut rec = build(ctx, ev, seq, prev_hash);
        rec.hash = chain::hash_of(&rec)
            .map_err(|e| AuditError::io("encode a record for", &self.path, io::Error::other(e)))?;
        let mut line = serde_json::to_string(&rec)
            .map_err(|e| AuditError::io("encode a record for", &self.path, io::Error::other(e)))?;
        line.push('\n');
        if tail.missing_newline {
            line.insert(0, '\n');
        }
        (&file)
            .write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| AuditError::io("append to", &self.path, e))?;
        chain::write_head(
            &self.head,
            &Head {
                seq: rec.seq,
                hash: rec.hash.clone(),
            },
        )?;
        Ok(rec)
    }
}

fn build(ctx: &Context, ev: Event, seq: u64, prev_hash: String) -> AuditRecord {
    let sql = ev.sql.map(|s| redact(&s));
    let sql_sha256 = sql.as_deref().map(|s| chain::sha256_hex(s.as_bytes()));
    let now = Utc::now();
    AuditRecord {
        seq,
        // Microseconds, so the timestamptz copy in the database is the same instant.
        ts: now
            .duration_trunc(TimeDelta::microseconds(1))
            .unwrap_or(now),
        session: ctx.session.clone(),
        operator: ctx.operator.clone(),
        role: ctx.role.clone(),
        client_host: ctx.client_host.clone(),
        target: ctx.target.clone(),
        runbook: ctx.runbook.clone(),
        runbook_sha256: ctx.runbook_sha256.clone(),
        ticket: ctx.ticket.clone(),
        phase: ev.phase,
        step: ev.step,
        action: ev.action,
        sql,
        sql_sha256,
        outcome: ev.outcome,
        duration_ms: ev.duration_ms,
        rows: ev.rows,
        sqlstate: ev.sqlstate,
        message: ev.message.map(|m| redact(&m)),
        attempt: ev.attempt,
        rehearsal: ctx.rehearsal,
        prev_hash,
        hash: String::new(),
    }
}

/// The end of the log as found.
struct Tail {
    /// The last complete record.
    last: Option<AuditRecord>,
    /// Where an unparsable, newline-less fragment (an interrupted write) starts.
    torn_at: Option<u64>,
    /// The last record is complete but its newline was not written.
    missing_newline: bool,
}

/// How much of the end of the file is read at a time.
const TAIL_CHUNK: u64 = 8 * 1024;

/// Reads the last line(s) from the end of the file, growing the window until
/// it holds the whole last record.
fn read_tail(file: &File, path: &Path) -> Result<Tail, AuditError> {
    let len = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?
        .len();
    let mut tail = Tail {
        last: None,
        torn_at: None,
        missing_newline: false,
    };
    if len == 0 {
        return Ok(tail);
    }
    let mut window = TAIL_CHUNK.min(len);
    loop {
        let start = len - window;
        let mut buf = vec![0u8; usize::try_from(window).unwrap_or(usize::MAX)];
        let mut reader = file;
        reader
            .seek(SeekFrom::Start(start))
            .and_then(|_| reader.read_exact(&mut buf))
            .map_err(|e| AuditError::io("read", path, e))?;
        let ends_with_newline = buf.last() == Some(&b'\n');
        let body = if ends_with_newline {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        // The last line: after the last newline of `body`.
        let last_nl = body.iter().rposition(|b| *b == b'\n');
        if last_nl.is_none() && start > 0 {
            window = (window * 2).min(len);
            continue;
        }
        let line_start = last_nl.map_or(0, |i| i + 1);
        let line = &body[line_start..];
        let parsed = parse_record(line);
        if ends_with_newline {
            tail.last = Some(parsed.map_err(|reason| damaged_tail(path, reason))?);
            return Ok(tail);
        }
        match parsed {
            Ok(rec) => {
                tail.last = Some(rec);
                tail.missing_newline = true;
                return Ok(tail);
            }
            Err(_) => {
                // An interrupted write; the record before it is the last one.
                let torn_at = start + line_start as u64;
                tail.torn_at = Some(torn_at);
                if torn_at == 0 {
                    return Ok(tail);
                }
                let prev_body = &body[..line_start - 1];
                let prev_nl = prev_body.iter().rposition(|b| *b == b'\n');
                if prev_nl.is_none() && start > 0 {
                    window = (window * 2).min(len);
                    continue;
                }
                let prev = &prev_body[prev_nl.map_or(0, |i| i + 1)..];
                tail.last = Some(parse_record(prev).map_err(|reason| damaged_tail(path, reason))?);
                return Ok(tail);
            }
        }
    }
}

fn parse_record(line: &[u8]) -> Result<AuditRecord, String> {
    serde_json::from_slice(line).map_err(|e| format!("the last record cannot be read ({e})"))
}

fn damaged_tail(path: &Path, reason: String) -> AuditError {
    // The line number is not known without reading the whole file; verify
    // names it.
    AuditError::Damaged {
        path: path.to_path_buf(),
        line: None,
        reason,
    }
}

/// The head must name the last record, or the one before it (a crash between
/// writing the record and replacing the head).
fn check_head(
    path: &Path,
    head_path: &Path,
    last: Option<&AuditRecord>,
    head: Option<&Head>,
) -> Result<(), AuditError> {
    let mismatch = |detail: String| AuditError::HeadMismatch {
        path: path.to_path_buf(),
        head: head_path.to_path_buf(),
        detail,
    };
    match (last, head) {
        (None, None) => Ok(()),
        (None, Some(h)) => Err(mismatch(format!(
            "the log is empty but {} says it ended at seq {}",
            head_path.display(),
            h.seq
        ))),
        (Some(l), None) if l.seq <= 1 => Ok(()),
        (Some(l), None) => Err(mismatch(format!(
            "the log ends at seq {} but its head file {} is missing",
            l.seq,
            head_path.display()
        ))),
        (Some(l), Some(h)) if h.seq == l.seq && h.hash == l.hash => Ok(()),
        (Some(l), Some(h)) if h.seq + 1 == l.seq && h.hash == l.prev_hash => Ok(()),
        (Some(l), Some(h)) if h.seq == l.seq => Err(mismatch(format!(
            "its last record (seq {}) is not the one {} recorded (the hashes differ)",
            l.seq,
            head_path.display()
        ))),
        (Some(l), Some(h)) => Err(mismatch(format!(
            "the log ends at seq {} but {} says seq {}",
            l.seq,
            head_path.display(),
            h.seq
        ))),
    }
}
