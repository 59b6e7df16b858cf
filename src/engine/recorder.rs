//! The engine's side of the audit: each event goes to the local log first
//! (fsynced), then to `pgpilot.audit_log` in the target. During a rehearsal the
//! database copy waits until the rehearsal's transaction has been rolled back,
//! so the records survive it.
//!
//! Most events are [`Recorder::record`]ed: written, synced, copied, in that
//! order, before the engine goes on. A step's own two records take a faster
//! path that keeps the same order of facts on disk:
//!
//! - [`Recorder::write_ahead`] writes the step's start and syncs it on a
//!   blocking thread while the step's statements run; the engine waits for
//!   that sync ([`Recorder::durable`]) before it sends COMMIT, so no change
//!   is committed before its start record is on disk.
//! - [`Recorder::write_behind`] writes the step's success once COMMIT
//!   returned; its sync goes with the next record's (at the latest before the
//!   engine waits for the operator, see [`Recorder::settle`]).
//!
//! Every record is one `write`, so a killed process loses none; a power loss
//! can lose at most the last success record, whose fact is in
//! `pgpilot.step_state`. The database copies always follow the local sync;
//! a step's records are handed to a [`Copier`] on a second connection, so
//! no step waits for them (without one, they follow the step's COMMIT on the
//! executor's connection).

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::EngineEvent;
use super::copier::Copier;
use crate::audit::AuditError;
use crate::audit::db::{DbAudit, DbWrite, Flush};
use crate::audit::local::AuditLog;
use crate::audit::record::{AuditRecord, Context, Event};
use crate::pg::{ConnSpec, Target};

pub struct Recorder {
    ctx: Context,
    local: AuditLog,
    db: DbAudit,
    pending: Vec<AuditRecord>,
    local_error: Option<String>,
    /// The sync [`Recorder::write_ahead`] started.
    syncing: Option<JoinHandle<Result<(), AuditError>>>,
    /// Step records' database copies on a connection of their own.
    copier: Option<Copier>,
}

impl Recorder {
    pub fn new(ctx: Context, local: AuditLog, db: DbAudit) -> Recorder {
        Recorder {
            ctx,
            local,
            db,
            pending: Vec::new(),
            local_error: None,
            syncing: None,
            copier: None,
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
        self.write_behind(ev);
        self.settle(client, defer).await
    }

    /// Writes an event and starts syncing it (and anything written before
    /// it) on a blocking thread; [`Recorder::durable`] waits for it.
    pub async fn write_ahead(&mut self, ev: Event) {
        self.write_behind(ev);
        self.finish_sync().await;
        if let Some(job) = self.local.syncer() {
            self.syncing = Some(tokio::task::spawn_blocking(move || job.run()));
        }
    }

    /// Writes an event; it is synced with the next record, or by
    /// [`Recorder::durable`] / [`Recorder::settle`].
    pub fn write_behind(&mut self, ev: Event) {
        match self.local.write(&self.ctx, ev) {
            Ok(rec) => self.pending.push(rec),
            Err(e) => self.local_error = Some(e.to_string()),
        }
    }

    /// Waits until every record written is on disk; false if the local log
    /// failed (see [`Recorder::local_error`]).
    pub async fn durable(&mut self) -> bool {
        self.finish_sync().await;
        if self.local_error.is_none()
            && let Err(e) = self.local.sync()
        {
            self.local_error = Some(e.to_string());
        }
        self.local_error.is_none()
    }

    /// Every record on disk and, unless `defer`, in the database: before the
    /// engine waits for the operator, and at the session's end. Failures
    /// wait in the spool for the next successful write; the local log stays
    /// the record of truth.
    pub async fn settle(&mut self, client: &Client, defer: bool) -> Vec<String> {
        if !self.durable().await || defer {
            return Vec::new();
        }
        self.copy(client).await
    }

    /// At the end of a session: the head file synced too.
    pub fn close(&self) {
        self.local.sync_head();
    }

    async fn finish_sync(&mut self) {
        if let Some(job) = self.syncing.take() {
            let result = match job.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the audit sync stopped: {e}")),
            };
            if let Err(e) = result {
                self.local_error.get_or_insert(e);
            }
        }
    }

    /// The database copies of the pending records, pipelined when they can
    /// be (see [`DbAudit::write_all`]). The caller has made them durable.
    async fn copy(&mut self, client: &Client) -> Vec<String> {
        self.copy_with(client, Flush::Now).await
    }

    /// From now on, step records' copies go over a second connection to
    /// the executor's server (see [`Copier`]).
    pub fn start_copier(
        &mut self,
        spec: &ConnSpec,
        executor: Target,
        events: UnboundedSender<EngineEvent>,
    ) {
        if self.copier.is_none() {
            let db = DbAudit::new(self.local.dir()).with_target(self.ctx.target.clone());
            self.copier = Some(Copier::start(spec, executor, db, events));
        }
    }

    /// Waits until the copier has sent (or spooled) everything handed to it.
    pub async fn finish_copier(&mut self) {
        if let Some(c) = self.copier.take() {
            c.finish().await;
        }
    }

    /// [`Recorder::copy`] right after a step's COMMIT. The copier takes the
    /// records if there is one, and the step waits for nothing. Otherwise
    /// they go on this connection and commit without waiting for a WAL flush
    /// of their own, which the next step's COMMIT (or the session's last
    /// record, copied with [`Recorder::copy`]) makes.
    pub async fn copy_after_commit(&mut self, client: &Client) -> Vec<String> {
        if let Some(copier) = &self.copier
            && !self.pending.is_empty()
        {
            match copier.send(std::mem::take(&mut self.pending)) {
                Ok(()) => return Vec::new(),
                Err(back) => self.pending = back,
            }
        }
        self.copy_with(client, Flush::Later).await
    }

    async fn copy_with(&mut self, client: &Client, flush: Flush) -> Vec<String> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Vec::new();
        }
        let mut notes = Vec::new();
        for result in self.db.write_all(client, pending, flush).await {
            match result {
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
