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

/// The OS user running pgpilot: its name in the password database, else $USER.
pub fn os_user() -> String {
    let uid = unsafe_uid();
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the read of pw_name.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {uid}"))
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is a plain C struct of pointers and integers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

fn unsafe_uid() -> u32 {
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// This machine's host name, for the audit's client host.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
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
        operator: os_user(),
        role: Some(target.user.clone()),
        client_host: host_name(),
        target: Some(AuditTarget {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone(),
        }),
        runbook: Some(runbook.id.clone()),
        runbook_sha256: Some(runbook.sha256.clone()),
        ticket: runbook.ticket.clone(),
        rehearsal: options.rehearse,
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
