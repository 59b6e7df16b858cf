//! Reading a file someone else named (a runbook, a `.sql` file, an audit log)
//! without being led astray: only a regular file is read, opening never waits
//! on a FIFO, and no more than a limit is ever read into memory.
//!
//! `/dev/zero` as a runbook, a FIFO as a `.sql` file or `audit show` of a
//! socket would otherwise hang pgpilot or grow it without end.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufRead, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The most a runbook or a `.sql` file may hold: 16 MiB.
pub const SOURCE_LIMIT: u64 = 16 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(FileKind),
    #[error("it is larger than {}", mib(*limit))]
    TooLarge { limit: u64 },
    /// The path named another file when opened than when inspected.
    #[error("it was replaced while pgpilot opened it")]
    Replaced,
}

/// What a path names when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Symlink,
    Other,
}

impl FileKind {
    /// `None` for a regular file.
    pub fn of(meta: &Metadata) -> Option<FileKind> {
        let t = meta.file_type();
        if t.is_file() {
            None
        } else if t.is_dir() {
            Some(FileKind::Directory)
        } else if t.is_fifo() {
            Some(FileKind::Fifo)
        } else if t.is_socket() {
            Some(FileKind::Socket)
        } else if t.is_char_device() {
            Some(FileKind::CharDevice)
        } else if t.is_block_device() {
            Some(FileKind::BlockDevice)
        } else if t.is_symlink() {
            Some(FileKind::Symlink)
        } else {
            Some(FileKind::Other)
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Symlink => "a symbolic link",
            FileKind::Other => "a special file",
        })
    }
}

/// `16 MiB`, `1 MiB`; sizes that are not whole MiB in bytes.
pub fn mib(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Opens `path` for reading if it is a regular file (symbolic links
/// followed). The type is checked before opening, so nothing is opened that
/// could block or have side effects (a FIFO, a terminal, a tape), and again
/// on the open descriptor, so a file swapped in between is caught too.
pub fn open_regular(path: &Path) -> Result<File, FileError> {
    let before = fs::metadata(path)?;
    if let Some(kind) = FileKind::of(&before) {
        return Err(FileError::NotRegular(kind));
    }
    // O_NONBLOCK: should a FIFO be swapped in after the check, opening it
    // returns at once instead of waiting for a writer; the fstat below then
    // refuses it. Reads of a regular file ignore the flag. O_NOCTTY: a
    // terminal swapped in never becomes the controlling terminal.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let after = file.metadata()?;
    if let Some(kind) = FileKind::of(&after) {
        return Err(FileError::NotRegular(kind));
    }
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(FileError::Replaced);
    }
    Ok(file)
}

/// The whole of a regular file of at most `limit` bytes: the one way
/// pgpilot reads a runbook, a `.sql` file or an audit head file.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(FileError::TooLarge { limit });
    }
    // `take` as well as the size check: the file may grow while it is read.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(bytes)
}

/// One line as [`read_line`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The end of the input; nothing was read.
    End,
    /// A line ending in `\n` (kept in the buffer).
    Complete,
    /// The last line, without a `\n`.
    Unterminated,
    /// A line longer than the limit; the buffer holds its first bytes.
    TooLong,
}

/// Appends the next line of `reader` to `buf`, reading at most `limit + 1`
/// bytes: a line (without its `\n`) longer than `limit` is reported, not
/// read to its end.
pub fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    let budget = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // read_until retries an interrupted read itself.
    let n = Read::take(&mut *reader, budget).read_until(b'\n', buf)?;
    Ok(if n == 0 {
        Line::End
    } else if buf.last() == Some(&b'\n') {
        Line::Complete
    } else if n as u64 == budget {
        Line::TooLong
    } else {
        Line::Unterminated
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn lines_longer_than_the_limit_are_reported_without_reading_them_whole() {
        let mut input = Cursor::new(b"abc\nabcdefgh\nxy".to_vec());
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut input, &mut buf, 4).unwrap(), Line::Complete);
        assert_eq!(buf, b"abc\n");
        buf.clear();
        assert_eq!(read_line(&mut input, &mut buf, 4).unwrap(), Line::TooLong);
        assert_eq!(buf.len(), 5);
        let mut input = Cursor::new(b"abcd\nxy".to_vec());
        buf.clear();
        assert_eq!(read_line(&mut input, &mut buf, 4).unwrap(), Line::Complete);
        buf.clear();
        assert_eq!(
            read_line(&mut input, &mut buf, 4).unwrap(),
            Line::Unterminated
        );
        assert_eq!(buf, b"xy");
        buf.clear();
        assert_eq!(read_line(&mut input, &mut buf, 4).unwrap(), Line::End);
    }

    #[test]
    fn devices_directories_and_large_files_are_refused() {
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(FileError::NotRegular(FileKind::CharDevice))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(FileError::NotRegular(FileKind::Directory))
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, [b'x'; 11]).unwrap();
        assert!(matches!(
            read_regular(&big, 10),
            Err(FileError::TooLarge { limit: 10 })
        ));
        assert_eq!(read_regular(&big, 11).unwrap().len(), 11);
        assert_eq!(mib(SOURCE_LIMIT), "16 MiB");
    }
}
