//! Opening a session: the runbook checked, the target connected, the audit ready.

use crate::analysis::RunbookAnalysis;
use crate::audit::AuditError;
use crate::audit::db::DbAudit;
use crate::audit::local::AuditLog;
use crate::audit::record::{AuditTarget, Context};
use crate::pg::{ConnSpec, PgError};
use crate::runbook::Runbook;

use super::{Recorder, RunOptions, Session};

/// Why a session could not be opened. The caller chooses the exit code
/// (`crate::exit::of_open`) and shows the message, which names the remedy.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The local audit log, which every action goes to first, cannot be opened.
    #[error("cannot open the local audit log: {0}")]
    AuditLog(#[source] AuditError),
    /// The executor's connection failed.
    #[error("{0}")]
    Connect(#[source] PgError),
}

/// Opens a session on `spec`, resolved by the caller (which shows its
/// warnings before anything can fail here).
pub async fn open(
    runbook: Runbook,
    analysis: RunbookAnalysis,
    spec: &ConnSpec,
    options: RunOptions,
) -> Result<Session, OpenError> {
    let spec = spec.with_application_name("pgpilot");
    let target = spec.target();
    let local = AuditLog::open_default().map_err(OpenError::AuditLog)?;
    let dbaudit = DbAudit::new(local.dir());
    let ctx = Context {
        session: format!("{:016x}", fastrand::u64(..)),
        operator: crate::os_user::operator_name(),
        role: Some(target.user.clone()),
        client_host: crate::os_user::host_name(),
        target: Some(AuditTarget {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone(),
        }),
        runbook: Some(runbook.id.clone()),
        runbook_sha256: Some(runbook.sha256.clone()),
        ticket: runbook.ticket.clone(),
        rehearsal: options.rehearse,
        emergency: options.emergency.clone(),
    };
    let conn = spec.connect().await.map_err(OpenError::Connect)?;
    Ok(Session {
        runbook,
        analysis,
        options,
        spec,
        conn,
        conn_pid: 0,
        recorder: Recorder::new(ctx, local, dbaudit),
    })
}
