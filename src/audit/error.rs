//! What can go wrong with the audit trail, each message saying what to do.

use std::io;
use std::path::{Path, PathBuf};

use crate::regular_file::{FileError, FileKind, mib};

/// An audit failure. Tampering found by `audit verify` is not an error but a
/// [`crate::audit::verify::VerifyReport`] finding; these are the failures
/// that stop a record from being written or a log from being read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Neither `PGPILOT_DATA_DIR` nor a home directory is available.
    #[error(
        "cannot find a data directory for the audit log (no home directory); \
         set PGPILOT_DATA_DIR to a directory pgpilot may write"
    )]
    NoDataDir,

    /// A file operation failed.
    #[error("cannot {action} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        /// What was being done, as a verb phrase ("append to", "lock").
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The data directory could be written by someone else, who could then
    /// plant links or replace the log.
    #[error("the data directory {} {problem}: others could replace or redirect the audit log there; {remedy}", dir.display())]
    UnsafeDataDir {
        dir: PathBuf,
        /// What is wrong, e.g. "is writable by group or others (mode 0777)".
        problem: String,
        /// The command that fixes it.
        remedy: String,
    },

    /// The path names a directory, a FIFO, a device…: audit files are regular files.
    #[error("cannot {action} {}: it is {kind}, not a regular file; {remedy}", path.display())]
    NotAFile {
        action: &'static str,
        path: PathBuf,
        kind: FileKind,
        remedy: &'static str,
    },

    /// A line longer than any record pgpilot writes.
    #[error(
        "{}:{line}: a line longer than {}, more than any record pgpilot writes: this is not \
         a pgpilot audit log, or it was damaged; run `pgpilot audit verify {}`",
        path.display(), mib(*limit as u64), path.display()
    )]
    LineTooLong {
        path: PathBuf,
        /// 1-based.
        line: u64,
        limit: usize,
    },

    /// A record needed to continue the chain cannot be read.
    #[error(
        "{}: {reason}; run `pgpilot audit verify {}`, keep the file for \
         investigation, and move it (with its .head file) aside to start a new log",
        location(path, *line), path.display()
    )]
    Damaged {
        path: PathBuf,
        /// 1-based, when known.
        line: Option<u64>,
        reason: String,
    },

    /// The head file disagrees with the end of the log: records were removed
    /// from its end, or the log was replaced.
    #[error(
        "{}: {detail}; records were removed from its end or the file was replaced. \
         Nothing more is appended to it: keep both files for investigation, run \
         `pgpilot audit verify {}`, then move {} and {} aside to start a new log",
        path.display(), path.display(), path.display(), head.display()
    )]
    HeadMismatch {
        path: PathBuf,
        head: PathBuf,
        detail: String,
    },

    /// The database copy could not be written.
    #[error("cannot {action} pgpilot.audit_log: {detail}")]
    Database {
        action: &'static str,
        detail: String,
    },
}

impl AuditError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> AuditError {
        AuditError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A file that could not be opened or read as a regular file.
    pub(crate) fn file(action: &'static str, path: &Path, e: FileError) -> AuditError {
        match e {
            FileError::Io(source) => AuditError::io(action, path, source),
            FileError::NotRegular(kind) => AuditError::NotAFile {
                action,
                path: path.to_path_buf(),
                kind,
                remedy: "name an audit log, a regular file such as audit.jsonl in the data directory",
            },
            other => AuditError::io(action, path, io::Error::other(other.to_string())),
        }
    }
}

fn location(path: &Path, line: Option<u64>) -> String {
    match line {
        Some(n) => format!("{}:{n}", path.display()),
        None => path.display().to_string(),
    }
}

fn io_hint(e: &io::Error) -> &'static str {
    // O_NOFOLLOW refuses a symbolic link with ELOOP.
    if e.raw_os_error() == Some(libc::ELOOP) {
        return "; it is a symbolic link, and pgpilot never writes an audit file through \
                one (a planted link would redirect the record): remove the link, and find \
                out who put it there";
    }
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            "; check the permissions of the data directory, or set PGPILOT_DATA_DIR \
             to a directory you own"
        }
        io::ErrorKind::NotFound => "; check the path",
        io::ErrorKind::StorageFull => "; free some disk space: nothing can be recorded until then",
        _ => "",
    }
}
