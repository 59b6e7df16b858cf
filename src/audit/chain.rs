//! The hash chain: how a record's hash is computed, and the head file that
//! remembers where the chain ends.
//!
//! # The hash rule
//!
//! For a record `R` (one line of the log, a JSON object):
//!
//! ```text
//! R.hash = lowercase_hex( SHA-256( R.prev_hash ‖ canonical_json(R with "hash": "") ) )
//! ```
//!
//! - `R.prev_hash` is the `hash` of the record before it, or 64 `0`s
//!   ([`GENESIS_HASH`]) for the first record, as its 64 ASCII characters.
//! - `canonical_json` is the whole object as it was written, all members
//!   included (`null` ones too, and members this version does not know), with
//!   `hash` replaced by the empty string (the member stays), serialized with:
//!   object members sorted by key (byte order) at every level; no whitespace;
//!   integers in plain decimal; strings escaped as `serde_json` does (`\"`,
//!   `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control characters as
//!   `\u00xx`, everything else as raw UTF-8).
//! - `‖` is byte concatenation: nothing between the two parts.
//!
//! So anyone can recompute it, e.g. with Python:
//! `sha256((r["prev_hash"] + json.dumps({**r, "hash": ""}, sort_keys=True,
//! separators=(",", ":"), ensure_ascii=False)).encode())`.
//!
//! Each record also carries `seq` (1, 2, 3, … with no gaps), so a deleted or
//! inserted line shows as a gap or a repeat even before the hashes are
//! compared; the head file (`audit.head` beside `audit.jsonl`) holds the seq
//! and hash of the last record known to be on disk, so a removed tail is
//! detected too. The head is written after the records it names were synced:
//! after a crash it may name an earlier record of the chain (that is
//! accepted), never one past the end.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::AuditError;
use super::record::AuditRecord;
use crate::regular_file::{FileError, SOURCE_LIMIT, read_regular};

/// The longest line a record may take. Records carry a step's whole SQL, up
/// to [`SOURCE_LIMIT`] (16 MiB), and JSON escapes can make it longer; no
/// record pgpilot writes exceeds this (the writer refuses one that would),
/// and readers refuse a longer line instead of reading it to its end, so
/// `audit show` of a file without newlines runs in bounded memory.
pub const MAX_RECORD_LINE: usize = 4 * SOURCE_LIMIT as usize;

/// The most a head file is read of: it is [`HEAD_LEN`] bytes.
const HEAD_READ_LIMIT: u64 = 4096;

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The hash of a record given as a JSON object (see the module docs for the
/// rule). `record` may hold any `hash`; it is treated as `""`.
pub fn record_hash(record: &Value) -> String {
    let prev = record
        .get("prev_hash")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut blanked = record.clone();
    if let Value::Object(map) = &mut blanked {
        map.insert("hash".into(), Value::String(String::new()));
    }
    let mut input = String::with_capacity(prev.len() + 512);
    input.push_str(prev);
    canonical_json(&blanked, &mut input);
    sha256_hex(input.as_bytes())
}

/// The hash of a typed record, by the same rule.
pub fn hash_of(record: &AuditRecord) -> Result<String, serde_json::Error> {
    Ok(record_hash(&serde_json::to_value(record)?))
}

/// Writes `v` in canonical form: sorted keys, no whitespace.
pub fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here rather than relying on serde_json's map order, which
            // a dependency enabling `preserve_order` would change.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                canonical_json(val, out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serializing a &str cannot fail; the fallback keeps this total anyway.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// Where the chain ends, as last written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// `audit.head` beside `audit.jsonl` (the log's name with extension `head`).
pub fn head_path(log: &Path) -> PathBuf {
    log.with_extension("head")
}

/// Reads the head file; `None` when there is none.
pub fn read_head(path: &Path) -> Result<Option<Head>, AuditError> {
    let bytes = match read_regular(path, HEAD_READ_LIMIT) {
        Ok(b) => b,
        Err(FileError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(FileError::TooLarge { .. }) => {
            return Err(AuditError::Damaged {
                path: path.to_path_buf(),
                line: Some(1),
                reason: format!(
                    "the head file is longer than {HEAD_READ_LIMIT} bytes, so it is not one pgpilot wrote"
                ),
            });
        }
        Err(e) => return Err(AuditError::file("read", path, e)),
    };
    parse_head(&String::from_utf8_lossy(&bytes), path)
}

/// Opens (creating with mode 0600, empty) the head file for reading and
/// writing in place.
pub fn open_head(path: &Path) -> Result<fs::File, AuditError> {
    super::file::open_private_rw(path)
}

/// [`read_head`] from an open head file; `None` when it is empty.
pub fn read_head_from(file: &fs::File, path: &Path) -> Result<Option<Head>, AuditError> {
    let mut buf = [0u8; 2 * HEAD_LEN];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(AuditError::io("read", path, e)),
        }
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_head(&text, path)
}

fn parse_head(text: &str, path: &Path) -> Result<Option<Head>, AuditError> {
    if text.is_empty() {
        // Created, never written: a crash before the first head.
        return Ok(None);
    }
    serde_json::from_str(text.trim())
        .map(Some)
        .map_err(|e| AuditError::Damaged {
            path: path.to_path_buf(),
            line: Some(1),
            reason: format!("the head file cannot be read ({e})"),
        })
}

/// The head file's fixed size: the JSON, padded with spaces, and a newline.
/// Fixed, so every update overwrites the same bytes and never changes the
/// file's length.
pub const HEAD_LEN: usize = 128;

/// Overwrites the head file in place (creating it with mode 0600).
///
/// Not synced, on purpose: the caller writes a head only after the records up
/// to it were synced, so a crash can leave the head behind the log but never
/// ahead of it, and `audit verify` accepts a head behind the end as long as it
/// names a record of the chain. One write of [`HEAD_LEN`] bytes at offset 0
/// lies within one disk sector, so it is not torn. Syncing here (or writing a
/// temporary file and renaming it) cost 0.24–0.8 ms per record on the
/// benchmark machine, more than a whole step of psql; see docs/benchmarks.md.
pub fn write_head(path: &Path, head: &Head) -> Result<(), AuditError> {
    write_head_to(&open_head(path)?, path, head)
}

/// [`write_head`] to an open head file.
pub fn write_head_to(f: &fs::File, path: &Path, head: &Head) -> Result<(), AuditError> {
    let mut text = serde_json::to_string(head)
        .map_err(|e| AuditError::io("write", path, io::Error::other(e)))?;
    if text.len() + 1 > HEAD_LEN {
        return Err(AuditError::io(
            "write",
            path,
            io::Error::other("the head does not fit its fixed size"),
        ));
    }
    text.extend(std::iter::repeat_n(' ', HEAD_LEN - 1 - text.len()));
    text.push('\n');
    let write = || -> io::Result<()> {
        f.write_all_at(text.as_bytes(), 0)?;
        // A head file of an earlier version may be shorter or longer.
        if f.metadata()?.len() != HEAD_LEN as u64 {
            f.set_len(HEAD_LEN as u64)?;
        }
        Ok(())
    };
    write().map_err(|e| AuditError::io("write", path, e))
}

/// Syncs the head file, so after a power loss it is where the session left
/// it. Best effort: the head is allowed to lag anyway.
pub fn sync_head(path: &Path) {
    if let Ok(f) = super::file::open_private_read(path) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": {"y": null, "x": "q\"\n"}, "c": [true, 2] }"#)
                .unwrap();
        let mut out = String::new();
        canonical_json(&v, &mut out);
        assert_eq!(out, r#"{"a":{"x":"q\"\n","y":null},"b":1,"c":[true,2]}"#);
    }

    #[test]
    fn hash_ignores_the_stored_hash_and_covers_prev_hash() {
        let a: Value = serde_json::json!({"seq": 1, "prev_hash": GENESIS_HASH, "hash": "x"});
        let b: Value = serde_json::json!({"seq": 1, "prev_hash": GENESIS_HASH, "hash": "y"});
        assert_eq!(record_hash(&a), record_hash(&b));
        let expected = sha256_hex(
            format!("{GENESIS_HASH}{{\"hash\":\"\",\"prev_hash\":\"{GENESIS_HASH}\",\"seq\":1}}")
                .as_bytes(),
        );
        assert_eq!(record_hash(&a), expected);
    }
}
