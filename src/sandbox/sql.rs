//! The few statements and connection strings the sandbox needs, on a thread
//! of their own so they work from sync and async code alike.

use std::fmt::Write as _;

use super::{CONNECT_TIMEOUT, SandboxError};
use crate::text::redact;

/// Quotes a conninfo value when it contains spaces, quotes or backslashes.
pub(super) fn quote_conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
    }
}

pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn create_database_at(conninfo: &str, name: &str) -> Result<(), SandboxError> {
    simple_query(conninfo, &format!("CREATE DATABASE {}", quote_ident(name))).map(|_| ())
}

/// Runs one statement and returns its rows as text. Uses its own thread and
/// current-thread runtime so it works from sync code and from inside an
/// async runtime alike (nested `block_on` would panic).
pub(super) fn simple_query(
    conninfo: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, SandboxError> {
    let mut config: tokio_postgres::Config =
        conninfo
            .parse()
            .map_err(|source| SandboxError::InvalidConninfo {
                conninfo: redact(conninfo),
                source,
            })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let shown = redact(conninfo);
    let sql = sql.to_string();
    let handle = std::thread::Builder::new()
        .name("pgpilot-sandbox-sql".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| SandboxError::io("cannot start a tokio runtime", e))?;
            rt.block_on(async move {
                let (client, connection) =
                    config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(|source| SandboxError::Connect {
                            conninfo: shown,
                            source,
                        })?;
                let conn = tokio::spawn(connection);
                let result = client.simple_query(&sql).await;
                drop(client);
                let _ = conn.await;
                let messages = result.map_err(|e| SandboxError::Query {
                    sql: sql.clone(),
                    detail: db_error_text(&e),
                })?;
                Ok(messages
                    .into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_string))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect())
            })
        })
        .map_err(|e| SandboxError::io("cannot spawn a database helper thread", e))?;
    handle
        .join()
        .map_err(|_| SandboxError::Runtime("the helper thread panicked".into()))?
}

/// Server message with detail and hint, or the driver's text.
fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                let _ = write!(text, " (detail: {detail})");
            }
            if let Some(hint) = db.hint() {
                let _ = write!(text, " (hint: {hint})");
            }
            text
        }
        None => e.to_string(),
    }
}
