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
//! compared; the head file (`audit.head` beside `audit.jsonl`) holds the last
//! seq and hash, so a removed tail is detected too.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::AuditError;
use super::record::AuditRecord;

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
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("read", path, e)),
    };
    serde_json::from_str(text.trim())
        .map(Some)
        .map_err(|e| AuditError::Damaged {
            path: path.to_path_buf(),
            line: Some(1),
            reason: format!("the head file cannot be read ({e})"),
        })
}

/// Replaces the head file atomically: a temporary file is written, fsynced
/// and renamed over it, then the directory is fsynced, so a crash leaves
/// either the old head or the new one.
pub fn write_head(path: &Path, head: &Head) -> Result<(), AuditError> {
    let tmp = path.with_extension(format!("head.tmp{}", std::process::id()));
    let mut text = serde_json::to_string(head)
        .map_err(|e| AuditError::io("write", &tmp, io::Error::other(e)))?;
    text.push('\n');
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(AuditError::io("write", &tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| AuditError::io("replace", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
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
