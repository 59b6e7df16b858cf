//! `audit show` lines and `audit export` as JSON or CSV.

use std::fmt::Write as _;

use super::record::{Action, AuditRecord};

/// One human line per record: time, action, runbook/step, outcome, duration,
/// then the details (attempt, rows, SQLSTATE, message).
pub fn show_line(rec: &AuditRecord) -> String {
    let mut parts = vec![
        rec.ts.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        format!("{:<18}", rec.action.as_str()),
    ];
    let place = match (&rec.runbook, &rec.step) {
        (Some(r), Some(s)) => format!("{r}/{s}"),
        (Some(r), None) => r.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => "-".into(),
    };
    parts.push(place);
    if let Some(o) = &rec.outcome {
        parts.push(o.clone());
    }
    if let Some(ms) = rec.duration_ms {
        parts.push(format_ms(ms));
    }
    if let Some(a) = rec.attempt
        && (a > 1 || rec.action == Action::Retry)
    {
        parts.push(format!("attempt {a}"));
    }
    if let Some(n) = rec.rows {
        parts.push(format!("rows {n}"));
    }
    let mut message = String::new();
    if let Some(code) = &rec.sqlstate {
        let _ = write!(message, "[{code}]");
    }
    if let Some(m) = &rec.message {
        if !message.is_empty() {
            message.push(' ');
        }
        message.push_str(&one_line(m));
    }
    if !message.is_empty() {
        parts.push(message);
    }
    let mut line = parts.join("  ");
    if rec.rehearsal {
        line.push_str("  (rehearsal)");
    }
    line
}

/// `850 ms`, `1.2 s`, `3 min 05 s`, `2 h 07 min`.
pub fn format_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Newlines and tabs as spaces, for one-line displays.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A JSON array of the records, as stored.
pub fn to_json(records: &[AuditRecord]) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(records)?;
    text.push('\n');
    Ok(text)
}

/// CSV columns, in order.
pub const CSV_HEADER: [&str; 26] = [
    "seq",
    "ts",
    "session",
    "operator",
    "role",
    "client_host",
    "target_host",
    "target_port",
    "target_database",
    "runbook",
    "runbook_sha256",
    "ticket",
    "phase",
    "step",
    "action",
    "sql",
    "sql_sha256",
    "outcome",
    "duration_ms",
    "rows",
    "sqlstate",
    "message",
    "attempt",
    "rehearsal",
    "prev_hash",
    "hash",
];

/// RFC 4180 CSV: a header row, then one row per record; fields holding a
/// comma, quote or line break are quoted, quotes doubled; empty for absent.
pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    push_row(&mut out, CSV_HEADER.iter().map(|h| h.to_string()));
    for r in records {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let (host, port, db) = match &r.target {
            Some(t) => (t.host.clone(), t.port.to_string(), t.database.clone()),
            None => Default::default(),
        };
        push_row(
            &mut out,
            [
                r.seq.to_string(),
                r.ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                r.session.clone(),
                r.operator.clone(),
                opt(&r.role),
                r.client_host.clone(),
                host,
                port,
                db,
                opt(&r.runbook),
                opt(&r.runbook_sha256),
                opt(&r.ticket),
                opt(&r.phase),
                opt(&r.step),
                r.action.as_str().to_string(),
                opt(&r.sql),
                opt(&r.sql_sha256),
                opt(&r.outcome),
                num(r.duration_ms),
                num(r.rows),
                opt(&r.sqlstate),
                opt(&r.message),
                num(r.attempt.map(u64::from)),
                r.rehearsal.to_string(),
                r.prev_hash.clone(),
                r.hash.clone(),
            ]
            .into_iter(),
        );
    }
    out
}

fn push_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&csv_field(&f));
    }
    out.push_str("\r\n");
}

/// Quotes a field when it needs it (RFC 4180 §2.6–2.7), after making it
/// safe to open: no formula a spreadsheet would run, no control characters.
pub fn csv_field(f: &str) -> String {
    let f = crate::text::csv_cell(f);
    if f.contains([',', '"', '\n', '\r']) || f.starts_with(' ') || f.ends_with(' ') {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_field("a\x1b[2Jb"), "a\\x1b[2Jb");
    }

    #[test]
    fn durations() {
        assert_eq!(format_ms(850), "850 ms");
        assert_eq!(format_ms(1_300), "1.3 s");
        assert_eq!(format_ms(185_000), "3 min 05 s");
        assert_eq!(format_ms(7_620_000), "2 h 07 min");
    }
}
