//! The engine's side of the audit: each event goes to the local log first
//! (fsynced), then to `pgpilot.audit_log` in the target. During a rehearsal the
//! database copy waits until the rehearsal's transaction has been rolled back,
//! so the records survive it.
//!
//! Most events are [`Recorder::record`]ed: written, synced, copied, in that
//! order, before the engine goes on. A step's own records take a faster path
//! that still never lets a change commit without a durable record of it:
//!
//! - [`Recorder::write_ahead`] writes the step's start and syncs it on a
//!   blocking thread while the step runs. The records not yet on disk (that
//!   start, and the success of the step before) are inserted into
//!   `pgpilot.audit_log` inside the step's own transaction
//!   ([`Recorder::unsynced_copies`]), so they commit with the change or not
//!   at all, and COMMIT need not wait for the local sync. Where that copy
//!   cannot be made (no copy reached this connection yet, the database
//!   refused it, a rehearsal), COMMIT waits for the sync instead
//!   ([`Recorder::ready_to_commit`]).
//! - [`Recorder::write_behind`] writes the step's success once COMMIT
//!   returned; its sync goes with the next record's (at the latest before the
//!   engine waits for the operator, see [`Recorder::settle`]).
//!
//! Every record is one `write` before anything is sent to the server, so a
//! killed process loses none. Other copies are made only of records already
//! on disk: a step's are handed to a [`Copier`] on a second connection, so
//! no step waits for them (without one, they follow the step's COMMIT on the
//! executor's connection).

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::EngineEvent;
use super::copier::Copier;
use crate::audit::AuditError;
use crate::audit::db::{DbAudit, DbWrite, Flush};
use crate::audit::local::{AuditLog, Syncer};
use crate::audit::record::{AuditRecord, Context, Event};
use crate::pg::{ConnSpec, Target};

pub struct Recorder {
    ctx: Context,
    local: AuditLog,
    db: DbAudit,
    pending: Vec<AuditRecord>,
    local_error: Option<String>,
    /// Sequence number of the last record written, and of the last one
    /// known to be on disk (0: none).
    written: u64,
    synced: u64,
    /// The sync [`Recorder::write_ahead`] started, and the record it reaches.
    syncing: Option<(JoinHandle<Result<(), AuditError>>, u64)>,
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
            written: 0,
            synced: 0,
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

    /// The local log's file, for the operator to be told where it is.
    pub fn audit_path(&self) -> &std::path::Path {
        self.local.path()
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
    /// it) on a blocking thread; see [`Recorder::ready_to_commit`]. While
    /// an earlier sync still runs, the event goes with the next one (the
    /// next call's, or [`Recorder::durable`]'s): one sync at a time, each
    /// taking everything written meanwhile.
    pub async fn write_ahead(&mut self, ev: Event) {
        self.write_behind(ev);
        self.reap_sync().await;
        if self.syncing.is_none()
            && let Some(job) = self.local.syncer()
        {
            let upto = job.upto();
            self.syncing = Some((tokio::task::spawn_blocking(move || job.run()), upto));
        }
    }

    /// Writes an event; it is synced with the next record, or by
    /// [`Recorder::durable`] / [`Recorder::settle`].
    pub fn write_behind(&mut self, ev: Event) {
        match self.local.write(&self.ctx, ev) {
            Ok(rec) => {
                self.written = rec.seq;
                self.pending.push(rec);
            }
            Err(e) => self.local_error = Some(e.to_string()),
        }
    }

    /// Waits until every record written is on disk; false if the local log
    /// failed (see [`Recorder::local_error`]).
    pub async fn durable(&mut self) -> bool {
        self.finish_sync().await;
        if self.local_error.is_none()
            && let Some(job) = self.local.syncer()
        {
            self.run_sync(job);
        }
        self.local_error.is_none()
    }

    /// The records not yet known to be on disk, with the audit's insert
    /// prepared on `client`, for the step's transaction to send before the
    /// step's statements: they then commit with the change or not at all.
    /// `None` when everything is on disk, or no copy has been made on
    /// `client` yet (the table may not be there).
    pub fn unsynced_copies(&self, client: &Client) -> Option<TxnCopies> {
        if self.local_error.is_some() {
            return None;
        }
        let from = self.pending.partition_point(|r| r.seq <= self.synced);
        if from == self.pending.len() {
            return None;
        }
        Some(TxnCopies {
            stmt: self.db.prepared_on(client)?,
            recs: self.pending[from..].to_vec(),
        })
    }

    /// Before COMMIT: true once every record written is on disk or among
    /// the copies inside the transaction (those up to `copied_upto`, 0 for
    /// none), waiting for the local sync otherwise. False if the local log
    /// failed: the step must then roll back.
    pub async fn ready_to_commit(&mut self, copied_upto: u64) -> bool {
        self.may_commit(copied_upto) || self.durable().await
    }

    /// [`Recorder::ready_to_commit`] without waiting: true when it would
    /// not have to.
    pub fn may_commit(&self, copied_upto: u64) -> bool {
        self.local_error.is_none() && self.written <= copied_upto.max(self.synced)
    }

    /// After a COMMIT that returned: the copies it made are done.
    pub fn copied(&mut self, copies: &TxnCopies) {
        self.pending.retain(|r| !copies.contains(r.seq));
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
        if let Some((job, upto)) = self.syncing.take() {
            let result = match job.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the audit sync stopped: {e}")),
            };
            match result {
                Ok(()) => self.synced = upto,
                Err(e) => {
                    self.local_error.get_or_insert(e);
                }
            }
        }
    }

    /// [`Recorder::finish_sync`] if the sync is done, without waiting.
    async fn reap_sync(&mut self) {
        if self
            .syncing
            .as_ref()
            .is_some_and(|(job, _)| job.is_finished())
        {
            self.finish_sync().await;
        }
    }

    fn run_sync(&mut self, job: Syncer) {
        let upto = job.upto();
        match job.run() {
            Ok(()) => self.synced = upto,
            Err(e) => self.local_error = Some(e.to_string()),
        }
    }

    /// The database copies of the pending records, pipelined when they can
    /// be (see [`DbAudit::write_all`]). The caller has made them durable.
    async fn copy(&mut self, client: &Client) -> Vec<String> {
        let pending = std::mem::take(&mut self.pending);
        self.copy_with(client, pending, Flush::Now).await
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

    /// [`Recorder::copy`] right after a step's COMMIT, of the records
    /// already on disk (the others wait for a later call). The copier takes
    /// them if there is one, and the step waits for nothing. Otherwise they
    /// go on this connection and commit without waiting for a WAL flush of
    /// their own, which the next step's COMMIT (or the session's last
    /// record, copied with [`Recorder::copy`]) makes.
    /// Those in `in_txn` (copied by the COMMIT just sent, if it succeeds)
    /// stay pending until [`Recorder::copied`] drops them.
    pub async fn copy_after_commit(
        &mut self,
        client: &Client,
        in_txn: Option<&TxnCopies>,
    ) -> Vec<String> {
        self.reap_sync().await;
        let on_disk = self.pending.partition_point(|r| r.seq <= self.synced);
        let (mut recs, keep): (Vec<AuditRecord>, Vec<AuditRecord>) = self
            .pending
            .drain(..on_disk)
            .partition(|r| in_txn.is_none_or(|c| !c.contains(r.seq)));
        self.pending.splice(0..0, keep);
        if recs.is_empty() {
            return Vec::new();
        }
        if let Some(copier) = &self.copier {
            match copier.send(recs) {
                Ok(()) => return Vec::new(),
                Err(back) => recs = back,
            }
        }
        self.copy_with(client, recs, Flush::Later).await
    }

    async fn copy_with(
        &mut self,
        client: &Client,
        recs: Vec<AuditRecord>,
        flush: Flush,
    ) -> Vec<String> {
        if recs.is_empty() {
            return Vec::new();
        }
        let mut notes = Vec::new();
        for result in self.db.write_all(client, recs, flush).await {
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

/// Audit records to insert inside a step's transaction (see
/// [`Recorder::unsynced_copies`]).
pub struct TxnCopies {
    stmt: tokio_postgres::Statement,
    recs: Vec<AuditRecord>,
}

impl TxnCopies {
    /// Sends the inserts; the step's statements go after them.
    pub async fn insert(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        DbAudit::insert_all(client, &self.stmt, &self.recs).await
    }

    /// The sequence number of the last record copied.
    pub fn upto(&self) -> u64 {
        self.recs.last().map_or(0, |r| r.seq)
    }

    fn contains(&self, seq: u64) -> bool {
        self.recs.iter().any(|r| r.seq == seq)
    }
}
