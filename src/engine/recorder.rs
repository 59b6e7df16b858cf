//! The engine's side of the audit: each event goes to the local log first
//! (fsynced), then to `pgpilot.audit_log` in the target. During a rehearsal the
//! database copy waits until the rehearsal's transaction has been rolled back,
//! so the records survive it.

use tokio_postgres::Client;

use crate::audit::db::DbAudit;
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

    /// Records an event; `defer` holds the database copy back (inside a rehearsal).
    pub async fn record(&mut self, client: &Client, ev: Event, defer: bool) {
        match self.local.append(&self.ctx, ev) {
            Ok(rec) => {
                self.pending.push(rec);
                if !defer {
                    self.flush(client).await;
                }
            }
            Err(e) => self.local_error = Some(e.to_string()),
        }
    }

    /// Sends every record not yet in the database; failures wait in the spool.
    pub async fn flush(&mut self, client: &Client) {
        for rec in std::mem::take(&mut self.pending) {
            // A record the database refuses waits in the spool; one the spool
            // cannot take is still in the local log, which is the record of truth.
            let _ = self.db.write(client, &rec).await;
        }
    }
}
