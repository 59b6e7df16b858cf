//! The local audit log: one JSON object per line, hash-chained, fsynced.
//!
//! Every record is written here before its copy goes to the database
//! ([`super::db::DbAudit`]): the caller appends locally, and only then hands
//! the returned record to the database copy. The local file is the one that
//! exists whatever happens to the connection.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DurationRound, TimeDelta, Utc};

use super::chain::{self, GENESIS_HASH, Head};
use super::error::AuditError;
pub use super::file::{DATA_DIR_ENV, data_dir};
use super::file::{FileLock, append_whole, ensure_dir, open_private};
use super::record::{AuditRecord, Context, Event};
use crate::regular_file::{Line, mib, read_line};
use crate::text::redact;

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "audit.jsonl";

/// The default log: `audit.jsonl` in [`data_dir`].
pub fn default_log_path() -> Result<PathBuf, AuditError> {
    Ok(data_dir()?.join(LOG_FILE))
}

/// The hash-chained JSON Lines log. Several instances, in one process or
/// many, may append to the same file: each write holds an exclusive lock.
///
/// A record is written whole with one `write`, so once [`AuditLog::write`]
/// returned it survives the process being killed; [`AuditLog::sync`] (or a
/// [`Syncer`] on another thread) makes it survive a power loss too, and only
/// then moves the head file up to it. [`AuditLog::append`] does both.
///
/// The log and head files stay open for the instance's life (a session): a
/// log moved away meanwhile keeps receiving that session's records.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    path: PathBuf,
    head: PathBuf,
    file: Arc<File>,
    head_file: Arc<File>,
    /// The file as this instance left it: while its length is unchanged no
    /// one else wrote to it, and its end need not be read back.
    known: Option<Known>,
    /// The last record written and not yet synced.
    unsynced: Option<Head>,
}

#[derive(Debug, Clone)]
struct Known {
    len: u64,
    last: Head,
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
        let file = Arc::new(open_private(&path)?);
        let head = chain::head_path(&path);
        let head_file = Arc::new(chain::open_head(&head)?);
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            head,
            path,
            file,
            head_file,
            known: None,
            unsynced: None,
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

    /// Appends one record, syncs it and moves the head file to it; returns
    /// the record as written.
    pub fn append(&mut self, ctx: &Context, ev: Event) -> Result<AuditRecord, AuditError> {
        let rec = self.write(ctx, ev)?;
        self.sync()?;
        Ok(rec)
    }

    /// Writes one record (not yet synced) and returns it as written.
    ///
    /// Under an exclusive lock: finds the last record from the end of the
    /// file and checks it against the head file (or, while the file is as
    /// long as this instance left it, takes both as it left them), and writes
    /// the new line. Passwords in `sql` and `message` are redacted
    /// first, and `sql_sha256` is the hash of the SQL as recorded (redacted).
    /// Refuses to extend a log whose end disagrees with its head file, since
    /// that would hide the removed records.
    pub fn write(&mut self, ctx: &Context, ev: Event) -> Result<AuditRecord, AuditError> {
        let file = Arc::clone(&self.file);
        let _lock = FileLock::exclusive(&file, &self.path)?;
        let len = file
            .metadata()
            .map_err(|e| AuditError::io("inspect", &self.path, e))?
            .len();
        let (last, missing_newline, len) = match self.known.take() {
            Some(k) if k.len == len => (Some(k.last), false, len),
            _ => self.find_end(&file, len)?,
        };
        let (seq, prev_hash) = match &last {
            Some(last) => (last.seq + 1, last.hash.clone()),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut rec = build(ctx, ev, seq, prev_hash);
        rec.hash = chain::hash_of(&rec)
            .map_err(|e| AuditError::io("encode a record for", &self.path, io::Error::other(e)))?;
        let mut line = serde_json::to_string(&rec)
            .map_err(|e| AuditError::io("encode a record for", &self.path, io::Error::other(e)))?;
        if line.len() > chain::MAX_RECORD_LINE {
            return Err(AuditError::io(
                "append to",
                &self.path,
                io::Error::other(format!(
                    "the record would be {} bytes long, more than a record may hold ({})",
                    line.len(),
                    mib(chain::MAX_RECORD_LINE as u64)
                )),
            ));
        }
        line.push('\n');
        if missing_newline {
            line.insert(0, '\n');
        }
        append_whole(&file, &self.path, len, line.as_bytes())?;
        let end = Head {
            seq: rec.seq,
            hash: rec.hash.clone(),
        };
        // Appended whole under the lock: the file is now exactly this long.
        self.known = Some(Known {
            len: len + line.len() as u64,
            last: end.clone(),
        });
        self.unsynced = Some(end);
        Ok(rec)
    }

    /// Syncs what [`AuditLog::write`] wrote and moves the head file to it.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        match self.syncer() {
            Some(s) => s.run(),
            None => Ok(()),
        }
    }

    /// The work of [`AuditLog::sync`], to run on another thread while the
    /// caller goes on; `None` when everything written is synced.
    pub fn syncer(&mut self) -> Option<Syncer> {
        self.unsynced.take().map(|upto| Syncer {
            path: self.path.clone(),
            head: self.head.clone(),
            file: Arc::clone(&self.file),
            head_file: Arc::clone(&self.head_file),
            upto,
        })
    }

    /// Syncs the head file itself (at the end of a session).
    pub fn sync_head(&self) {
        let _ = self.head_file.sync_all();
    }

    /// Reads the end of the file, checks it against the head file, and cuts
    /// off a line a crash interrupted. Returns the last record, whether its
    /// newline is missing, and the file's length after the cut.
    fn find_end(&self, file: &File, len: u64) -> Result<(Option<Head>, bool, u64), AuditError> {
        let tail = read_tail(file, &self.path)?;
        let head = chain::read_head_from(&self.head_file, &self.head)?;
        check_head(
            file,
            &self.path,
            &self.head,
            tail.last.as_ref(),
            head.as_ref(),
        )?;
        if let Some(at) = tail.torn_at {
            // A write cut short: never acknowledged (a record counts once its
            // one write returned), and the head confirms a record before it.
            file.set_len(at)
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    AuditError::io("remove the interrupted last line of", &self.path, e)
                })?;
        }
        let last = tail.last.map(|r| Head {
            seq: r.seq,
            hash: r.hash,
        });
        Ok((last, tail.missing_newline, tail.torn_at.unwrap_or(len)))
    }
}

/// Syncs the log up to a record, then moves the head file to that record
/// unless another writer already moved it further. `Send`, so it can run on a
/// blocking thread while the engine talks to the server.
#[derive(Debug)]
pub struct Syncer {
    path: PathBuf,
    head: PathBuf,
    file: Arc<File>,
    head_file: Arc<File>,
    upto: Head,
}

impl Syncer {
    /// The sequence number of the last record this sync puts on disk.
    pub fn upto(&self) -> u64 {
        self.upto.seq
    }

    pub fn run(self) -> Result<(), AuditError> {
        self.file
            .sync_data()
            .map_err(|e| AuditError::io("sync", &self.path, e))?;
        let _lock = FileLock::exclusive(&self.file, &self.path)?;
        let current = chain::read_head_from(&self.head_file, &self.head)?;
        if current.is_none_or(|h| h.seq < self.upto.seq) {
            chain::write_head_to(&self.head_file, &self.head, &self.upto)?;
        }
        Ok(())
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
        emergency: ctx.emergency.as_deref().map(redact),
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
            window = grow(window, len, path)?;
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
                    window = grow(window, len, path)?;
                    continue;
                }
                let prev = &prev_body[prev_nl.map_or(0, |i| i + 1)..];
                tail.last = Some(parse_record(prev).map_err(|reason| damaged_tail(path, reason))?);
                return Ok(tail);
            }
        }
    }
}

/// The next, larger window of [`read_tail`]; never more than two lines of
/// the longest record pgpilot writes (the last line may be a torn one).
fn grow(window: u64, len: u64, path: &Path) -> Result<u64, AuditError> {
    let most = 2 * (chain::MAX_RECORD_LINE as u64 + 1);
    if window >= most {
        return Err(damaged_tail(
            path,
            format!(
                "its last line is longer than any record pgpilot writes ({})",
                mib(chain::MAX_RECORD_LINE as u64)
            ),
        ));
    }
    Ok((window * 2).min(len).min(most))
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

/// The head must name the last record or an earlier one of the chain (it is
/// moved only after the records up to it were synced, so a crash leaves it
/// behind, never ahead).
fn check_head(
    file: &File,
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
        (Some(l), Some(h)) if h.seq > l.seq => Err(mismatch(format!(
            "the log ends at seq {} but {} says seq {}",
            l.seq,
            head_path.display(),
            h.seq
        ))),
        (Some(l), Some(h)) => {
            let hash = if h.seq == l.seq {
                Some(l.hash.clone())
            } else if h.seq + 1 == l.seq {
                Some(l.prev_hash.clone())
            } else {
                // Behind by more than a record: only after a crash, once.
                hash_at(file, path, h.seq)?
            };
            if hash.as_deref() == Some(h.hash.as_str()) {
                Ok(())
            } else {
                Err(mismatch(format!(
                    "record seq {} is not the one {} recorded (the hashes differ)",
                    h.seq,
                    head_path.display()
                )))
            }
        }
    }
}

/// The hash of the record `seq`, reading the log from its start.
fn hash_at(file: &File, path: &Path, seq: u64) -> Result<Option<String>, AuditError> {
    let mut reader = io::BufReader::new(file);
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| AuditError::io("read", path, e))?;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        match read_line(&mut reader, &mut line, chain::MAX_RECORD_LINE)
            .map_err(|e| AuditError::io("read", path, e))?
        {
            Line::End => return Ok(None),
            Line::TooLong => {
                return Err(AuditError::LineTooLong {
                    path: path.to_path_buf(),
                    line: number,
                    limit: chain::MAX_RECORD_LINE,
                });
            }
            Line::Complete | Line::Unterminated => {}
        }
        if let Ok(rec) = serde_json::from_slice::<AuditRecord>(&line)
            && rec.seq == seq
        {
            return Ok(Some(rec.hash));
        }
    }
}
