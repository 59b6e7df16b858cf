//! The audit trail: a hash-chained local log and its copy in the database.
//!
//! - [`local::AuditLog`] appends records to `audit.jsonl` in the data
//!   directory (`$PGPILOT_DATA_DIR`, else the platform's), mode 0600, fsynced,
//!   under a file lock, with `audit.head` remembering the end of the chain.
//! - [`db::DbAudit`] copies each record to `pgpilot.audit_log` afterwards,
//!   spooling to `spool.jsonl` when the database cannot take it.
//! - [`verify::verify`], [`query`], [`export`] and [`markdown`] read the log
//!   back for `pgpilot audit verify|show|export` ([`cli`]).
//!
//! The hash rule is documented in [`chain`]. Every file of the data
//! directory (log, head, spool, lock) is opened, appended to and locked
//! through `file.rs`, which depends on neither the log nor the chain.

pub mod chain;
pub mod change;
pub mod cli;
pub mod db;
mod entry;
pub mod error;
pub mod export;
mod file;
pub mod local;
pub mod markdown;
pub mod query;
pub mod record;
mod summary;
pub mod verify;

pub use db::{DbAudit, DbWrite};
pub use error::AuditError;
pub use local::AuditLog;
pub use record::{Action, AuditRecord, AuditTarget, Context, Event};
pub use verify::{VerifyReport, verify};
