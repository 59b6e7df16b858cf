//! The database copy of the audit: `pgpilot.audit_log` in the target, with a
//! local spool for records that could not be sent.
//!
//! Order of writes: the caller appends each record to the local log first
//! ([`super::local::AuditLog::append`], fsynced) and only then passes the
//! returned record to [`DbAudit::write`]. (The engine also inserts a step's
//! unsynced records inside the step's own transaction, with
//! [`DbAudit::prepared_on`] and [`DbAudit::insert_all`]; see
//! `engine::recorder`.) A failed database write never stops
//! a run: the record waits in `spool.jsonl` (same data directory, mode 0600,
//! fsynced) and goes out, oldest first, before the next record. Rows are
//! keyed by (session, seq), so sending a record twice is harmless.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::SecondsFormat;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::error::AuditError;
use super::file::{
    FileLock, append_whole, ensure_dir, open_audit_file, open_private, open_private_read,
    open_private_rw,
};
use super::record::{AuditRecord, AuditTarget};
use crate::text::redact;

/// The spool's file name in the data directory.
pub const SPOOL_FILE: &str = "spool.jsonl";
/// Serializes spool access across processes; never renamed, unlike the spool.
const SPOOL_LOCK_FILE: &str = "spool.lock";

/// Creates the schema and table when missing. Columns mirror [`AuditRecord`];
/// the target is split into three columns so it can be queried. Also
/// version 1 of pgpilot's schema (`engine::schema`).
pub(crate) const CREATE_SQL: &str = "\
CREATE SCHEMA IF NOT EXISTS pgpilot;
CREATE TABLE IF NOT EXISTS pgpilot.audit_log (
    session         text        NOT NULL,
    seq             bigint      NOT NULL,
    ts              timestamptz NOT NULL,
    operator        text        NOT NULL,
    role            text,
    client_host     text        NOT NULL,
    target_host     text,
    target_port     integer,
    target_database text,
    runbook         text,
    runbook_sha256  text,
    ticket          text,
    phase           text,
    step            text,
    action          text        NOT NULL,
    sql             text,
    sql_sha256      text,
    outcome         text,
    duration_ms     bigint,
    rows            bigint,
    sqlstate        text,
    message         text,
    attempt         bigint,
    rehearsal       boolean     NOT NULL,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL,
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session, seq)
);
COMMENT ON TABLE pgpilot.audit_log IS
    'pgpilot audit records; the hash chain is verified on the local log with pgpilot audit verify';
CREATE INDEX IF NOT EXISTS audit_log_runbook_ts ON pgpilot.audit_log (runbook, ts);";

const EXISTS_SQL: &str = "SELECT to_regclass('pgpilot.audit_log') IS NOT NULL";

/// ts travels as RFC 3339 text (no chrono feature needed in tokio-postgres);
/// records carry microseconds, so the timestamptz holds the same instant.
/// `ON CONFLICT DO NOTHING` has no conflict target on purpose: naming
/// (session, seq) would need SELECT on those columns (INSERT alone then
/// fails), and the primary key is the table's only unique constraint anyway.
const INSERT_SQL: &str = "\
INSERT INTO pgpilot.audit_log (session, seq, ts, operator, role, client_host,
    target_host, target_port, target_database, runbook, runbook_sha256, ticket,
    phase, step, action, sql, sql_sha256, outcome, duration_ms, rows, sqlstate,
    message, attempt, rehearsal, prev_hash, hash)
VALUES ($1, $2, $3::text::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12,
    $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
ON CONFLICT DO NOTHING";

/// Whether [`DbAudit::write_all`] waits for the server to flush the copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Each copy commits as usual, its WAL flushed before the reply.
    Now,
    /// One transaction without waiting for its flush (see `write_all`).
    Later,
}

/// What became of a record's database copy. Neither stops the run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum DbWrite {
    /// In `pgpilot.audit_log` (or already there).
    Written,
    /// Kept in the spool for the next write; `reason` says why, to show the operator.
    Spooled { reason: String },
}

/// Writes records to `pgpilot.audit_log`, spooling what cannot be sent.
#[derive(Debug)]
pub struct DbAudit {
    dir: PathBuf,
    spool: PathBuf,
    lock: PathBuf,
    /// The schema and table were created (or found) on this connection's database.
    ready: bool,
    /// The database this copy goes to; the spool is shared by every pgpilot
    /// using the data directory, and only this target's records are sent here.
    target: Option<AuditTarget>,
    /// Spool length after the last flush that found nothing of ours to send.
    idle_len: Option<u64>,
    /// The insert, prepared once per connection (keyed by the client's address).
    insert: Option<(usize, tokio_postgres::Statement)>,
}

impl DbAudit {
    /// A database copy spooling into `dir` (the local log's data directory).
    /// The target is learnt from the first record written.
    pub fn new(dir: &Path) -> DbAudit {
        DbAudit {
            dir: dir.to_path_buf(),
            spool: dir.join(SPOOL_FILE),
            lock: dir.join(SPOOL_LOCK_FILE),
            ready: false,
            target: None,
            idle_len: None,
            insert: None,
        }
    }

    /// Sets the target whose spooled records [`DbAudit::flush_spool`] sends.
    pub fn with_target(mut self, target: Option<AuditTarget>) -> DbAudit {
        self.target = target;
        self
    }

    pub fn spool_path(&self) -> &Path {
        &self.spool
    }

    /// Sends `rec` to the database after any spooled records of the same
    /// target; if that fails, spools it. `Err` only when the spool itself
    /// cannot be written (the record is still in the local log).
    pub async fn write(
        &mut self,
        client: &Client,
        rec: &AuditRecord,
    ) -> Result<DbWrite, AuditError> {
        if rec.target.is_some() {
            self.target = rec.target.clone();
        }
        if self.spool_may_hold_ours()
            && let Err(e) = self.flush_spool(client).await
        {
            self.spool_record(rec)?;
            return Ok(DbWrite::Spooled {
                reason: e.to_string(),
            });
        }
        match self.insert(client, rec).await {
            Ok(()) => Ok(DbWrite::Written),
            Err(e) => {
                self.spool_record(rec)?;
                Ok(DbWrite::Spooled {
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Sends several records. When the table is known, the insert prepared
    /// on this client and the spool holds nothing of this target, the inserts
    /// go out together (pipelined: one round trip for all), right after
    /// anything the caller sent on the same client before polling this.
    /// Otherwise, and for those that failed, as [`DbAudit::write`] does.
    ///
    /// With [`Flush::Now`] each insert is its own autocommit statement. With
    /// [`Flush::Later`] they share one transaction that commits with
    /// `synchronous_commit` off, so the caller does not wait for a WAL flush
    /// of its own; the next synchronous commit on the server flushes it (WAL
    /// is flushed in order), else the WAL writer does within
    /// `3 × wal_writer_delay`. Only for a caller that knows the session is
    /// outside any transaction and that a synchronous commit follows: the
    /// engine right after a step's COMMIT, or its copier's connection (which
    /// runs nothing else). A batch that fails is rolled back whole and sent
    /// again the careful way.
    pub async fn write_all(
        &mut self,
        client: &Client,
        recs: Vec<AuditRecord>,
        flush: Flush,
    ) -> Vec<Result<DbWrite, AuditError>> {
        if let Some(rec) = recs.iter().rev().find(|r| r.target.is_some()) {
            self.target = rec.target.clone();
        }
        let fast = self
            .prepared_on(client)
            .filter(|_| !self.spool_may_hold_ours());
        let mut out = Vec::with_capacity(recs.len());
        let Some(stmt) = fast else {
            for rec in &recs {
                out.push(self.write(client, rec).await);
            }
            return out;
        };
        let inserts =
            futures_util::future::join_all(recs.iter().map(|rec| insert_row(client, &stmt, rec)));
        let sent: Vec<bool> = match flush {
            Flush::Now => inserts.await.iter().map(Result::is_ok).collect(),
            Flush::Later => {
                // Polled in this order, so sent in this order.
                let (begin, sent, end) = tokio::join!(
                    biased;
                    client.simple_query("BEGIN; SET LOCAL synchronous_commit TO off"),
                    inserts,
                    client.simple_query("COMMIT"),
                );
                let committed = begin.is_ok() && end.is_ok() && sent.iter().all(Result::is_ok);
                if begin.is_err() {
                    // No transaction: each insert stood on its own.
                    sent.iter().map(Result::is_ok).collect()
                } else {
                    vec![committed; recs.len()]
                }
            }
        };
        for (rec, ok) in recs.iter().zip(sent) {
            out.push(if ok {
                Ok(DbWrite::Written)
            } else {
                // Once more the careful way (it re-creates a dropped table),
                // spooling what still fails.
                self.insert = None;
                self.write(client, rec).await
            });
        }
        out
    }

    /// The insert prepared on `client`, once the table is known there: for
    /// a caller that sends copies inside a transaction of its own (a step's,
    /// see `Recorder::unsynced_copies`), where a failure is its to handle.
    pub fn prepared_on(&self, client: &Client) -> Option<tokio_postgres::Statement> {
        let key = client as *const Client as usize;
        match &self.insert {
            Some((k, st)) if self.ready && *k == key => Some(st.clone()),
            _ => None,
        }
    }

    /// Inserts `recs` with a statement from [`DbAudit::prepared_on`], all
    /// requests sent together; the first error, if any.
    pub async fn insert_all(
        client: &Client,
        stmt: &tokio_postgres::Statement,
        recs: &[AuditRecord],
    ) -> Result<(), tokio_postgres::Error> {
        let results =
            futures_util::future::join_all(recs.iter().map(|rec| insert_row(client, stmt, rec)))
                .await;
        results.into_iter().try_for_each(|r| r.map(|_| ()))
    }

    /// Sends this target's spooled records, oldest first, and removes them
    /// from the spool only once all were accepted. Returns how many were sent.
    pub async fn flush_spool(&mut self, client: &Client) -> Result<usize, AuditError> {
        let (snapshot, len) = self.read_spool()?;
        let mine: Vec<AuditRecord> = parse_lines(&snapshot)
            .into_iter()
            .filter_map(|(_, rec)| rec)
            .filter(|rec| rec.target == self.target)
            .collect();
        if mine.is_empty() {
            self.idle_len = Some(len);
            return Ok(0);
        }
        for rec in &mine {
            self.insert(client, rec).await?;
        }
        let sent: HashSet<(String, u64, String)> = mine.iter().map(key).collect();
        self.remove_from_spool(&sent)?;
        self.idle_len = None;
        Ok(mine.len())
    }

    /// Records waiting in the spool, for every target.
    pub fn spooled(&self) -> Result<usize, AuditError> {
        let (bytes, _) = self.read_spool()?;
        Ok(parse_lines(&bytes).len())
    }

    fn spool_may_hold_ours(&self) -> bool {
        match fs::metadata(&self.spool) {
            Ok(m) => m.len() > 0 && self.idle_len != Some(m.len()),
            Err(_) => false,
        }
    }

    async fn insert(&mut self, client: &Client, rec: &AuditRecord) -> Result<(), AuditError> {
        self.ensure_table(client).await?;
        let stmt = self.prepared(client).await?;
        match insert_row(client, &stmt, rec).await {
            Err(e) if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME) =>
            {
                // Dropped since, or created in a transaction that was rolled back.
                self.ready = false;
                self.insert = None;
                self.ensure_table(client).await?;
                let stmt = self.prepared(client).await?;
                insert_row(client, &stmt, rec)
                    .await
                    .map(|_| ())
                    .map_err(|e| db_error("insert into", &e))
            }
            other => other.map(|_| ()).map_err(|e| {
                // A statement prepared on another (since closed) connection
                // at the same address must not fail every later insert.
                self.insert = None;
                db_error("insert into", &e)
            }),
        }
    }

    /// The insert statement for this client, prepared once: a parse and a
    /// describe less for every record.
    async fn prepared(&mut self, client: &Client) -> Result<tokio_postgres::Statement, AuditError> {
        let key = client as *const Client as usize;
        if let Some((k, st)) = &self.insert
            && *k == key
        {
            return Ok(st.clone());
        }
        let st = client
            .prepare(INSERT_SQL)
            .await
            .map_err(|e| db_error("prepare the insert into", &e))?;
        self.insert = Some((key, st.clone()));
        Ok(st)
    }

    async fn ensure_table(&mut self, client: &Client) -> Result<(), AuditError> {
        if self.ready {
            return Ok(());
        }
        // Look first: CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on
        // the database before it looks, so a role allowed only to INSERT into
        // an existing table would fail on it.
        let exists: bool = client
            .query_one(EXISTS_SQL, &[])
            .await
            .map_err(|e| db_error("look for", &e))?
            .try_get(0)
            .map_err(|e| db_error("look for", &e))?;
        if !exists {
            let mut result = client.batch_execute(CREATE_SQL).await;
            // Two sessions creating the schema at once: one loses with a unique
            // violation on the catalog; by then the object exists.
            if let Err(e) = &result
                && matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_SCHEMA || *c == SqlState::DUPLICATE_TABLE)
            {
                result = client.batch_execute(CREATE_SQL).await;
            }
            result.map_err(|e| db_error("create", &e))?;
        }
        self.ready = true;
        Ok(())
    }

    fn lock_file(&self) -> Result<File, AuditError> {
        ensure_dir(&self.dir)?;
        open_private_rw(&self.lock)
    }

    /// Puts records in the spool without trying the database (a copier
    /// that could not connect); the next write on any connection sends them.
    pub fn spool_all(&self, recs: &[AuditRecord]) -> Result<(), AuditError> {
        recs.iter().try_for_each(|rec| self.spool_record(rec))
    }

    fn spool_record(&self, rec: &AuditRecord) -> Result<(), AuditError> {
        let lock = self.lock_file()?;
        let _guard = FileLock::exclusive(&lock, &self.lock)?;
        let mut line = serde_json::to_string(rec)
            .map_err(|e| AuditError::io("encode a record for", &self.spool, io::Error::other(e)))?;
        line.push('\n');
        let file = open_private(&self.spool)?;
        let len = file
            .metadata()
            .map_err(|e| AuditError::io("inspect", &self.spool, e))?
            .len();
        append_whole(&file, &self.spool, len, line.as_bytes())?;
        file.sync_data()
            .map_err(|e| AuditError::io("sync", &self.spool, e))
    }

    /// The spool's bytes and length, read under the lock.
    fn read_spool(&self) -> Result<(Vec<u8>, u64), AuditError> {
        let lock = self.lock_file()?;
        let _guard = FileLock::exclusive(&lock, &self.lock)?;
        let mut bytes = Vec::new();
        match open_private_read(&self.spool) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| AuditError::io("read", &self.spool, e))?;
            }
            Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let len = bytes.len() as u64;
        Ok((bytes, len))
    }

    /// Drops the sent records, keeping everything else (other targets',
    /// records spooled meanwhile, lines that cannot be read) in order.
    fn remove_from_spool(&self, sent: &HashSet<(String, u64, String)>) -> Result<(), AuditError> {
        let lock = self.lock_file()?;
        let _guard = FileLock::exclusive(&lock, &self.lock)?;
        let mut bytes = Vec::new();
        match open_private_read(&self.spool) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| AuditError::io("read", &self.spool, e))?;
            }
            Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut keep = Vec::new();
        for (line, rec) in parse_lines(&bytes) {
            if rec.as_ref().is_some_and(|r| sent.contains(&key(r))) {
                continue;
            }
            keep.extend_from_slice(line);
            keep.push(b'\n');
        }
        if keep.is_empty() {
            let f = open_audit_file(OpenOptions::new().write(true), &self.spool)?;
            return f
                .set_len(0)
                .and_then(|()| f.sync_all())
                .map_err(|e| AuditError::io("empty", &self.spool, e));
        }
        // Rewritten aside and renamed, so a crash leaves the old or the new spool.
        let tmp = self.spool.with_extension("jsonl.tmp");
        let mut f = open_audit_file(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600),
            &tmp,
        )?;
        f.write_all(&keep)
            .and_then(|()| f.sync_all())
            .map_err(|e| AuditError::io("write", &tmp, e))?;
        fs::rename(&tmp, &self.spool).map_err(|e| AuditError::io("replace", &self.spool, e))?;
        super::file::sync_dir(&self.dir);
        Ok(())
    }
}

/// Spool lines with their record, `None` for a line that cannot be read.
fn parse_lines(bytes: &[u8]) -> Vec<(&[u8], Option<AuditRecord>)> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| (l, serde_json::from_slice(l).ok()))
        .collect()
}

fn key(rec: &AuditRecord) -> (String, u64, String) {
    (rec.session.clone(), rec.seq, rec.hash.clone())
}

async fn insert_row(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    rec: &AuditRecord,
) -> Result<u64, tokio_postgres::Error> {
    let seq = i64::try_from(rec.seq).unwrap_or(i64::MAX);
    let ts = rec.ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let (host, port, database) = match &rec.target {
        Some(t) => (
            Some(t.host.as_str()),
            Some(i32::from(t.port)),
            Some(t.database.as_str()),
        ),
        None => (None, None, None),
    };
    let duration = rec
        .duration_ms
        .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
    let rows = rec.rows.map(|r| i64::try_from(r).unwrap_or(i64::MAX));
    let attempt = rec.attempt.map(i64::from);
    client
        .execute(
            stmt,
            &[
                &rec.session,
                &seq,
                &ts,
                &rec.operator,
                &rec.role,
                &rec.client_host,
                &host,
                &port,
                &database,
                &rec.runbook,
                &rec.runbook_sha256,
                &rec.ticket,
                &rec.phase,
                &rec.step,
                &rec.action.as_str(),
                &rec.sql,
                &rec.sql_sha256,
                &rec.outcome,
                &duration,
                &rows,
                &rec.sqlstate,
                &rec.message,
                &attempt,
                &rec.rehearsal,
                &rec.prev_hash,
                &rec.hash,
            ],
        )
        .await
}

fn db_error(action: &'static str, e: &tokio_postgres::Error) -> AuditError {
    let detail = match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} [{}]", db.message(), db.code().code());
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (hint: {hint})"));
            }
            if db.code() == &SqlState::INSUFFICIENT_PRIVILEGE {
                text.push_str(
                    "; grant the role CREATE on the database (to create schema pgpilot), or \
                     USAGE on schema pgpilot and INSERT on pgpilot.audit_log; records wait in \
                     the local spool meanwhile",
                );
            }
            text
        }
        None => format!(
            "{}; records wait in the local spool until the next write",
            redact(&e.to_string())
        ),
    };
    AuditError::Database { action, detail }
}
