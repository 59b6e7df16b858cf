//! Cancelling or terminating another backend from a lock panel.
//!
//! Both screens (the run screen's lock panel and `pgpilot monitor`) go
//! through [`send_audited`]: the request is recorded first (the local log,
//! then its database copy), the signal is sent only once that record is
//! written, and the outcome is recorded after it. A backend is never
//! signalled by an operator whose action leaves no trace.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use super::{SessionName, Watcher};
use crate::audit::db::DbAudit;
use crate::audit::local::{AuditLog, data_dir};
use crate::audit::record::{Action, Context, Event};

/// What to do to a backend from the lock panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// pg_cancel_backend: cancel its running query.
    Cancel,
    /// pg_terminate_backend: end its session (and roll back its transaction).
    Terminate,
}

impl Signal {
    /// The server function that sends it (Server Signaling Functions).
    pub fn function(self) -> &'static str {
        match self {
            Signal::Cancel => "pg_cancel_backend",
            Signal::Terminate => "pg_terminate_backend",
        }
    }

    /// Its audit action: a cancel and a termination are recorded apart.
    pub fn action(self) -> Action {
        match self {
            Signal::Cancel => Action::Cancel,
            Signal::Terminate => Action::Terminate,
        }
    }
}

/// Who `pid` is, for the audit record of a signal to it: `pid 4242
/// (nightly-report, alice@10.0.0.5)`, as the lock panels name it (made safe,
/// passwords masked); or why it could not be said.
async fn target(client: Option<&Client>, pid: i32) -> String {
    let Some(client) = client else {
        return format!("pid {pid} (not looked up: the monitor is disconnected)");
    };
    let found = client
        .query_opt(super::query::TARGET_SQL, &[&pid])
        .await
        .and_then(|row| {
            row.map(|r| {
                Ok::<_, tokio_postgres::Error>(SessionName {
                    application: r.try_get("application")?,
                    user: r.try_get("user_name")?,
                    client: r.try_get("client")?,
                    backend_type: r
                        .try_get::<_, Option<String>>("backend_type")?
                        .unwrap_or_default(),
                    wait_event_type: None,
                    wait_event: None,
                })
            })
            .transpose()
        });
    match found {
        Ok(Some(name)) => format!(
            "pid {pid}{}",
            super::text::named(&name.made_safe(), true, false)
        ),
        Ok(None) => format!("pid {pid} (no such backend)"),
        Err(e) => format!(
            "pid {pid} (not looked up: {})",
            crate::text::one_line(&crate::pg::redact(&e.to_string()))
        ),
    }
}

/// Cancels or terminates a backend; never the executor's own, nor the monitor's.
pub async fn signal_backend(
    client: &Client,
    pid: i32,
    signal: Signal,
    protected: &[i32],
) -> Result<bool, String> {
    if protected.contains(&pid) {
        return Err(format!(
            "pid {pid} is pgpilot's own session; use `c` to cancel the running step instead"
        ));
    }
    client
        .query_one(
            &format!("SELECT {}($1) AS signalled", signal.function()),
            &[&pid],
        )
        .await
        .and_then(|r| r.try_get::<_, bool>("signalled"))
        .map_err(|e| crate::pg::redact(&e.to_string()))
}

/// What became of a signal that was sent to the server, or refused before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOutcome {
    /// The server signalled the backend.
    Sent,
    /// No backend has that pid any more (the function returned false).
    NoSuchBackend,
    /// Refused, by pgpilot (its own session, the monitor disconnected) or
    /// by the server (no permission); the reason.
    Refused(String),
}

impl SignalOutcome {
    /// The audit record's `outcome` for it.
    pub fn audit_word(&self) -> &'static str {
        match self {
            SignalOutcome::Sent => "done",
            SignalOutcome::NoSuchBackend => "no such backend",
            SignalOutcome::Refused(_) => "refused",
        }
    }
}

/// The audit `outcome` of the record written before a signal is sent.
pub const REQUESTED: &str = "requested";

/// A signal's fate, to show the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalReport {
    /// Nothing was sent: the request could not be recorded; `reason` says
    /// where and what to do.
    NotSent {
        pid: i32,
        signal: Signal,
        reason: String,
    },
    /// Recorded, then tried. `unrecorded` says why the outcome's own record
    /// is missing, if it is.
    Tried {
        pid: i32,
        signal: Signal,
        outcome: SignalOutcome,
        unrecorded: Option<String>,
    },
}

impl SignalReport {
    /// Whether the operator must act (nothing sent, refused, or not recorded).
    pub fn is_bad(&self) -> bool {
        match self {
            SignalReport::NotSent { .. } => true,
            SignalReport::Tried {
                outcome,
                unrecorded,
                ..
            } => matches!(outcome, SignalOutcome::Refused(_)) || unrecorded.is_some(),
        }
    }
}

impl fmt::Display for SignalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalReport::NotSent {
                pid,
                signal,
                reason,
            } => write!(
                f,
                "{}({pid}) not sent: its audit record cannot be written: {reason}",
                signal.function()
            ),
            SignalReport::Tried {
                pid,
                signal,
                outcome,
                unrecorded,
            } => {
                let what = signal.function();
                match outcome {
                    SignalOutcome::Sent => write!(f, "{what}({pid}) sent")?,
                    SignalOutcome::NoSuchBackend => {
                        write!(f, "{what}({pid}): no such backend any more")?
                    }
                    SignalOutcome::Refused(why) => write!(f, "{what}({pid}) refused: {why}")?,
                }
                match unrecorded {
                    Some(why) => write!(f, "; its outcome is not in the audit log: {why}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Where the lock panels record their signals: the local log (opened at the
/// first signal, and again at each until it opens) and its database copy
/// on the monitor's connection.
#[derive(Debug)]
pub struct SignalAudit {
    ctx: Context,
    /// The data directory, or why there is none.
    dir: Result<PathBuf, String>,
    log: Option<AuditLog>,
    db: Option<DbAudit>,
}

impl SignalAudit {
    /// Records in the default data directory (`PGPILOT_DATA_DIR`, else the
    /// platform's), as the session's own records.
    pub fn in_default_dir(ctx: Context) -> SignalAudit {
        SignalAudit {
            ctx,
            dir: data_dir().map_err(|e| e.to_string()),
            log: None,
            db: None,
        }
    }

    /// Records in `dir`.
    pub fn in_dir(dir: &Path, ctx: Context) -> SignalAudit {
        SignalAudit {
            ctx,
            dir: Ok(dir.to_path_buf()),
            log: None,
            db: None,
        }
    }

    /// Appends `ev` to the local log, then sends its copy to the database
    /// (or the spool, which the next write on any connection sends on).
    async fn record(&mut self, client: Option<&Client>, ev: Event) -> Result<(), String> {
        let dir = self.dir.as_ref().map_err(Clone::clone)?;
        let log = match &mut self.log {
            Some(log) => log,
            None => self
                .log
                .insert(AuditLog::open_in(dir).map_err(|e| e.to_string())?),
        };
        let rec = log.append(&self.ctx, ev).map_err(|e| e.to_string())?;
        let db = self.db.get_or_insert_with(|| DbAudit::new(dir));
        let copied = match client {
            Some(client) => db.write(client, &rec).await.map(|_| ()),
            None => db.spool_all(std::slice::from_ref(&rec)),
        };
        copied.map_err(|e| e.to_string())
    }
}

/// Records the request to signal `pid`, sends the signal through the
/// watcher (which refuses pgpilot's own sessions) only if that record was
/// written, and records the outcome.
pub async fn send_audited(
    watcher: &Watcher,
    audit: &mut SignalAudit,
    pid: i32,
    signal: Signal,
) -> SignalReport {
    let sql = format!("SELECT {}({pid})", signal.function());
    let target = target(watcher.client(), pid).await;
    let event = |outcome: &str, message: String| Event {
        sql: Some(sql.clone()),
        outcome: Some(outcome.to_string()),
        message: Some(message),
        ..Event::new(signal.action())
    };
    if let Err(reason) = audit
        .record(watcher.client(), event(REQUESTED, target.clone()))
        .await
    {
        return SignalReport::NotSent {
            pid,
            signal,
            reason,
        };
    }
    let outcome = match watcher.signal(pid, signal).await {
        Ok(true) => SignalOutcome::Sent,
        Ok(false) => SignalOutcome::NoSuchBackend,
        Err(e) => SignalOutcome::Refused(e),
    };
    let message = match &outcome {
        SignalOutcome::Refused(why) => format!("{target}: {why}"),
        SignalOutcome::Sent | SignalOutcome::NoSuchBackend => target,
    };
    let unrecorded = audit
        .record(watcher.client(), event(outcome.audit_word(), message))
        .await
        .err();
    SignalReport::Tried {
        pid,
        signal,
        outcome,
        unrecorded,
    }
}
