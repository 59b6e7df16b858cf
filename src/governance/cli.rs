//! `pgpilot approve` and `pgpilot approvals`: record, revoke and list the
//! approvals of a runbook's current content on its target.

use std::path::Path;

use crate::audit::db::DbAudit;
use crate::audit::local::{AuditLog, data_dir};
use crate::audit::record::{Action, AuditTarget, Context, Event};
use crate::check::{Checked, check_file};
use crate::exit;
use crate::governance::hash::approval_hash;
use crate::governance::policy::{Approval, ago, short};
use crate::governance::store;
use crate::runbook::valid_kind;
use crate::text::for_terminal;

fn fail(what: &str, e: impl std::fmt::Display) -> u8 {
    eprintln!(
        "pgpilot: {what}: {}",
        for_terminal(&crate::text::redact(&e.to_string()))
    );
    exit::FAILED
}

/// The server's message (hostile: made safe where printed), never a password.
fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} [{}]", db.message(), db.code().code()),
        None => crate::pg::redact(&e.to_string()),
    }
}

fn load(path: &Path) -> Result<Checked, u8> {
    check_file(path).map_err(|diags| {
        for d in diags {
            eprintln!("{d}");
        }
        exit::FAILED
    })
}

async fn connect(db: Option<&str>) -> Result<(crate::pg::ConnSpec, crate::pg::Connection), u8> {
    let spec = crate::session::resolve(db)?.with_application_name("pgpilot");
    let connection = spec
        .connect()
        .await
        .map_err(|e| fail("cannot connect", e))?;
    Ok((spec, connection))
}

/// `pgpilot approve RUNBOOK [CONN] --as KIND [--comment TEXT] [--revoke]`.
pub fn approve(
    path: &Path,
    db: Option<&str>,
    kind: &str,
    comment: Option<&str>,
    revoke: bool,
) -> u8 {
    if !valid_kind(kind) {
        eprintln!(
            "pgpilot: --as {}: a kind is a lower-case word of letters, digits, '-' or '_' (technical, business, security, cab, owner)",
            for_terminal(kind)
        );
        return exit::USAGE;
    }
    let checked = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(rt) = crate::session::runtime() else {
        return exit::FAILED;
    };
    rt.block_on(async move {
        let (spec, conn) = match connect(db).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let client = &conn.client;
        // Creates pgpilot.approvals where pgpilot's schema is older (needs
        // its owner); a reviewer's role finds it current and only reads.
        if let Err(e) = crate::engine::schema::ensure(client, false).await {
            return fail("schema pgpilot", e);
        }
        let rb = &checked.runbook;
        let hash = approval_hash(rb);
        let operator = crate::os_user::operator_name();
        let host = crate::os_user::host_name();
        let result = if revoke {
            store::revoke(client, &rb.id, &hash, kind).await
        } else {
            store::insert(client, &rb.id, &hash, kind, &operator, &host, comment)
                .await
                .map(|a| vec![a])
        };
        let done = match result {
            Ok(d) => d,
            Err(e) => {
                let mut code = fail(
                    if revoke { "cannot revoke" } else { "cannot approve" },
                    pg_text(&e),
                );
                if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                    eprintln!(
                        "pgpilot: a DBA grants it once: GRANT USAGE ON SCHEMA pgpilot TO <role>; GRANT SELECT, INSERT, UPDATE ON pgpilot.approvals TO <role>"
                    );
                    code = exit::REFUSED;
                }
                return code;
            }
        };
        if revoke && done.is_empty() {
            eprintln!(
                "pgpilot: no {kind} approval of this runbook (sha256 {}…) by your role to revoke",
                short(&hash)
            );
            return exit::REFUSED;
        }
        let t = spec.target();
        let ctx = Context {
            session: format!("{:016x}", fastrand::u64(..)),
            operator: operator.clone(),
            role: done.first().map(|a| a.approver.clone()),
            client_host: host,
            target: Some(AuditTarget {
                host: t.host.clone(),
                port: t.port,
                database: t.database.clone(),
            }),
            runbook: Some(rb.id.clone()),
            runbook_sha256: Some(rb.sha256.clone()),
            ticket: rb.ticket.clone(),
            ..Default::default()
        };
        for a in &done {
            let mut ev = Event::new(if revoke { Action::Revoke } else { Action::Approve });
            ev.outcome = Some(a.kind.clone());
            ev.message = Some(format!(
                "{} approval {} of sha256 {} by role {}{}",
                a.kind,
                a.id,
                hash,
                a.approver,
                a.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
            ));
            if let Err(e) = record(client, &ctx, ev).await {
                eprintln!("pgpilot: warning: the audit record was not written: {}", for_terminal(&e));
            }
            println!(
                "{} {} approval of {} (sha256 {}…) by role {}",
                if revoke { "revoked" } else { "recorded" },
                for_terminal(&a.kind),
                for_terminal(&rb.id),
                short(&hash),
                for_terminal(&a.approver),
            );
        }
        exit::OK
    })
}

async fn record(client: &tokio_postgres::Client, ctx: &Context, ev: Event) -> Result<(), String> {
    let dir = data_dir().map_err(|e| e.to_string())?;
    let mut log = AuditLog::open_in(&dir).map_err(|e| e.to_string())?;
    let rec = log.append(ctx, ev).map_err(|e| e.to_string())?;
    // The database copy goes to the spool when this role cannot write it.
    DbAudit::new(&dir)
        .write(client, &rec)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `pgpilot approvals RUNBOOK [CONN] [--format text|json]`.
pub fn list(path: &Path, db: Option<&str>, json: bool) -> u8 {
    let checked = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(rt) = crate::session::runtime() else {
        return exit::FAILED;
    };
    rt.block_on(async move {
        let (_, conn) = match connect(db).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        // The operator's first use creates pgpilot.approvals, so the DBA can
        // grant it; a reviewer without the rights just reads what is there.
        if let Err(e) = crate::engine::schema::ensure(&conn.client, false).await {
            eprintln!("pgpilot: warning: {}", for_terminal(&e.to_string()));
        }
        let rb = &checked.runbook;
        let hash = approval_hash(rb);
        let all = match store::list(&conn.client, &rb.id).await {
            Ok(a) => a,
            Err(e) => return fail("cannot read pgpilot.approvals", pg_text(&e)),
        };
        if json {
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|a| {
                    let mut v = serde_json::to_value(a).unwrap_or_default();
                    v["current"] = serde_json::Value::Bool(a.runbook_sha256 == hash);
                    v
                })
                .collect();
            let doc = serde_json::json!({
                "runbook": { "id": rb.id, "sha256": hash },
                "approvals": rows,
            });
            println!(
                "{}",
                crate::text::json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default())
            );
        } else {
            print!("{}", for_terminal(&to_text(&rb.id, &hash, &all)));
        }
        exit::OK
    })
}

fn to_text(id: &str, hash: &str, all: &[Approval]) -> String {
    let mut out = format!("approvals of {id} (sha256 {}…)\n", short(hash));
    if all.is_empty() {
        out.push_str("  none\n");
    }
    for a in all {
        let state = match (&a.revoked_at, a.runbook_sha256 == hash) {
            (Some(at), _) => format!("revoked {at} by {}", a.revoked_by.as_deref().unwrap_or("?")),
            (None, false) => format!("void: of sha256 {}…", short(&a.runbook_sha256)),
            (None, true) => "valid".into(),
        };
        out.push_str(&format!(
            "  {:<10} {:<12} {} ({}) {}@{}  {state}{}\n",
            a.kind,
            a.approver,
            a.approved_at,
            ago(a.age),
            a.os_user,
            a.client_host,
            a.comment
                .as_deref()
                .map(|c| format!("  \"{}\"", crate::text::one_line(c)))
                .unwrap_or_default()
        ));
    }
    out
}
