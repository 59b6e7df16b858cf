//! The engine's side of the audit: each event goes to the local log first
//! (fsynced), then to `pgpilot.audit_log` in the target. During a rehearsal the
//! database copy waits until the rehearsal's transaction has been rolled back,
//! so the records survive it.

use tokio_postgres::Client;

use crate::audit::db::{DbAudit, DbWrite};
use crate::audit::local::AuditLog;
use crate::audit::record::{AuditRecord, Context, Event};

pub struct Recorder {
    ctx: Context,
    local: AuditLog,
    db: DbAudit,
    pending: Vec<AuditRecord>,
    local_error: Option<String>,
}

impl Recorder {
    pub fn new(ctx: Context, local: AuditLog, db: DbAudit) -> Recorder {
        Recorder {
            ctx,
            local,
            db,
            pending: Vec::new(),
            local_error: None,
        }
    }

    /// The session's audit context, for other writers of the same session (the TUI's panel actions).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn operator(&self) -> &str {
        &self.ctx.operator
    }

    pub fn client_host(&self) -> &str {
        &self.ctx.client_host
    }

    pub fn set_role(&mut self, role: &str) {
        self.ctx.role = Some(role.to_string());
    }

    /// Why the local log could not be written, if it could not: the engine
    /// changes nothing it cannot record.
    pub fn local_error(&self) -> Option<&str> {
        self.local_error.as_deref()
    }

    /// Records an event; `defer` holds the database copy back (inside a
    /// rehearsal). Returns what the operator should be told (a spooled copy).
    pub async fn record(&mut self, client: &Client, ev: Event, defer: bool) -> Vec<String> {
        match self.local.append(&self.ctx, ev) {
            Ok(rec) => {
                self.pending.push(rec);
                if !defer {
                    return self.flush(client).await;
                }
            }
            Err(e) => self.local_error = Some(e.to_string()),
        }
        Vec::new()
    }

    /// Sends every record not yet in the database; failures wait in the spool
    /// for the next successful write. The local log stays the record of truth.
    pub async fn flush(&mut self, client: &Client) -> Vec<String> {
        let mut notes = Vec::new();
        for rec in std::mem::take(&mut self.pending) {
            match self.db.write(client, &rec).await {
                Ok(DbWrite::Written) => {}
                Ok(DbWrite::Spooled { reason }) => {
                    if notes.is_empty() {
                        notes.push(format!("audit record kept in the local spool, not yet in pgpilot.audit_log: {reason}"));
                    }
                }
                Err(e) => notes.push(format!("audit record only in the local log: {e}")),
            }
        }
        notes
    }
}
