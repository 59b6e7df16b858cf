//! `pgpilot.approvals` (schema versions 5 and 7, `engine::schema`): record,
//! revoke and read approvals. The server sets the approver and the time;
//! a signed approval also carries its principal, time and SSH signature.

use std::time::Duration;

use tokio_postgres::{Client, Row};

use super::policy::Approval;

const COLUMNS: &str =
    "id, runbook_sha256, kind, approver, os_user, client_host, comment, revoked_by,
    principal, signed_at, signature,
    to_char(approved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS approved_at,
    to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS revoked_at";

/// The time the checks use: the server's `now()`, or in test builds the
/// instant `PGPILOT_TEST_NOW` names (RFC 3339), so notice can be tested
/// without waiting. A release build never reads the variable.
pub fn clock_override() -> Option<String> {
    #[cfg(feature = "failpoints")]
    {
        std::env::var("PGPILOT_TEST_NOW").ok()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        None
    }
}

fn approval(r: &Row) -> Result<Approval, tokio_postgres::Error> {
    let mut age_ms: i64 = r.try_get("age_ms")?;
    let approved_at: String = r.try_get("approved_at")?;
    let signed_at: Option<String> = r.try_get("signed_at")?;
    // A signed approval is as old as its signature, whose time the
    // signature covers: a row's approved_at can be backdated by a
    // superuser, the signed time cannot.
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    if let (Some(signed), Some(approved)) =
        (signed_at.as_deref().and_then(parse), parse(&approved_at))
    {
        age_ms -= (signed - approved).num_milliseconds().max(0);
    }
    Ok(Approval {
        id: r.try_get("id")?,
        runbook_sha256: r.try_get("runbook_sha256")?,
        kind: r.try_get("kind")?,
        approver: r.try_get("approver")?,
        os_user: r.try_get("os_user")?,
        client_host: r.try_get("client_host")?,
        approved_at: r.try_get("approved_at")?,
        age: Duration::from_millis(age_ms.max(0) as u64),
        comment: r.try_get("comment")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
        principal: r.try_get("principal")?,
        signed_at: r.try_get("signed_at")?,
        signature: r.try_get("signature")?,
        signature_check: Default::default(),
    })
}

/// Every approval of `runbook_id`, oldest first; none when the table is absent.
pub async fn list(
    client: &Client,
    runbook_id: &str,
) -> Result<Vec<Approval>, tokio_postgres::Error> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('pgpilot.approvals') IS NOT NULL AS present",
            &[],
        )
        .await?
        .try_get("present")?;
    if !present {
        return Ok(Vec::new());
    }
    let now = clock_override();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS},
                        (1000 * extract(epoch FROM coalesce($2::text::timestamptz, now()) - approved_at))::bigint AS age_ms
                   FROM pgpilot.approvals WHERE runbook_id = $1 ORDER BY approved_at, id"
            ),
            &[&runbook_id, &now],
        )
        .await?;
    rows.iter().map(approval).collect()
}

/// Records an approval; the server fills in the role and the time.
pub async fn insert(
    client: &Client,
    runbook_id: &str,
    hash: &str,
    kind: &str,
    os_user: &str,
    client_host: &str,
    comment: Option<&str>,
) -> Result<Approval, tokio_postgres::Error> {
    insert_signed(
        client,
        runbook_id,
        hash,
        kind,
        os_user,
        client_host,
        comment,
        None,
    )
    .await
}

/// A signed approval's own parts (`governance::signature`).
pub struct Signed<'a> {
    pub principal: &'a str,
    pub signed_at: &'a str,
    pub signature: &'a str,
}

/// [`insert`], with the approver's signature when there is one.
#[allow(clippy::too_many_arguments)]
pub async fn insert_signed(
    client: &Client,
    runbook_id: &str,
    hash: &str,
    kind: &str,
    os_user: &str,
    client_host: &str,
    comment: Option<&str>,
    signed: Option<&Signed<'_>>,
) -> Result<Approval, tokio_postgres::Error> {
    let (principal, signed_at, signature) = match signed {
        Some(s) => (Some(s.principal), Some(s.signed_at), Some(s.signature)),
        None => (None, None, None),
    };
    let row = client
        .query_one(
            &format!(
                "INSERT INTO pgpilot.approvals
                        (runbook_id, runbook_sha256, kind, os_user, client_host, comment,
                         principal, signed_at, signature)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}, 0::bigint AS age_ms"
            ),
            &[
                &runbook_id,
                &hash,
                &kind,
                &os_user,
                &client_host,
                &comment,
                &principal,
                &signed_at,
                &signature,
            ],
        )
        .await?;
    approval(&row)
}

/// Revokes this role's live approvals of `kind` for this runbook version;
/// returns the ones revoked.
pub async fn revoke(
    client: &Client,
    runbook_id: &str,
    hash: &str,
    kind: &str,
) -> Result<Vec<Approval>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "UPDATE pgpilot.approvals SET revoked_at = now()
                  WHERE runbook_id = $1 AND runbook_sha256 = $2 AND kind = $3
                    AND approver = session_user AND revoked_at IS NULL
                 RETURNING {COLUMNS}, 0::bigint AS age_ms"
            ),
            &[&runbook_id, &hash, &kind],
        )
        .await?;
    rows.iter().map(approval).collect()
}

/// The role this connection logged in as: the approver, and the operator
/// whose own approvals do not count.
pub async fn session_user(client: &Client) -> Result<String, tokio_postgres::Error> {
    client
        .query_one("SELECT session_user::text AS who", &[])
        .await?
        .try_get("who")
}
