//! The database's schema version line (`pgpilot.schema_versions`, schema
//! version 6): one row per runbook run to completion, with the version its
//! `[runbook] version` names; the current version is the newest row not
//! rolled back, so a runbook rolled back whole makes the version before it
//! current again. Like Flyway's history table, one line per database.

use tokio_postgres::Client;

/// A version row as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionRow {
    pub version: String,
    pub runbook: String,
    pub deployed_at: String,
    pub deployed_by: String,
}

/// The current version: the newest row not rolled back; `None` when the
/// database has no version recorded (or no table yet).
pub async fn current(client: &Client) -> Result<Option<VersionRow>, tokio_postgres::Error> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('pgpilot.schema_versions') IS NOT NULL AS present",
            &[],
        )
        .await?
        .try_get("present")?;
    if !present {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT version, runbook_id, deployed_by,
                    to_char(deployed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS deployed_at
               FROM pgpilot.schema_versions
              WHERE rolled_back_at IS NULL
              ORDER BY deployed_at DESC, id DESC
              LIMIT 1",
            &[],
        )
        .await?;
    row.map(|r| {
        Ok(VersionRow {
            version: r.try_get("version")?,
            runbook: r.try_get("runbook_id")?,
            deployed_at: r.try_get("deployed_at")?,
            deployed_by: r.try_get("deployed_by")?,
        })
    })
    .transpose()
}

/// Records `version` as deployed by this runbook, the version before it
/// kept as its `rollback_version`.
pub async fn record(
    client: &Client,
    runbook_id: &str,
    runbook_sha256: &str,
    version: &str,
    change_type: &str,
    operator: &str,
    before: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO pgpilot.schema_versions
                 (runbook_id, runbook_sha256, version, change_type, operator, rollback_version)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &runbook_id,
                &runbook_sha256,
                &version,
                &change_type,
                &operator,
                &before,
            ],
        )
        .await
        .map(|_| ())
}

/// Marks the runbook's rows rolled back (it was rolled back whole); returns
/// how many were.
pub async fn roll_back(client: &Client, runbook_id: &str) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgpilot.schema_versions
                SET rolled_back_at = now(), rolled_back_by = session_user
              WHERE runbook_id = $1 AND rolled_back_at IS NULL",
            &[&runbook_id],
        )
        .await
}
