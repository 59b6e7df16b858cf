//! `pgpilot approve` and `pgpilot approvals`: record, revoke and list the
//! approvals of a runbook's current content on its target, signed with
//! the approver's SSH key where the runbook asks for it.

use std::path::Path;

use crate::audit::db::DbAudit;
use crate::audit::local::{AuditLog, data_dir};
use crate::audit::record::{Action, AuditTarget, Context, Event};
use crate::check::{Checked, check_file};
use crate::exit;
use crate::governance::hash::approval_hash;
use crate::governance::policy::{Approval, ago, short};
use crate::governance::signature::{self, SignatureCheck};
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

/// `--sign-with KEY [--principal P]` of `pgpilot approve`.
#[derive(Clone, Copy)]
pub struct SignWith<'a> {
    pub key: &'a Path,
    pub principal: Option<&'a str>,
}

/// The signed parts of an approval about to be recorded.
struct Signature {
    principal: String,
    signed_at: String,
    text: String,
    check: SignatureCheck,
}

/// Signs the approval of `kind` of this runbook version, and checks the
/// signature against the runbook's allowed_signers at once, so an approver
/// whose key is not listed learns it now rather than the operator later.
async fn sign_approval(
    rb: &crate::runbook::Runbook,
    hash: &str,
    kind: &str,
    with: SignWith<'_>,
) -> Result<Signature, u8> {
    let principal = match with.principal {
        Some(p) => p.to_string(),
        None => signature::principal_of_key(with.key).map_err(|e| {
            eprintln!("pgpilot: --sign-with: {}", for_terminal(&e.to_string()));
            exit::USAGE
        })?,
    };
    if !signature::valid_principal(&principal) {
        eprintln!(
            "pgpilot: --principal {}: a principal is one word such as alice@example.com",
            for_terminal(&principal)
        );
        return Err(exit::USAGE);
    }
    let signed_at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let message = signature::message(&rb.id, hash, kind, &principal, &signed_at);
    let text = signature::sign(with.key, &message).await.map_err(|e| {
        eprintln!(
            "pgpilot: cannot sign with {}: {}",
            for_terminal(&with.key.display().to_string()),
            for_terminal(&e.to_string())
        );
        exit::FAILED
    })?;
    let signers = rb
        .approvals
        .as_ref()
        .and_then(|a| a.allowed_signers.as_ref());
    let check = match signers {
        None => SignatureCheck::Unchecked,
        Some(s) => signature::verify(s, &principal, &text, &message).await,
    };
    if let (SignatureCheck::Invalid(why), Some(s)) = (&check, signers) {
        eprintln!(
            "pgpilot: refused: the signature of {} does not verify against the runbook's allowed_signers ({}): {}; ask the runbook's author to list your public key for that principal",
            for_terminal(&principal),
            for_terminal(&s.written),
            for_terminal(why)
        );
        return Err(exit::REFUSED);
    }
    Ok(Signature {
        principal,
        signed_at,
        text,
        check,
    })
}

/// `pgpilot approve RUNBOOK [CONN] --as KIND [--comment TEXT] [--revoke]
/// [--sign-with KEY [--principal P]]`.
pub fn approve(
    path: &Path,
    db: Option<&str>,
    kind: &str,
    comment: Option<&str>,
    revoke: bool,
    sign_with: Option<SignWith<'_>>,
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
    if let Some(s) = checked
        .runbook
        .approvals
        .as_ref()
        .and_then(|a| a.allowed_signers.as_ref())
        && sign_with.is_none()
        && !revoke
    {
        eprintln!(
            "pgpilot: this runbook counts only approvals signed with a key its allowed_signers ({}) lists: add --sign-with ~/.ssh/id_ed25519 (your private key, or its .pub with the key in ssh-agent)",
            for_terminal(&s.written)
        );
        return exit::USAGE;
    }
    let Some(rt) = crate::session::runtime() else {
        return exit::FAILED;
    };
    rt.block_on(async move {
        let rb = &checked.runbook;
        let hash = approval_hash(rb);
        let signed = match sign_with {
            Some(with) => match sign_approval(rb, &hash, kind, with).await {
                Ok(s) => Some(s),
                Err(code) => return code,
            },
            None => None,
        };
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
        let operator = crate::os_user::operator_name();
        let host = crate::os_user::host_name();
        let result = if revoke {
            store::revoke(client, &rb.id, &hash, kind).await
        } else {
            let parts = signed.as_ref().map(|s| store::Signed {
                principal: &s.principal,
                signed_at: &s.signed_at,
                signature: &s.text,
            });
            store::insert_signed(
                client,
                &rb.id,
                &hash,
                kind,
                &operator,
                &host,
                comment,
                parts.as_ref(),
            )
            .await
            .map(|mut a| {
                a.signature_check = signed
                    .as_ref()
                    .map(|s| s.check.clone())
                    .unwrap_or_default();
                vec![a]
            })
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
            let sig = match a.signature_check {
                SignatureCheck::Unsigned => String::new(),
                ref check => format!(", {}", check.describe(a.principal.as_deref())),
            };
            ev.message = Some(format!(
                "{} approval {} of sha256 {} by role {}{sig}{}",
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
                "{} {} approval of {} (sha256 {}…) by role {}{}",
                if revoke { "revoked" } else { "recorded" },
                for_terminal(&a.kind),
                for_terminal(&rb.id),
                short(&hash),
                for_terminal(&a.approver),
                for_terminal(&sig),
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
        let mut all = match store::list(&conn.client, &rb.id).await {
            Ok(a) => a,
            Err(e) => return fail("cannot read pgpilot.approvals", pg_text(&e)),
        };
        let signers = rb
            .approvals
            .as_ref()
            .and_then(|a| a.allowed_signers.as_ref());
        signature::check_all(signers, &rb.id, &mut all).await;
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
            print!(
                "{}",
                for_terminal(&to_text(&rb.id, &hash, &all, signers.is_some()))
            );
        }
        exit::OK
    })
}

/// `signed`: the runbook counts only approvals whose signature verifies.
fn to_text(id: &str, hash: &str, all: &[Approval], signed: bool) -> String {
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
        let state = match &a.signature_check {
            SignatureCheck::Unsigned if signed => {
                "unsigned, not counted (the runbook names allowed_signers)".to_string()
            }
            SignatureCheck::Unsigned => state,
            check @ SignatureCheck::Invalid(_) => {
                format!("not counted: {}", check.describe(a.principal.as_deref()))
            }
            check => format!("{state}; {}", check.describe(a.principal.as_deref())),
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
