//! The `pgpilot audit` commands, as functions returning the exit code.
//!
//! Results go to stdout; problems to stderr as `FILE:LINE: error: …` or
//! `error: …`. Exit codes: 0 ok, 1 failure or tampering found, 2 usage.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::AuditError;
use super::export::{show_line, to_csv, to_json};
use super::local::default_log_path;
use super::markdown::change_record;
use super::query::{Selection, parse_since, read_records};
use super::record::{Action, AuditRecord};
use super::verify::{VerifyReport, verify};

use crate::exit::{FAILED, OK, USAGE};

/// The filters of `audit show` and `audit export`, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub runbook: Option<String>,
    /// A date (`2026-11-23`) or an RFC 3339 time.
    pub since: Option<String>,
    /// An action name (`step_success`, `confirmation`, …).
    pub action: Option<String>,
}

impl Filter {
    /// Checks the typed values; the error is a usage message.
    pub fn selection(&self) -> Result<Selection, String> {
        Ok(Selection {
            runbook: self.runbook.clone(),
            since: self.since.as_deref().map(parse_since).transpose()?,
            action: self
                .action
                .as_deref()
                .map(|a| {
                    a.trim()
                        .parse::<Action>()
                        .map_err(|e| format!("--action: {e}"))
                })
                .transpose()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Csv,
    Markdown,
}

/// `pgpilot audit verify [FILE]`: prints `ok: N records, chain intact, last
/// seq S` (exit 0) or `FILE:LINE: error: …` (exit 1).
pub fn verify_cmd(file: Option<&Path>) -> u8 {
    let Some((path, explicit)) = resolve(file) else {
        return FAILED;
    };
    match verify(&path) {
        Ok(report) => {
            for note in &report.notes {
                eprintln!(
                    "{}",
                    crate::text::for_terminal(&format!("{}: note: {note}", path.display()))
                );
            }
            if report.is_intact() {
                print_out(&format!(
                    "{}\n",
                    crate::text::for_terminal(&report.to_string())
                ));
                OK
            } else {
                eprintln!("{}", crate::text::for_terminal(&report.to_string()));
                FAILED
            }
        }
        Err(AuditError::Io { source, .. })
            if source.kind() == io::ErrorKind::NotFound && !explicit =>
        {
            print_out(&format!(
                "ok: 0 records, chain intact, last seq 0 (no audit log yet at {})\n",
                path.display()
            ));
            OK
        }
        Err(e) => {
            eprintln!("error: {}", crate::text::for_terminal(&e.to_string()));
            FAILED
        }
    }
}

/// `pgpilot audit show [FILE] [--runbook ID] [--since DATE] [--action ACTION]`.
pub fn show_cmd(file: Option<&Path>, filter: &Filter) -> u8 {
    run_listing(file, filter, |records, _, _| {
        let mut text = String::new();
        for r in records {
            text.push_str(&crate::text::for_terminal(&show_line(r)));
            text.push('\n');
        }
        Ok(text)
    })
}

/// `pgpilot audit export --format json|csv|markdown [FILE] [filters]`.
pub fn export_cmd(file: Option<&Path>, format: ExportFormat, filter: &Filter) -> u8 {
    run_listing(file, filter, |records, path, report| match format {
        ExportFormat::Json => to_json(records)
            .map(crate::text::json_safe)
            .map_err(|e| format!("cannot encode the records as JSON: {e}")),
        ExportFormat::Csv => Ok(to_csv(records)),
        // Markdown is read in a terminal as often as rendered.
        ExportFormat::Markdown => {
            Ok(crate::text::for_terminal(&change_record(records, path, report)).into_owned())
        }
    })
}

/// Reads, filters and renders; then says whether the chain held, since a
/// listing of a tampered log must not pass silently.
fn run_listing(
    file: Option<&Path>,
    filter: &Filter,
    render: impl FnOnce(&[AuditRecord], &Path, Option<&VerifyReport>) -> Result<String, String>,
) -> u8 {
    let selection = match filter.selection() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::text::for_terminal(&e.to_string()));
            return USAGE;
        }
    };
    let Some((path, explicit)) = resolve(file) else {
        return FAILED;
    };
    let records = match read_records(&path) {
        Ok(r) => r,
        Err(AuditError::Io { source, .. })
            if source.kind() == io::ErrorKind::NotFound && !explicit =>
        {
            Vec::new()
        }
        Err(e) => {
            eprintln!("error: {}", crate::text::for_terminal(&e.to_string()));
            return FAILED;
        }
    };
    let report = if records.is_empty() && !path.exists() {
        None
    } else {
        match verify(&path) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: {}", crate::text::for_terminal(&e.to_string()));
                return FAILED;
            }
        }
    };
    let chosen: Vec<AuditRecord> = records
        .into_iter()
        .filter(|r| selection.matches(r))
        .collect();
    let text = match render(&chosen, &path, report.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}", crate::text::for_terminal(&e.to_string()));
            return FAILED;
        }
    };
    print_out(&text);
    match &report {
        Some(r) if !r.is_intact() => {
            eprintln!("{}", crate::text::for_terminal(&r.to_string()));
            eprintln!(
                "warning: the audit chain is broken; the records above may have been altered"
            );
            FAILED
        }
        _ => OK,
    }
}

/// The log to read and whether the user named it.
fn resolve(file: Option<&Path>) -> Option<(PathBuf, bool)> {
    match file {
        Some(f) => Some((f.to_path_buf(), true)),
        None => match default_log_path() {
            Ok(p) => Some((p, false)),
            Err(e) => {
                eprintln!("error: {}", crate::text::for_terminal(&e.to_string()));
                None
            }
        },
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly
/// instead of panicking as `print!` would.
fn print_out(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
