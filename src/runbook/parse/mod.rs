//! From TOML text to a [`Runbook`], with every problem reported at its place.

mod approvals;
mod backfill;
mod dump;
mod files;
mod health;
mod messages;
mod notify;
mod raw;
mod step;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::diag::{BOM, Diagnostic, Location, SourceFile, nearest};
use crate::regular_file::{FileError, SOURCE_LIMIT, mib, read_regular};
use crate::runbook::*;
use files::text_of;
use messages::explain_toml_message;
use raw::RawFile;

/// Reads and validates a runbook file and the SQL files it names.
pub fn load(path: &Path) -> Result<Runbook, Vec<Diagnostic>> {
    let bytes = read_regular(path, SOURCE_LIMIT).map_err(|e| {
        let help = match &e {
            FileError::Io(_) | FileError::NotRegular(_) => {
                "check the path; runbooks are TOML files such as runbooks/add-column.toml"
                    .to_string()
            }
            FileError::TooLarge { .. } => format!(
                "pgpilot reads runbooks of up to {}; split the change into several runbooks",
                mib(SOURCE_LIMIT)
            ),
            FileError::Replaced => "run the command again".to_string(),
        };
        vec![
            Diagnostic::error(
                Location::file(path),
                format!("cannot read the runbook: {e}"),
            )
            .with_help(help),
        ]
    })?;
    let text = text_of(path, bytes).map_err(|d| vec![d])?;
    parse_str(path, text)
}
/// Validates runbook text as if read from `path` (SQL files are still read relative to it).
pub fn parse_str(path: &Path, text: String) -> Result<Runbook, Vec<Diagnostic>> {
    let file = SourceFile::new(path, text);
    let mut p = Parser {
        file: file.clone(),
        diags: Vec::new(),
        hasher: Sha256::new(),
        sql_roots: Vec::new(),
    };
    p.hasher.update(file.text.as_bytes());
    if file.text.trim_start_matches(BOM).trim().is_empty() {
        return Err(vec![
            Diagnostic::error(Location::file(path), "the runbook is empty").with_help(
                "a runbook needs a [runbook] table with id and title, and at least one [[phase]] with a [[phase.step]]",
            ),
        ]);
    }
    let raw: RawFile = toml::from_str(&file.text).map_err(|e| vec![p.toml_error(&e)])?;
    let runbook = p.runbook(raw);
    let errors: Vec<Diagnostic> = p.diags.into_iter().filter(|d| d.is_error()).collect();
    match runbook {
        Some(r) if errors.is_empty() => Ok(r),
        _ => Err(errors),
    }
}

struct Parser {
    file: Arc<SourceFile>,
    diags: Vec<Diagnostic>,
    hasher: Sha256,
    /// The canonical folders a step's `file` may lie in: the runbook's own,
    /// and `sql_root` when declared.
    sql_roots: Vec<PathBuf>,
}

const TOP_KEYS: [&str; 8] = [
    "runbook",
    "target",
    "settings",
    "approvals",
    "notify",
    "lint",
    "health",
    "phase",
];

impl Parser {
    fn at(&self, offset: usize) -> Location {
        self.file.location(offset)
    }

    fn error(&mut self, offset: usize, message: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::error(self.at(offset), message);
        d.help = help;
        self.diags.push(d);
    }

    fn toml_error(&self, e: &toml::de::Error) -> Diagnostic {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let (message, help) = explain_toml_message(e.message(), &self.file.text, e.span());
        let mut d = Diagnostic::error(self.at(offset), message);
        d.help = help;
        d
    }

    fn required_id(
        &mut self,
        id: Option<Spanned<String>>,
        table_at: usize,
        what: &str,
        table: &str,
    ) -> Option<String> {
        let Some(id) = id else {
            self.error(
                table_at,
                format!("{table} has no id"),
                Some(format!(
                    "add id = \"…\": the {what}, letters, digits, '.', '_' and '-'"
                )),
            );
            return None;
        };
        let valid = !id.get_ref().is_empty()
            && id.get_ref().len() <= 63
            && id
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.error(
                id.span().start,
                format!("{what} {:?} is not a valid id", id.get_ref()),
                Some("use 1 to 63 letters, digits, '.', '_' or '-', e.g. \"add-column\"".into()),
            );
            return None;
        }
        Some(id.into_inner())
    }

    fn choice<T>(
        &mut self,
        value: &Spanned<String>,
        names: &[&str],
        key: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value.get_ref());
        if parsed.is_none() {
            let help = match nearest(value.get_ref(), names.iter().copied()) {
                Some(n) => format!(
                    "did you mean \"{n}\"? {key} is one of: {}",
                    names.join(", ")
                ),
                None => format!("{key} is one of: {}", names.join(", ")),
            };
            self.error(
                value.span().start,
                format!("{key} {:?} is not known", value.get_ref()),
                Some(help),
            );
        }
        parsed
    }

    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(message) => {
                self.error(value.span().start, format!("{key}: {message}"), None);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Runbook, Vec<Diagnostic>> {
        parse_str(Path::new("t.toml"), text.to_string())
    }

    const MINIMAL: &str = "[runbook]\nid = \"r\"\ntitle = \"T\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"check\"\nsql = \"SELECT 1\"\n";

    #[test]
    fn minimal_runbook_has_defaults() {
        let r = parse(MINIMAL).unwrap();
        assert_eq!(r.id, "r");
        assert_eq!(r.change_type, ChangeType::Minor);
        assert_eq!(r.settings, Settings::default());
        assert_eq!(r.phases[0].steps[0].id, "s");
        assert_eq!(r.sha256.len(), 64);
    }

    #[test]
    fn unknown_key_names_place_and_suggests() {
        let text = MINIMAL.replace("kind = \"check\"", "kind = \"check\"\ntittle = \"x\"");
        let errs = parse(&text).unwrap_err();
        let e = &errs[0];
        assert_eq!(e.location.line, 9);
        assert!(
            e.message.contains("unknown key `tittle` in [[phase.step]]"),
            "{e}"
        );
        assert!(
            e.help.as_deref().unwrap().contains("did you mean `title`"),
            "{e}"
        );
    }

    #[test]
    fn step_setting_overrides_runbook_default() {
        let text = MINIMAL.replace("[[phase]]", "[settings]\nlock_timeout = \"1s\"\n[[phase]]")
            + "lock_timeout = \"500ms\"\n";
        let r = parse(&text).unwrap();
        assert_eq!(r.settings.lock_timeout, Duration::from_secs(1));
        assert_eq!(
            r.phases[0].steps[0].settings.lock_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn rehearsal_max_queue_is_a_runbook_setting_zero_turns_it_off() {
        assert_eq!(
            parse(MINIMAL).unwrap().settings.rehearsal_max_queue,
            Duration::from_secs(30)
        );
        let set = |v: &str| {
            MINIMAL.replace(
                "[[phase]]",
                &format!("[settings]\nrehearsal_max_queue = \"{v}\"\n[[phase]]"),
            )
        };
        let r = parse(&set("2s")).unwrap();
        assert_eq!(r.settings.rehearsal_max_queue, Duration::from_secs(2));
        assert_eq!(
            parse(&set("0")).unwrap().settings.rehearsal_max_queue,
            Duration::ZERO
        );
        let errs = parse(&set("soon")).unwrap_err();
        assert!(
            errs[0].message.contains("rehearsal_max_queue"),
            "{}",
            errs[0]
        );
        // A step cannot set it: the rehearsal is one transaction for all of them.
        let errs = parse(&(MINIMAL.to_string() + "rehearsal_max_queue = \"1s\"\n")).unwrap_err();
        assert!(
            errs[0]
                .message
                .contains("unknown key `rehearsal_max_queue`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn max_queue_stall_defaults_to_200ms_per_step_too_and_zero_turns_it_off() {
        let r = parse(MINIMAL).unwrap();
        assert_eq!(r.settings.max_queue_stall, Duration::from_millis(200));
        let set = MINIMAL.replace(
            "[[phase]]",
            "[settings]\nmax_queue_stall = \"0\"\n[[phase]]",
        );
        let r = parse(&(set + "max_queue_stall = \"1s\"\n")).unwrap();
        assert_eq!(r.settings.max_queue_stall, Duration::ZERO);
        let step = r.steps().next().map(|(_, s)| s.settings.max_queue_stall);
        assert_eq!(step, Some(Duration::from_secs(1)));
        let errs = parse(&(MINIMAL.to_string() + "max_queue_stall = \"soon\"\n")).unwrap_err();
        assert!(errs[0].message.contains("max_queue_stall"), "{}", errs[0]);
    }

    #[test]
    fn sql_locations_point_into_the_runbook() {
        let text = MINIMAL.replace(
            "sql = \"SELECT 1\"",
            "sql = \"\"\"\nSELECT 1;\nSELEC 2\"\"\"",
        );
        let r = parse(&text).unwrap();
        let sql = r.phases[0].steps[0].sql().unwrap();
        let at = sql.location(sql.text.find("SELEC 2").unwrap());
        assert_eq!((at.line, at.col), (11, 1));
    }
}
