//! `pgpilot status`: what is applied on a target, from the target itself.

use serde::Serialize;
use tokio_postgres::Client;

use super::schema::{self, SchemaError};
use super::state::{self, Status};
use crate::runbook::Runbook;

#[derive(Serialize)]
pub struct StepStatus {
    pub phase: String,
    pub id: String,
    pub kind: &'static str,
    /// `pending` when the target has no record of the step.
    pub status: String,
    pub operator: Option<String>,
    pub role: Option<String>,
    pub client_host: Option<String>,
    pub at: Option<String>,
    pub duration_ms: Option<i64>,
    /// The applied step differs from the runbook's current text.
    pub changed: bool,
    /// A passed check or verify whose pass is stale: this earlier change
    /// step was rolled back after it passed.
    pub stale_after: Option<String>,
    /// A backfill's last key walked (as text), keys walked, and the percent
    /// of its estimate then; null for other steps.
    pub cursor: Option<String>,
    pub rows_done: Option<i64>,
    pub percent: Option<u8>,
    /// A dump backup step's id: path, size and SHA-256; null for others.
    pub backup: Option<crate::backup::BackupId>,
}

/// Why `pgpilot status` could not read the target.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A schema this pgpilot does not know (newer), or its version unreadable.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot read pgpilot.step_state: {}", crate::pg::redact(&.0.to_string()))]
    Read(#[from] tokio_postgres::Error),
}

/// Each step's state; read-only, so an older schema is read as it is (only
/// `run` and `rollback` upgrade it) and a newer one is refused.
pub async fn step_statuses(
    client: &Client,
    runbook: &Runbook,
) -> Result<Vec<StepStatus>, StatusError> {
    schema::check(client).await?;
    let mut states = state::load(client, &runbook.id).await?;
    // A migration folder's tool history counts, as in a run (read only).
    if let Some(tool) = runbook.history {
        let applied = super::history::read(client, runbook, tool).await?;
        super::history::mark_applied(runbook, tool, &applied, &mut states);
    }
    let stale = super::truth::stale_checks(runbook, &states);
    Ok(runbook
        .steps()
        .map(|(phase, step)| {
            let st = states.get(&step.id);
            StepStatus {
                phase: phase.id.clone(),
                id: step.id.clone(),
                kind: step.kind.as_str(),
                status: st
                    .map(|s| s.status.as_str())
                    .unwrap_or("pending")
                    .to_string(),
                operator: st.map(|s| s.operator.clone()),
                role: st.map(|s| s.role.clone()),
                client_host: st.map(|s| s.client_host.clone()),
                at: st.map(|s| s.updated_at.clone()),
                duration_ms: st.and_then(|s| s.duration_ms),
                changed: st.is_some_and(|s| {
                    s.status == Status::Applied && s.step_sha256 != state::step_hash(step)
                }),
                stale_after: stale.get(&step.id).cloned(),
                cursor: st.and_then(|s| s.cursor.clone()),
                rows_done: st.and_then(|s| s.rows_done),
                percent: st.and_then(|s| percent(s.rows_done?, s.rows_total?)),
                backup: st.and_then(|s| s.backup.clone()),
            }
        })
        .collect())
}

fn percent(done: i64, total: i64) -> Option<u8> {
    if total <= 0 {
        return None;
    }
    Some((done.max(0).saturating_mul(100) / total).clamp(0, 100) as u8)
}

pub fn to_text(runbook: &Runbook, target: &str, steps: &[StepStatus]) -> String {
    // One line, controls visible: a runbook's title must not print lines
    // that pass for the status of steps.
    let mut out = format!(
        "{} ({}) on {target}\n",
        crate::text::one_line(&runbook.title),
        crate::text::one_line(&runbook.id)
    );
    let width = steps.iter().map(|s| s.id.len()).max().unwrap_or(4);
    // "backfill" is longer than "change": the widest kind sets the column.
    let kinds = steps.iter().map(|s| s.kind.len()).max().unwrap_or(7);
    for s in steps {
        let who = match (&s.operator, &s.role, &s.client_host, &s.at) {
            (Some(o), Some(r), Some(h), Some(at)) => format!("by {o} (role {r}) from {h} at {at}"),
            _ => String::new(),
        };
        let changed = if s.changed {
            "  CHANGED since applied"
        } else {
            ""
        };
        let (status, stale) = match &s.stale_after {
            Some(undone) => (
                "stale",
                format!("  (passed before {undone} was rolled back)"),
            ),
            None => (s.status.as_str(), String::new()),
        };
        let walked = match (&s.cursor, s.rows_done, s.status.as_str()) {
            (Some(c), Some(done), "in_progress") => format!(
                "  {}% walked ({done} keys), cursor {}",
                s.percent.map_or("?".into(), |p| p.to_string()),
                crate::text::one_line(c)
            ),
            _ => String::new(),
        };
        let line = format!(
            "  {:<width$}  {:<kinds$}  {:<12}  {who}{changed}{stale}{walked}",
            s.id, s.kind, status
        );
        out.push_str(line.trim_end());
        out.push('\n');
        if let Some(b) = &s.backup {
            out.push_str(&format!("  {:<width$}  backup {b}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, kind: &'static str, status: &str) -> StepStatus {
        StepStatus {
            phase: "p".into(),
            id: id.into(),
            kind,
            status: status.into(),
            operator: None,
            role: None,
            client_host: None,
            at: None,
            duration_ms: None,
            changed: false,
            stale_after: None,
            cursor: None,
            rows_done: None,
            percent: None,
            backup: None,
        }
    }

    #[test]
    fn the_status_column_lines_up_under_a_backfill_and_no_line_trails_spaces() {
        let text = "[runbook]\nid = \"t\"\ntitle = \"t\"\n[[phase]]\nid = \"p\"\n\
            [[phase.step]]\nid = \"a\"\nkind = \"check\"\nsql = \"SELECT 1\"\n";
        let rb = crate::runbook::parse_str(std::path::Path::new("t.toml"), text.into())
            .unwrap_or_else(|d| panic!("runbook: {d:?}"));
        let out = to_text(
            &rb,
            "h:5432/db",
            &[
                row("add-country", "change", "applied"),
                row("fill-country", "backfill", "pending"),
            ],
        );
        let lines: Vec<&str> = out.lines().skip(1).collect();
        let column = |l: &str, word: &str| l.find(word).unwrap_or(usize::MAX);
        assert_eq!(
            column(lines[0], "applied"),
            column(lines[1], "pending"),
            "{out}"
        );
        assert!(out.lines().all(|l| l == l.trim_end()), "{out:?}");
    }
}
