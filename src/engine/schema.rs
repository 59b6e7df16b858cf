//! pgpilot's own schema in the target (`pgpilot.step_state`,
//! `pgpilot.audit_log`) and its version in `pgpilot.schema_version`: a newer
//! pgpilot upgrades an older schema in one transaction, an older pgpilot
//! refuses a newer schema instead of misreading it.

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// The newest schema version this pgpilot knows.
pub const CURRENT: i32 = 7;

/// One step of the schema's history. Never edit a migration that has been
/// released: add the next one (and raise [`CURRENT`]).
struct Migration {
    version: i32,
    sql: &'static [&'static str],
}

/// In order. Version 1 is the schema as pgpilot created it before versions
/// existed (step_state and audit_log, both `IF NOT EXISTS`, so a target
/// holding only one of them gets the other).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: &[super::state::SCHEMA_SQL, crate::audit::db::CREATE_SQL],
    },
    Migration {
        version: 2,
        sql: &[V2_STATUS_CHECK],
    },
    Migration {
        version: 3,
        sql: &[V3_STATUS_CHECK],
    },
    Migration {
        version: 4,
        sql: &[V4_BACKFILL_CURSOR],
    },
    Migration {
        version: 5,
        sql: &[V5_APPROVALS],
    },
    Migration {
        version: 6,
        sql: &[V6_BACKUPS_AND_VERSIONS],
    },
    Migration {
        version: 7,
        sql: &[V7_SIGNED_APPROVALS],
    },
];

/// Version 2: `rolling_back` (an autocommit rollback under way, written
/// before its SQL) joins the statuses, and the column accepts only known
/// ones, so a status is never added without a version. NOT VALID: rows
/// already there (perhaps edited by hand) are not re-checked, so the upgrade
/// cannot fail on them; new rows are. Dropped first so it can run again.
const V2_STATUS_CHECK: &str = "
ALTER TABLE pgpilot.step_state
    DROP CONSTRAINT IF EXISTS step_state_status_known,
    ADD CONSTRAINT step_state_status_known CHECK (status IN
        ('applied', 'passed', 'acknowledged', 'skipped', 'in_progress', 'rolling_back', 'rolled_back'))
        NOT VALID";

/// Version 3: `failed` joins the statuses (a step whose transaction failed
/// and was rolled back: nothing of it is applied), so that the screens and
/// `pgpilot status` say so from the target itself. Same form as version 2.
const V3_STATUS_CHECK: &str = "
ALTER TABLE pgpilot.step_state
    DROP CONSTRAINT IF EXISTS step_state_status_known,
    ADD CONSTRAINT step_state_status_known CHECK (status IN
        ('applied', 'passed', 'acknowledged', 'skipped', 'in_progress', 'rolling_back', 'rolled_back',
         'failed'))
        NOT VALID";

/// Version 4: a backfill's cursor, written in each batch's own transaction
/// (the last key walked, as text, and how far it got), so a run after a
/// crash resumes after the last committed batch. NULL for other steps.
const V4_BACKFILL_CURSOR: &str = "
ALTER TABLE pgpilot.step_state
    ADD COLUMN IF NOT EXISTS cursor       text,
    ADD COLUMN IF NOT EXISTS rows_done    bigint,
    ADD COLUMN IF NOT EXISTS batches_done bigint,
    ADD COLUMN IF NOT EXISTS rows_total   bigint";

/// Version 5: approvals bound to a runbook's approval hash
/// (`governance::hash`). The trigger makes the approver the connecting
/// role (`session_user`, which SET ROLE does not change) and the time the
/// server's, whatever the insert says, so a role that is not a superuser
/// (nor the table's owner, who could drop the trigger) cannot record an
/// approval in another role's name; an update can only revoke, and only by
/// the role that approved. Nobody but the owner may read or write it until
/// the DBA grants it: `GRANT USAGE ON SCHEMA pgpilot TO reviewer;
/// GRANT SELECT, INSERT, UPDATE ON pgpilot.approvals TO reviewer`.
const V5_APPROVALS: &str = "
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS pgpilot.approvals (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runbook_id     text        NOT NULL,
    runbook_sha256 text        NOT NULL,
    kind           text        NOT NULL,
    approver       text        NOT NULL DEFAULT session_user,
    os_user        text        NOT NULL,
    client_host    text        NOT NULL,
    approved_at    timestamptz NOT NULL DEFAULT now(),
    comment        text,
    revoked_at     timestamptz,
    revoked_by     text
);
CREATE INDEX IF NOT EXISTS approvals_runbook ON pgpilot.approvals (runbook_id);
CREATE OR REPLACE FUNCTION pgpilot.approvals_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $f$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.approver := session_user;
        NEW.approved_at := now();
        NEW.revoked_at := NULL;
        NEW.revoked_by := NULL;
        RETURN NEW;
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'approval % is already revoked', OLD.id;
    END IF;
    IF OLD.approver <> session_user THEN
        RAISE EXCEPTION 'only role % can revoke its approval %', OLD.approver, OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Nothing but the revocation changes.
    NEW := OLD;
    NEW.revoked_at := now();
    NEW.revoked_by := session_user;
    RETURN NEW;
END
$f$;
DROP TRIGGER IF EXISTS approvals_stamp ON pgpilot.approvals;
CREATE TRIGGER approvals_stamp BEFORE INSERT OR UPDATE ON pgpilot.approvals
    FOR EACH ROW EXECUTE FUNCTION pgpilot.approvals_stamp();
REVOKE ALL ON pgpilot.approvals FROM PUBLIC;
RESET client_min_messages";

/// Version 6: a dump backup step's id (JSON: path, size, sha256) in its
/// state row, and the runbooks' schema versions (`[runbook] version`), one
/// row per completed run; the database's version is the newest row not
/// rolled back.
const V6_BACKUPS_AND_VERSIONS: &str = "
ALTER TABLE pgpilot.step_state ADD COLUMN IF NOT EXISTS backup text;
CREATE TABLE IF NOT EXISTS pgpilot.schema_versions (
    id               bigserial   PRIMARY KEY,
    runbook_id       text        NOT NULL,
    runbook_sha256   text        NOT NULL,
    version          text        NOT NULL,
    change_type      text        NOT NULL,
    deployed_at      timestamptz NOT NULL DEFAULT now(),
    deployed_by      text        NOT NULL DEFAULT session_user,
    operator         text        NOT NULL,
    rollback_version text,
    rolled_back_at   timestamptz,
    rolled_back_by   text
);
GRANT SELECT ON pgpilot.schema_versions TO PUBLIC";

/// Version 7: signed approvals (`governance::signature`): the approver's
/// principal, the time they signed (the text signed, UTC) and the SSH
/// signature (`ssh-keygen -Y sign`, armored). The trigger of version 5
/// leaves them as inserted and an update keeps them: a row proves
/// nothing by itself, the signature is checked against the runbook's
/// allowed-signers file each time it is counted.
const V7_SIGNED_APPROVALS: &str = "
ALTER TABLE pgpilot.approvals
    ADD COLUMN IF NOT EXISTS principal text,
    ADD COLUMN IF NOT EXISTS signed_at text,
    ADD COLUMN IF NOT EXISTS signature text";

/// The version row: one row (`one` is its key), readable by everyone (a
/// version number is no secret, and an older pgpilot run by a role with
/// fewer grants must still be able to read it and refuse).
const VERSION_TABLE_SQL: &str = "
CREATE TABLE IF NOT EXISTS pgpilot.schema_version (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    version     integer     NOT NULL,
    upgraded_at timestamptz NOT NULL DEFAULT now(),
    upgraded_by text        NOT NULL DEFAULT current_user
);
COMMENT ON TABLE pgpilot.schema_version IS
    'the version of schema pgpilot; a pgpilot that knows only older versions refuses it';
GRANT SELECT ON pgpilot.schema_version TO PUBLIC";

const STAMP_SQL: &str = "
INSERT INTO pgpilot.schema_version (version) VALUES ($1)
ON CONFLICT (one) DO UPDATE SET
    version = EXCLUDED.version, upgraded_at = now(), upgraded_by = current_user";

/// Serialises upgrades by concurrent pgpilots (a transaction-level
/// advisory lock, released at COMMIT). Its own class id: the runbook locks
/// use `hashtext('pgpilot')`.
const UPGRADE_LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtext('pgpilot.schema_version'), 0)";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "pgpilot.step_state is at schema version {found}, this pgpilot knows up to {known}: upgrade pgpilot"
    )]
    Newer { found: i32, known: i32 },
    #[error("cannot {action} schema pgpilot: {detail}")]
    Database {
        action: &'static str,
        detail: String,
    },
}

impl SchemaError {
    fn db(action: &'static str, e: &tokio_postgres::Error) -> SchemaError {
        let mut detail = match e.as_db_error() {
            Some(db) => format!("{} [{}]", db.message(), db.code().code()),
            None => crate::pg::redact(&e.to_string()),
        };
        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            detail.push_str(
                "; run pgpilot once as the owner of schema pgpilot and its tables (or a \
                 superuser) to upgrade it",
            );
        }
        SchemaError::Database { action, detail }
    }
}

/// The version of the schema found in the target: 0 when there is none,
/// 1 for one created before versions existed (step_state without a version row).
pub async fn found(client: &Client) -> Result<i32, SchemaError> {
    read(client).await.map(|f| f.version)
}

/// What the target holds.
struct Found {
    version: i32,
    /// A version row says so (else the version is inferred from the tables).
    stamped: bool,
}

async fn read(client: &Client) -> Result<Found, SchemaError> {
    let read = |e: tokio_postgres::Error| SchemaError::db("read the version of", &e);
    let row = client
        .query_one(
            "SELECT to_regclass('pgpilot.schema_version') IS NOT NULL AS versioned,
                    to_regclass('pgpilot.step_state') IS NOT NULL AS has_state",
            &[],
        )
        .await
        .map_err(read)?;
    let versioned: bool = row.try_get("versioned").map_err(read)?;
    let has_state: bool = row.try_get("has_state").map_err(read)?;
    let stamped: Option<i32> = if versioned {
        client
            .query_one(
                "SELECT max(version) AS version FROM pgpilot.schema_version",
                &[],
            )
            .await
            .and_then(|r| r.try_get("version"))
            .map_err(read)?
    } else {
        None
    };
    Ok(Found {
        version: stamped.unwrap_or(if has_state { 1 } else { 0 }),
        stamped: stamped.is_some(),
    })
}

/// Refuses a schema newer than this pgpilot knows; for readers (`status`).
pub async fn check(client: &Client) -> Result<i32, SchemaError> {
    let version = found(client).await?;
    refuse_newer(version)?;
    Ok(version)
}

fn refuse_newer(found: i32) -> Result<(), SchemaError> {
    if found > CURRENT {
        Err(SchemaError::Newer {
            found,
            known: CURRENT,
        })
    } else {
        Ok(())
    }
}

/// Makes the schema the current version: nothing when its version row says
/// so, refused when it is newer, else every later migration and the version row in one
/// transaction under the upgrade lock (`in_transaction`: the caller's
/// transaction, a rehearsal's, holds them instead and rolls them back).
/// Returns the version found before.
pub async fn ensure(client: &Client, in_transaction: bool) -> Result<i32, SchemaError> {
    let found = read(client).await?;
    refuse_newer(found.version)?;
    let before = found.version;
    if found.stamped && before == CURRENT {
        return Ok(before);
    }
    if in_transaction {
        return upgrade(client).await.map(|()| before);
    }
    // Two creators of a missing schema can still meet outside the lock (the
    // audit copy creates pgpilot.audit_log on its own): the loser sees a
    // unique violation, and once more finds the objects there.
    let mut tries = 0;
    loop {
        tries += 1;
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| SchemaError::db("upgrade", &e))?;
        let upgraded = upgrade(client).await;
        let ended = match &upgraded {
            Ok(()) => client.batch_execute("COMMIT").await,
            Err(_) => client.batch_execute("ROLLBACK").await,
        };
        match (upgraded, ended) {
            (Ok(()), Ok(())) => return Ok(before),
            (Err(SchemaError::Database { .. }), _) | (Ok(()), Err(_))
                if tries < 2 && !client.is_closed() =>
            {
                continue;
            }
            (Err(e), _) => return Err(e),
            (Ok(()), Err(e)) => return Err(SchemaError::db("commit the upgrade of", &e)),
        }
    }
}

async fn upgrade(client: &Client) -> Result<(), SchemaError> {
    client
        .batch_execute(UPGRADE_LOCK_SQL)
        .await
        .map_err(|e| SchemaError::db("lock", &e))?;
    // Again under the lock: another pgpilot may have upgraded meanwhile.
    let Found { version, stamped } = read(client).await?;
    refuse_newer(version)?;
    if stamped && version == CURRENT {
        return Ok(());
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > version) {
        for sql in m.sql {
            client
                .batch_execute(sql)
                .await
                .map_err(|e| SchemaError::db("upgrade", &e))?;
        }
    }
    client
        .batch_execute(VERSION_TABLE_SQL)
        .await
        .map_err(|e| SchemaError::db("upgrade", &e))?;
    client
        .execute(STAMP_SQL, &[&CURRENT])
        .await
        .map_err(|e| SchemaError::db("upgrade", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::Status;

    #[test]
    fn migrations_are_in_order_and_end_at_current() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<i32> = (1..=CURRENT).collect();
        assert_eq!(versions, expected);
    }

    /// A status the engine writes must be one the current schema accepts:
    /// a new one needs a migration (and a version).
    #[test]
    fn every_status_is_allowed_by_the_schema() {
        for status in Status::ALL {
            assert!(
                V3_STATUS_CHECK.contains(&format!("'{}'", status.as_str())),
                "status {} is not in the schema's CHECK: add a migration",
                status.as_str()
            );
        }
    }

    #[test]
    fn a_newer_schema_is_refused_with_the_remedy() {
        let e = refuse_newer(CURRENT + 1).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                format!(
                    "pgpilot.step_state is at schema version {}, this pgpilot knows up to {CURRENT}: upgrade pgpilot",
                    CURRENT + 1
                )
                .as_str()
            )
        );
        assert!(refuse_newer(CURRENT).is_ok());
    }
}
