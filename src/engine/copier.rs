//! The audit's database copies of step records, sent on a connection of
//! their own so that a step never waits for them.
//!
//! The engine hands over records that are already synced in the local log
//! (right after each step's COMMIT); a task inserts them into
//! `pgpilot.audit_log` over a second connection to the same server, batching
//! whatever has queued meanwhile, and spools what it cannot send, exactly as
//! [`DbAudit`] does on the executor's connection. If the second connection
//! cannot be opened, or reaches another server than the executor's, the task
//! spools what it was given and stops, and the engine copies on its own
//! connection again. At the end of the session the engine waits for the
//! queue to drain; each batch is bounded by the connection's
//! statement_timeout, so that wait is too. Batches commit with
//! `synchronous_commit` off (see [`Flush::Later`]).

use crate::pg::Severity;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use super::EngineEvent;
use crate::audit::db::{DbAudit, DbWrite, Flush};
use crate::audit::record::AuditRecord;
use crate::pg::{ConnSpec, Target};

/// Bounds for the copier's own statements: a lock on `pgpilot.audit_log`
/// or a stuck server costs a spooled batch, never a hung session end.
const SETUP: &str = "SET lock_timeout = '5s'; SET statement_timeout = '10s'";

pub struct Copier {
    tx: UnboundedSender<Vec<AuditRecord>>,
    task: JoinHandle<()>,
}

impl Copier {
    /// Starts the task; it connects in the background, so this never waits.
    pub fn start(
        spec: &ConnSpec,
        executor: Target,
        db: DbAudit,
        events: UnboundedSender<EngineEvent>,
    ) -> Copier {
        let (tx, rx) = unbounded_channel();
        let spec = spec.with_application_name("pgpilot audit");
        let task = tokio::spawn(run(spec, executor, db, rx, events));
        Copier { tx, task }
    }

    /// Hands records over; gives them back once the task has closed its
    /// queue (it could not connect) or stopped.
    pub fn send(&self, recs: Vec<AuditRecord>) -> Result<(), Vec<AuditRecord>> {
        self.tx.send(recs).map_err(|e| e.0)
    }

    /// Waits until everything handed over is in the database or the spool.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn run(
    spec: ConnSpec,
    executor: Target,
    mut db: DbAudit,
    mut rx: UnboundedReceiver<Vec<AuditRecord>>,
    events: UnboundedSender<EngineEvent>,
) {
    let warn = |message: String| {
        let _ = events.send(EngineEvent::Notice {
            step: None,
            severity: Severity::Warning,
            message,
        });
    };
    let conn = match spec.connect().await {
        Ok(c) if c.target == executor => match c.client.batch_execute(SETUP).await {
            Ok(()) => Some(c),
            Err(_) => None,
        },
        _ => None,
    };
    let Some(conn) = conn else {
        // Copies go back to the executor's connection; what was queued
        // meanwhile waits in the spool, which that connection sends first.
        rx.close();
        while let Some(recs) = rx.recv().await {
            if let Err(e) = db.spool_all(&recs) {
                warn(format!("audit records only in the local log: {e}"));
            }
        }
        return;
    };
    while let Some(mut recs) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            recs.extend(more);
        }
        let mut note = None;
        // Without waiting for its own WAL flush: a flush here would queue
        // behind, and hold up, the executor's COMMITs on a server that syncs
        // its WAL. The executor's next COMMIT flushes it (WAL is flushed in
        // order), and the session's last records are copied with an ordinary
        // commit after this queue drained.
        for result in db.write_all(&conn.client, recs, Flush::Later).await {
            match result {
                Ok(DbWrite::Written) => {}
                Ok(DbWrite::Spooled { reason }) => {
                    note.get_or_insert(format!("audit record kept in the local spool, not yet in pgpilot.audit_log: {reason}"));
                }
                Err(e) => {
                    note.get_or_insert(format!("audit record only in the local log: {e}"));
                }
            }
        }
        if let Some(n) = note {
            warn(n);
        }
    }
}
