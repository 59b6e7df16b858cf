//! `audit verify`: walks the chain and names the first line that breaks it.

use std::fmt;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::{self, GENESIS_HASH, Head};
use super::error::AuditError;
use super::file::FileLock;
use super::record::AuditRecord;
use crate::regular_file::{FileError, Line, mib, open_regular, read_line};

/// The result of walking a log. Tampering is a finding here, not an error.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub path: PathBuf,
    /// Records read before the first problem (all of them when intact).
    pub records: u64,
    pub last_seq: Option<u64>,
    pub last_hash: Option<String>,
    /// The first problem, if any.
    pub problem: Option<ChainProblem>,
    /// Things worth knowing that do not break the chain.
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Where the chain breaks and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainProblem {
    /// 1-based line of the log (for a removed tail: the line after the last).
    pub line: u64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProblemKind {
    /// Not a JSON record of the expected shape.
    Unparsable { reason: String },
    /// An empty line; pgpilot never writes one.
    BlankLine,
    /// A line longer than any record pgpilot writes; not read to its end.
    LineTooLong { limit: usize },
    /// The record's contents do not match its own hash.
    Edited { seq: u64 },
    /// `sql_sha256` is not the hash of `sql`.
    SqlHashMismatch { seq: u64 },
    /// seq jumps forward: records between were deleted.
    Gap { prev_seq: u64, seq: u64 },
    /// seq repeats or goes back: a record was inserted or moved.
    OutOfOrder { prev_seq: u64, seq: u64 },
    /// The first record does not start at seq 1: records were deleted from the start.
    BadStart { seq: u64 },
    /// `prev_hash` is not the hash of the record before it.
    BrokenLink { seq: u64 },
    /// The head file names a later record than the last one present.
    TailRemoved { last_seq: u64, head_seq: u64 },
    /// The head file names a seq of the log with another hash: that record was replaced.
    HeadDiffers { seq: u64 },
    /// More than one record and no head file.
    HeadMissing { head: PathBuf },
    /// The head file cannot be read.
    HeadUnreadable { head: PathBuf, reason: String },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Unparsable { reason } => {
                write!(f, "not a readable audit record: {reason}")
            }
            ProblemKind::BlankLine => write!(
                f,
                "blank line: the log never contains one, so the file was edited"
            ),
            ProblemKind::LineTooLong { limit } => write!(
                f,
                "a line longer than {}, more than any record pgpilot writes: this is not a pgpilot audit log, or it was damaged",
                mib(*limit as u64)
            ),
            ProblemKind::Edited { seq } => write!(
                f,
                "record seq {seq} was edited after it was written: its contents do not match its hash"
            ),
            ProblemKind::SqlHashMismatch { seq } => write!(
                f,
                "record seq {seq}: sql_sha256 is not the hash of its sql, so the record was rewritten"
            ),
            ProblemKind::Gap { prev_seq, seq } => {
                write!(
                    f,
                    "seq jumps from {prev_seq} to {seq}: {} record(s) deleted before this line",
                    seq - prev_seq - 1
                )
            }
            ProblemKind::OutOfOrder { prev_seq, seq } => {
                write!(
                    f,
                    "seq {seq} follows seq {prev_seq}: a record was inserted (or copied) or lines were reordered"
                )
            }
            ProblemKind::BadStart { seq } => write!(
                f,
                "the log starts at seq {seq} instead of 1: records were deleted from its start"
            ),
            ProblemKind::BrokenLink { seq } => write!(
                f,
                "record seq {seq}: prev_hash does not match the record before it, so a record was replaced, inserted or deleted"
            ),
            ProblemKind::TailRemoved { last_seq, head_seq } => write!(
                f,
                "the log ends at seq {last_seq} but its head file says seq {head_seq}: {} record(s) removed from the end",
                head_seq - last_seq
            ),
            ProblemKind::HeadDiffers { seq } => write!(
                f,
                "record seq {seq} is not the one the head file recorded: it was replaced"
            ),
            ProblemKind::HeadMissing { head } => write!(
                f,
                "the head file {} is missing, so a removed tail cannot be ruled out (copy it along with the log)",
                head.display()
            ),
            ProblemKind::HeadUnreadable { head, reason } => write!(
                f,
                "the head file {} cannot be read: {reason}",
                head.display()
            ),
        }
    }
}

impl fmt::Display for VerifyReport {
    /// `ok: N records, chain intact, last seq S` or `FILE:LINE: error: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "ok: {} records, chain intact, last seq {}",
                self.records,
                self.last_seq.unwrap_or(0)
            ),
            Some(p) => write!(f, "{}:{}: error: {}", self.path.display(), p.line, p.kind),
        }
    }
}

/// Walks the log at `path` and checks every link of the chain, then the head
/// file. Holds a shared lock so a concurrent append cannot race the check.
/// A missing log is an error unless its head file exists (then the log was
/// removed, which is a finding).
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let head_path = chain::head_path(path);
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        records: 0,
        last_seq: None,
        last_hash: None,
        problem: None,
        notes: Vec::new(),
    };
    let file = match open_regular(path) {
        Ok(f) => Some(f),
        Err(FileError::Io(e)) if e.kind() == io::ErrorKind::NotFound && head_path.exists() => None,
        Err(e) => return Err(AuditError::file("read", path, e)),
    };
    let _lock = file
        .as_ref()
        .map(|f| FileLock::shared(f, path))
        .transpose()?;
    // Read under the lock, before the walk: the record it names is looked for
    // on the way.
    let head = chain::read_head(&head_path);
    let head_seq = head.as_ref().ok().and_then(|h| h.as_ref().map(|h| h.seq));
    let mut at_head: Option<(u64, String)> = None;
    let mut lines_read = 0u64;
    let mut last: Option<AuditRecord> = None;
    if let Some(file) = &file {
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let read = read_line(&mut reader, &mut buf, chain::MAX_RECORD_LINE)
                .map_err(|e| AuditError::io("read", path, e))?;
            if read == Line::End {
                break;
            }
            lines_read += 1;
            if read == Line::TooLong {
                report.problem = Some(ChainProblem {
                    line: lines_read,
                    kind: ProblemKind::LineTooLong {
                        limit: chain::MAX_RECORD_LINE,
                    },
                });
                return Ok(report);
            }
            let complete = read == Line::Complete;
            let line = if complete {
                &buf[..buf.len() - 1]
            } else {
                &buf[..]
            };
            match check_line(line, complete, last.as_ref()) {
                Ok(rec) => {
                    if Some(rec.seq) == head_seq {
                        at_head = Some((lines_read, rec.hash.clone()));
                    }
                    report.records += 1;
                    report.last_seq = Some(rec.seq);
                    report.last_hash = Some(rec.hash.clone());
                    last = Some(rec);
                }
                Err(kind) => {
                    report.problem = Some(ChainProblem {
                        line: lines_read,
                        kind,
                    });
                    return Ok(report);
                }
            }
        }
    }
    check_head(
        &mut report,
        &head_path,
        head,
        last.as_ref(),
        at_head,
        lines_read,
    );
    Ok(report)
}

fn check_line(
    line: &[u8],
    complete: bool,
    prev: Option<&AuditRecord>,
) -> Result<AuditRecord, ProblemKind> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(ProblemKind::BlankLine);
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| ProblemKind::Unparsable {
        reason: if complete {
            e.to_string()
        } else {
            format!("{e} (the last line is incomplete: a write was interrupted)")
        },
    })?;
    if !value.is_object() {
        return Err(ProblemKind::Unparsable {
            reason: "not a JSON object".into(),
        });
    }
    let rec: AuditRecord =
        serde_json::from_value(value.clone()).map_err(|e| ProblemKind::Unparsable {
            reason: e.to_string(),
        })?;
    if chain::record_hash(&value) != rec.hash {
        return Err(ProblemKind::Edited { seq: rec.seq });
    }
    if let Some(sql) = &rec.sql
        && rec.sql_sha256.as_deref() != Some(chain::sha256_hex(sql.as_bytes()).as_str())
    {
        return Err(ProblemKind::SqlHashMismatch { seq: rec.seq });
    }
    match prev {
        None if rec.seq != 1 => return Err(ProblemKind::BadStart { seq: rec.seq }),
        None if rec.prev_hash != GENESIS_HASH => {
            return Err(ProblemKind::BrokenLink { seq: rec.seq });
        }
        None => {}
        Some(p) if rec.seq > p.seq + 1 => {
            return Err(ProblemKind::Gap {
                prev_seq: p.seq,
                seq: rec.seq,
            });
        }
        Some(p) if rec.seq <= p.seq => {
            return Err(ProblemKind::OutOfOrder {
                prev_seq: p.seq,
                seq: rec.seq,
            });
        }
        Some(p) if rec.prev_hash != p.hash => return Err(ProblemKind::BrokenLink { seq: rec.seq }),
        Some(_) => {}
    }
    Ok(rec)
}

/// The head must name a record of the chain: the last one, or an earlier one
/// when pgpilot stopped between syncing records and bringing the head up to
/// date (it is written after the records it names are on disk, and not
/// synced itself, so after a power loss it may lag further). A head past the
/// end means records were removed from the end.
fn check_head(
    report: &mut VerifyReport,
    head_path: &Path,
    head: Result<Option<Head>, AuditError>,
    last: Option<&AuditRecord>,
    at_head: Option<(u64, String)>,
    lines: u64,
) {
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            let reason = match e {
                AuditError::Damaged { reason, .. } => reason,
                other => other.to_string(),
            };
            report.problem = Some(ChainProblem {
                line: lines.max(1),
                kind: ProblemKind::HeadUnreadable {
                    head: head_path.to_path_buf(),
                    reason,
                },
            });
            return;
        }
    };
    let problem = match (last, head) {
        (None, None) => None,
        (None, Some(Head { seq, .. })) => Some((
            1,
            ProblemKind::TailRemoved {
                last_seq: 0,
                head_seq: seq,
            },
        )),
        (Some(l), None) if l.seq <= 1 => {
            report.notes.push(format!(
                "no head file {} yet (a crash after the first record)",
                head_path.display()
            ));
            None
        }
        (Some(_), None) => Some((
            lines,
            ProblemKind::HeadMissing {
                head: head_path.to_path_buf(),
            },
        )),
        (Some(l), Some(h)) if h.seq > l.seq => Some((
            lines + 1,
            ProblemKind::TailRemoved {
                last_seq: l.seq,
                head_seq: h.seq,
            },
        )),
        (Some(l), Some(h)) => match at_head {
            Some((_, hash)) if hash == h.hash => {
                if h.seq < l.seq {
                    report.notes.push(format!(
                        "the head file names seq {}, {} record(s) before the end (pgpilot stopped before bringing it up to date); the next record fixes it",
                        h.seq,
                        l.seq - h.seq
                    ));
                }
                None
            }
            Some((line, _)) => Some((line, ProblemKind::HeadDiffers { seq: h.seq })),
            // seq 0 or a seq the walk never met: not a record of this chain.
            None => Some((lines, ProblemKind::HeadDiffers { seq: h.seq })),
        },
    };
    report.problem = problem.map(|(line, kind)| ChainProblem { line, kind });
}
