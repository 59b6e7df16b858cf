//! The files a runbook names: reading text, where `.sql` files may lie
//! (the runbook's folder and `sql_root`), and locations inside inline SQL.

use std::path::{Path, PathBuf};

use sha2::Digest;
use toml::Spanned;

use super::Parser;
use crate::diag::{BOM, Diagnostic, Location, SourceFile};
use crate::regular_file::{FileError, SOURCE_LIMIT, mib, read_regular};
use crate::runbook::sql_parts;
use crate::runbook::toml_string::decode_offsets;
use crate::runbook::*;

/// The bytes of a runbook or SQL file as text, or a diagnostic saying why not.
pub(super) fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    if bytes.contains(&0) {
        return Err(
            Diagnostic::error(Location::file(path), "this is a binary file, not text")
                .with_help("point pgpilot at the runbook's .toml file"),
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
        let file = SourceFile::new(path, prefix);
        Diagnostic::error(file.location(offset), "the file is not valid UTF-8 text")
            .with_help("save the file as UTF-8")
    })
}

impl Parser {
    pub(super) fn inline_sql(&self, value: &Spanned<String>) -> SqlText {
        let span = value.span();
        let text = value.get_ref().clone();
        match decode_offsets(&self.file.text, span.start, span.end) {
            Some(map) if map.len() == text.len() => {
                SqlText::new(text, self.file.clone(), Some(map), span.start)
            }
            _ => SqlText::detached(text, self.file.clone(), span.start),
        }
    }

    /// The runbook's folder, as written (`.` for a bare file name).
    pub(super) fn folder(&self) -> PathBuf {
        match self.file.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Sets where SQL files may lie: the runbook's folder, and the declared
    /// `sql_root`, both with every link resolved. Returns the canonical
    /// `sql_root`.
    pub(super) fn sql_roots(&mut self, declared: Option<&Spanned<String>>) -> Option<PathBuf> {
        let folder = self.folder();
        if let Ok(own) = std::fs::canonicalize(&folder) {
            self.sql_roots.push(own);
        }
        let declared = declared?;
        let at = declared.span().start;
        let written = Path::new(declared.get_ref());
        if written.as_os_str().is_empty() || written.is_absolute() {
            self.error(
                at,
                format!("sql_root {:?} is not a folder relative to the runbook's folder", declared.get_ref()),
                Some("name the folder of the runbook's .sql files relative to the runbook, e.g. sql_root = \"../db/migrations\"".into()),
            );
            return None;
        }
        let shown = folder.join(written);
        let root = match std::fs::canonicalize(&shown) {
            Ok(r) => r,
            Err(e) => {
                self.error(
                    at,
                    format!("sql_root: cannot find the folder {}: {e}", shown.display()),
                    Some("sql_root is relative to the runbook's folder; check the name, or create the folder".into()),
                );
                return None;
            }
        };
        if !root.is_dir() {
            self.error(
                at,
                format!("sql_root: {} is not a folder", shown.display()),
                Some("name the folder that holds the runbook's .sql files".into()),
            );
            return None;
        }
        self.sql_roots.push(root.clone());
        Some(root)
    }

    /// Where a step's `file` is: the path as written (for messages) and the
    /// canonical path to read, which must lie below one of the SQL roots.
    pub(super) fn sql_path(&self, name: &str) -> Result<(PathBuf, PathBuf), (String, String)> {
        let roots_help = "keep .sql files in the runbook's folder, or declare the folder that holds them with sql_root = \"…\" in [runbook] (a folder relative to the runbook's folder)";
        let written = Path::new(name);
        if written.is_absolute() {
            return Err((
                format!(
                    "file {name:?} is an absolute path; a step's file is relative to the runbook's folder"
                ),
                roots_help.to_string(),
            ));
        }
        let shown = self.folder().join(written);
        let real = std::fs::canonicalize(&shown).map_err(|e| {
            (
                format!("cannot read SQL file {}: {e}", shown.display()),
                "file is relative to the runbook's folder; check the name".to_string(),
            )
        })?;
        if !self.sql_roots.iter().any(|root| real.starts_with(root)) {
            let resolved = if real == shown {
                String::new()
            } else {
                format!(" (it resolves to {})", real.display())
            };
            return Err((
                format!(
                    "SQL file {} is outside the runbook's folder{}{resolved}",
                    shown.display(),
                    if self.sql_roots.len() > 1 {
                        " and its sql_root"
                    } else {
                        ""
                    },
                ),
                roots_help.to_string(),
            ));
        }
        Ok((shown, real))
    }

    /// A step's `file` (or `rollback_file`): the whole file, or the part
    /// `section` and `statement` pick, without the file's own
    /// `BEGIN … COMMIT` (see `sql_parts`).
    pub(super) fn sql_file(&mut self, f: &Spanned<String>, part: FilePart<'_>) -> Option<SqlText> {
        let (path, text) = self.read_sql_file(f)?;
        // A byte-order mark is no SQL; PostgreSQL's parser would take it
        // for a token. The source keeps it, so locations are counted from
        // the file's real start.
        let bom = if text.starts_with(BOM) {
            BOM.len_utf8()
        } else {
            0
        };
        let mut range = bom..text.len();
        if let Some(name) = part.section {
            match sql_parts::section(&text, name.get_ref()) {
                Some((_, r)) => range = r,
                None => {
                    let found: Vec<String> = sql_parts::sections(&text)
                        .iter()
                        .map(|(m, _)| format!("\"{}\"", m.name))
                        .collect();
                    self.error(
                        name.span().start,
                        format!(
                            "{} has no section {:?} (no line `-- migrate:{}`)",
                            path.display(),
                            name.get_ref(),
                            name.get_ref()
                        ),
                        Some(if found.is_empty() {
                            "the file has no `-- migrate:NAME` lines; remove the section key to run the whole file".into()
                        } else {
                            format!("its sections are: {}", found.join(", "))
                        }),
                    );
                    return None;
                }
            }
        }
        range = if part.read_only {
            sql_parts::without_own_read_only_block(&text, range)
        } else {
            sql_parts::without_own_transaction(&text, range)
        };
        if text[range.clone()].trim().is_empty() {
            let what = match part.section {
                Some(s) => format!("section {:?} of the SQL file is empty", s.get_ref()),
                None => "the SQL file is empty".into(),
            };
            self.diags.push(
                Diagnostic::error(Location::file(&path), what)
                    .with_help("write the step's statements in it, or point file at another file"),
            );
            return None;
        }
        if let Some(n) = part.statement {
            let wanted = usize::try_from(*n.get_ref()).unwrap_or(0);
            if wanted == 0 {
                self.error(
                    n.span().start,
                    "statement counts from 1",
                    Some("statement = 1 is the file's first statement".into()),
                );
                return None;
            }
            match sql_parts::statement(&text, range.clone(), wanted) {
                Ok(r) => range = r,
                Err(count) => {
                    self.error(
                        n.span().start,
                        format!(
                            "statement = {wanted}, but {} has {count} statement(s){}",
                            path.display(),
                            part.section
                                .map(|s| format!(" in section {:?}", s.get_ref()))
                                .unwrap_or_default()
                        ),
                        Some(format!("name a statement from 1 to {count}")),
                    );
                    return None;
                }
            }
        }
        let sql = text[range.clone()].to_string();
        let source = SourceFile::new(path, text);
        Some(SqlText::new(sql, source, None, range.start))
    }

    /// The text of a file a step names, confined to the SQL roots.
    fn read_sql_file(&mut self, f: &Spanned<String>) -> Option<(PathBuf, String)> {
        let at = f.span().start;
        let (path, real) = match self.sql_path(f.get_ref()) {
            Ok(p) => p,
            Err((message, help)) => {
                self.error(at, message, Some(help));
                return None;
            }
        };
        let bytes = match read_regular(&real, SOURCE_LIMIT) {
            Ok(b) => b,
            Err(e) => {
                let help = match &e {
                    FileError::Io(_) => {
                        "file is relative to the runbook's folder; check the name".to_string()
                    }
                    FileError::NotRegular(_) => {
                        "name a .sql file: pgpilot reads only regular files".to_string()
                    }
                    FileError::TooLarge { .. } => format!(
                        "pgpilot reads SQL files of up to {}; split the statements over several steps",
                        mib(SOURCE_LIMIT)
                    ),
                    FileError::Replaced => "run the command again".to_string(),
                };
                self.error(
                    at,
                    format!("cannot read SQL file {}: {e}", path.display()),
                    Some(help),
                );
                return None;
            }
        };
        self.hasher.update(&bytes);
        match text_of(&path, bytes) {
            Err(d) => {
                self.diags.push(d);
                None
            }
            Ok(text) => Some((path, text)),
        }
    }
}

/// Which part of a file a step runs (`section`, `statement`).
#[derive(Clone, Copy, Default)]
pub(super) struct FilePart<'a> {
    pub(super) section: Option<&'a Spanned<String>>,
    pub(super) statement: Option<&'a Spanned<i64>>,
    /// A check or verify step's file: its own `BEGIN … ROLLBACK` is
    /// unwrapped too (see `sql_parts::without_own_read_only_block`).
    pub(super) read_only: bool,
}
