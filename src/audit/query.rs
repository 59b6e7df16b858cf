//! Reading the local log back, and choosing records by runbook, time and action.

use std::io::BufReader;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};

use super::chain::MAX_RECORD_LINE;
use super::error::AuditError;
use super::record::{Action, AuditRecord};
use crate::regular_file::{Line, open_regular, read_line};

/// Which records to show or export; every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub runbook: Option<String>,
    /// At or after this instant.
    pub since: Option<DateTime<Utc>>,
    pub action: Option<Action>,
}

impl Selection {
    pub fn matches(&self, rec: &AuditRecord) -> bool {
        self.runbook
            .as_ref()
            .is_none_or(|r| rec.runbook.as_ref() == Some(r))
            && self.since.is_none_or(|t| rec.ts >= t)
            && self.action.is_none_or(|a| rec.action == a)
    }
}

/// `2026-11-23` (midnight UTC) or an RFC 3339 time (`2026-11-23T14:00:00Z`,
/// `2026-11-23T15:00:00+01:00`).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("--since {text:?}: use a date (2026-11-23) or an RFC 3339 time (2026-11-23T14:00:00Z)"))
}

/// The records of a log in file order. Lines that cannot be read are left
/// out here; `audit verify` names them. The log must be a regular file, and
/// a line longer than any record is an error rather than read to its end.
pub fn read_records(path: &Path) -> Result<Vec<AuditRecord>, AuditError> {
    let file = open_regular(path).map_err(|e| AuditError::file("read", path, e))?;
    let mut out = Vec::new();
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        line += 1;
        match read_line(&mut reader, &mut buf, MAX_RECORD_LINE)
            .map_err(|e| AuditError::io("read", path, e))?
        {
            Line::End => break,
            Line::TooLong => {
                return Err(AuditError::LineTooLong {
                    path: path.to_path_buf(),
                    line,
                    limit: MAX_RECORD_LINE,
                });
            }
            Line::Complete | Line::Unterminated => {}
        }
        if let Ok(rec) = serde_json::from_slice::<AuditRecord>(&buf) {
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_and_rfc3339() {
        assert_eq!(
            parse_since("2026-11-23").unwrap().to_rfc3339(),
            "2026-11-23T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-11-23T15:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-23T14:00:00+00:00"
        );
        assert!(parse_since("yesterday").unwrap_err().contains("--since"));
    }
}
