//! `[[health]]` gates evaluated on a connection: each in a READ ONLY
//! transaction (a savepoint inside a rehearsal's transaction) with a short
//! statement_timeout, so a gate can neither change nor stall anything. A
//! gate whose query fails, returns no number or NULL counts as breached:
//! fail closed, with the error shown.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::runbook::HealthGate;

/// How long one gate's query may run.
pub const GATE_TIMEOUT: &str = "5s";

/// A gate outside its bounds (or unreadable), as the operator reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub gate: String,
    /// The number seen, or the error that stood for it.
    pub value: String,
    /// "max 0", "min 3", "max 20, min 1".
    pub limit: String,
}

impl Breach {
    pub fn describe(&self) -> String {
        format!(
            "health gate {:?} breached: {} (limit: {})",
            self.gate, self.value, self.limit
        )
    }
}

fn limit(gate: &HealthGate) -> String {
    let mut parts = Vec::new();
    if let Some(m) = gate.max {
        parts.push(format!("max {m}"));
    }
    if let Some(m) = gate.min {
        parts.push(format!("min {m}"));
    }
    parts.join(", ")
}

/// The first gate breached, in runbook order; `None` when all pass.
/// `in_transaction`: the connection is inside a transaction (a rehearsal).
pub async fn first_breach(
    client: &Client,
    gates: &[HealthGate],
    in_transaction: bool,
) -> Option<Breach> {
    for gate in gates {
        let value = match gate_value(client, gate, in_transaction).await {
            Ok(v) => v,
            Err(error) => {
                return Some(Breach {
                    gate: gate.name.clone(),
                    value: error,
                    limit: limit(gate),
                });
            }
        };
        let over = gate.max.is_some_and(|m| value > m) || gate.min.is_some_and(|m| value < m);
        if over {
            return Some(Breach {
                gate: gate.name.clone(),
                value: value.to_string(),
                limit: limit(gate),
            });
        }
    }
    None
}

async fn gate_value(
    client: &Client,
    gate: &HealthGate,
    in_transaction: bool,
) -> Result<f64, String> {
    let (open, close) = if in_transaction {
        (
            format!("SAVEPOINT pgpilot_health; SET LOCAL statement_timeout = '{GATE_TIMEOUT}'"),
            "ROLLBACK TO SAVEPOINT pgpilot_health; RELEASE SAVEPOINT pgpilot_health",
        )
    } else {
        (
            format!("BEGIN READ ONLY; SET LOCAL statement_timeout = '{GATE_TIMEOUT}'"),
            "ROLLBACK",
        )
    };
    let said = |e: tokio_postgres::Error| {
        let text = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        let text = crate::pg::redact(&text);
        format!("its query failed: {}", crate::text::one_line(&text))
    };
    client.batch_execute(&open).await.map_err(said)?;
    let result = client.simple_query(&gate.sql.text).await;
    let closed = client.batch_execute(close).await;
    let messages = result.map_err(said)?;
    closed.map_err(said)?;
    let mut rows = messages.iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    });
    let (Some(row), None) = (rows.next(), rows.next()) else {
        return Err("its query did not return exactly one row".into());
    };
    if row.len() != 1 {
        return Err(format!(
            "its query returned {} columns, not one number",
            row.len()
        ));
    }
    match row.try_get(0) {
        Ok(Some(text)) => text.trim().parse::<f64>().map_err(|_| {
            format!(
                "its query returned {:?}, not a number",
                crate::text::one_line(&crate::text::for_terminal(text))
            )
        }),
        Ok(None) => Err("its query returned NULL".into()),
        Err(e) => Err(said(e)),
    }
}
