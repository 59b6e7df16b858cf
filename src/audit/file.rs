//! The files of the data directory: where it is, that it is the user's own
//! and closed to others, how pgpilot opens the files in it (mode 0600, no
//! links, no FIFOs), appends whole records, locks a file against other
//! pgpilot processes, and makes a rename durable. The local log
//! ([`super::local`]), its head file ([`super::chain`]) and the database
//! copy's spool ([`super::db`]) all go through here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::AuditError;
use crate::regular_file::FileKind;

/// Environment variable naming the data directory (tests and CI set it).
pub const DATA_DIR_ENV: &str = "PGPILOT_DATA_DIR";

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

/// Creates the data directory (mode 0700) if missing, and refuses one that
/// someone else could write to.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), AuditError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AuditError::io("create the directory", dir, e))?;
    check_private_dir(dir)
}

/// Whoever can write the data directory can plant a link or a FIFO at the
/// log's path, or replace the log and its head file together, so it must be
/// the user's own and closed to group and others.
fn check_private_dir(dir: &Path) -> Result<(), AuditError> {
    let meta = fs::metadata(dir).map_err(|e| AuditError::io("inspect", dir, e))?;
    let euid = crate::os_user::effective_uid();
    if meta.uid() != euid {
        return Err(AuditError::UnsafeDataDir {
            dir: dir.to_path_buf(),
            problem: format!("is owned by uid {}, not by you (uid {euid})", meta.uid()),
            remedy: format!(
                "make it yours (`sudo chown {euid} {}`), or set {DATA_DIR_ENV} to a directory you own",
                dir.display()
            ),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(AuditError::UnsafeDataDir {
            dir: dir.to_path_buf(),
            problem: format!("is writable by group or others (mode {mode:04o})"),
            remedy: format!("run `chmod 700 {}`", dir.display()),
        });
    }
    Ok(())
}

/// Flags of every audit file pgpilot opens. O_NOFOLLOW: a symbolic link
/// planted at the path fails the open (ELOOP) instead of sending records, or
/// a truncation, to its target. O_NONBLOCK: a FIFO planted there is opened
/// without waiting, then refused as not a regular file; writes to a regular
/// file ignore the flag.
const AUDIT_FILE_FLAGS: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// Opens an audit file with [`AUDIT_FILE_FLAGS`] and refuses anything but a
/// regular file.
pub(crate) fn open_audit_file(options: &mut OpenOptions, path: &Path) -> Result<File, AuditError> {
    let file = options
        .custom_flags(AUDIT_FILE_FLAGS)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?;
    match FileKind::of(&meta) {
        None => Ok(file),
        Some(kind) => Err(AuditError::NotAFile {
            action: "open",
            path: path.to_path_buf(),
            kind,
            remedy: "pgpilot creates its audit files itself: remove what is at that path, \
                     and find out who put it there",
        }),
    }
}

/// Opens (creating with mode 0600) a file for appending, and narrows its mode
/// to 0600 if someone widened it.
pub(crate) fn open_private(path: &Path) -> Result<File, AuditError> {
    let file = open_audit_file(
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600),
        path,
    )?;
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io("inspect", path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| AuditError::io("restrict to mode 0600", path, e))?;
    }
    Ok(file)
}

/// Opens (creating with mode 0600) a file for reading and writing in place.
pub(crate) fn open_private_rw(path: &Path) -> Result<File, AuditError> {
    open_audit_file(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
        path,
    )
}

/// Opens an existing audit file of the data directory for reading.
pub(crate) fn open_private_read(path: &Path) -> Result<File, AuditError> {
    open_audit_file(OpenOptions::new().read(true), path)
}

/// Appends `bytes` (whole records) with one write(2), so they are in the file
/// whole or not at all. A write that fails or comes up short (a full disk, a
/// file size limit) is undone: the file is cut back to `len`, its length
/// before, so no partial line is left to break the chain, and the error is
/// returned. Callers hold the file's lock, so nothing else was appended.
pub(crate) fn append_whole(
    file: &File,
    path: &Path,
    len: u64,
    bytes: &[u8],
) -> Result<(), AuditError> {
    let written = loop {
        match (&*file).write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other,
        }
    };
    let cause = match written {
        Ok(n) if n == bytes.len() => return Ok(()),
        Ok(n) => io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "only {n} of {} bytes could be written (a full disk or a file size limit)",
                bytes.len()
            ),
        ),
        Err(e) => e,
    };
    match file.set_len(len) {
        Ok(()) => Err(AuditError::io("append to", path, cause)),
        Err(cut) => Err(AuditError::io(
            "append to",
            path,
            io::Error::new(
                cause.kind(),
                format!("{cause}; removing the partial record failed too ({cut})"),
            ),
        )),
    }
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

/// Makes a rename durable. Best effort: some filesystems refuse to fsync a
/// directory, and the rename itself already happened.
pub(crate) fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
