//! The small files a migration folder holds beside its scripts (sqitch's
//! configuration and plan, a Flyway script's `.conf`, `.pgpilot-id`): read
//! as the runbook's `.sql` files are — only regular files, bounded, and only
//! inside the folder after every link is resolved. The folder is under
//! review; a FIFO, `/dev/zero` or a link out of it must not hang `check`,
//! grow it without end, or make it read a file no reviewer saw.

use std::path::Path;

use crate::diag::{Diagnostic, Location};
use crate::regular_file::{SOURCE_LIMIT, read_regular};

/// Why a file of the folder was not read.
pub enum Unread {
    /// No such file: the caller's default applies.
    Absent,
    /// The file exists but may not be read; the diagnostic says why.
    Refused(Diagnostic),
}

/// The text of `rel` in the folder `dir`. `at` is where a problem is
/// reported: the file itself, or the setting that named it.
pub fn read_in_folder(dir: &Path, rel: &str, at: &Location) -> Result<String, Unread> {
    let path = dir.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(Unread::Absent);
    }
    let refuse = |message: String, help: &str| {
        Unread::Refused(Diagnostic::error(at.clone(), message).with_help(help))
    };
    let inside = match (std::fs::canonicalize(dir), std::fs::canonicalize(&path)) {
        (Ok(folder), Ok(real)) => real.starts_with(folder),
        (_, Err(e)) => {
            return Err(refuse(
                format!("cannot read {}: {e}", path.display()),
                "the folder's files are read from inside it",
            ));
        }
        (Err(_), Ok(_)) => false,
    };
    if !inside {
        return Err(refuse(
            format!("{} is outside the project's folder", path.display()),
            "keep the file in the migration folder: pgpilot reads only what a review of the folder shows",
        ));
    }
    let bytes = read_regular(&path, SOURCE_LIMIT).map_err(|e| {
        refuse(
            format!("cannot read {}: {e}", path.display()),
            "pgpilot reads regular files of up to 16 MiB from a migration folder",
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        refuse(
            format!("{} is not valid UTF-8 text", path.display()),
            "save the file as UTF-8",
        )
    })
}
