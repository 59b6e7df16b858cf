//! The catalog reads of `check --db`, each in a READ ONLY transaction with
//! short timeouts: a column's current type, and what depends on an object a
//! DROP names (pg_depend, with a view's rewrite rule read as the view).

use tokio_postgres::Client;

use crate::analysis::catalog::{self, ColumnType, DropKind};
use crate::analysis::{RuleId, RunbookAnalysis, StatementAnalysis, WorkKind, finding, quote_ident};

const BEGIN: &str = "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '2s'; \
                     SET LOCAL lock_timeout = '200ms'";

pub(super) async fn server_version_num(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int8 AS num",
            &[],
        )
        .await?;
    row.try_get("num")
}

/// Each `ALTER COLUMN … TYPE` judged on the column's real type: a change
/// PostgreSQL makes without a rewrite is a note, any other a rewrite.
pub(super) async fn retypes(
    client: &Client,
    a: &mut RunbookAnalysis,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(BEGIN).await?;
    let result = retypes_in(client, a).await;
    client.batch_execute("ROLLBACK").await?;
    result
}

async fn retypes_in(client: &Client, a: &mut RunbookAnalysis) -> Result<(), tokio_postgres::Error> {
    for s in a.steps.iter_mut().flat_map(|st| st.statements.iter_mut()) {
        for r in s.retypes.clone() {
            let row = client
                .query_opt(
                    "SELECT t.typname::text AS typname, a.atttypmod, \
                            format_type(a.atttypid, a.atttypmod) AS shown \
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = to_regclass($1::text) AND a.attname = $2::text \
                       AND a.attnum > 0 AND NOT a.attisdropped",
                    &[&r.table.to_string(), &r.column],
                )
                .await?;
            let Some(row) = row else { continue };
            let from = ColumnType {
                name: row.try_get("typname")?,
                typmod: row.try_get("atttypmod")?,
            };
            let was: String = row.try_get("shown")?;
            let column = format!("{}.{}", r.table, quote_ident(&r.column));
            let to = catalog::shown(&r.to, &r.to_mods);
            let was = crate::text::one_line(&was);
            s.findings.retain(|f| {
                f.rule != RuleId::ColumnTypeChange.as_str()
                    && f.rule != RuleId::CoercibleTypeChange.as_str()
            });
            if catalog::rewrites_nothing(&from, &r) {
                s.work
                    .retain(|w| !(w.table == r.table && w.kind == WorkKind::Rewrite));
                s.findings.push(finding(
                    RuleId::CoercibleTypeChange,
                    format!("{column} goes from {was} to {to} on the target: binary-coercible, nothing is rewritten"),
                ));
            } else {
                if !s.work.iter().any(|w| w.table == r.table) {
                    s.work.push(crate::analysis::TableWork {
                        table: r.table.clone(),
                        kind: WorkKind::Rewrite,
                        keys: Vec::new(),
                    });
                }
                s.findings.push(finding(
                    RuleId::ColumnTypeChange,
                    format!("{column} goes from {was} to {to} on the target: the table and its indexes are rewritten"),
                ));
            }
            s.rewrites = s.work.iter().any(|w| w.kind == WorkKind::Rewrite);
        }
    }
    Ok(())
}

/// Each DROP of a table, view or routine that other objects on the target
/// depend on is a finding naming them: without CASCADE the DROP fails (an
/// error), with CASCADE they go too (a warning). What the runbook dropped
/// earlier (or drops in the same statement) is not counted.
pub(super) async fn dependents(
    client: &Client,
    a: &mut RunbookAnalysis,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(BEGIN).await?;
    let result = dependents_in(client, a).await;
    client.batch_execute("ROLLBACK").await?;
    result
}

/// (pg_class or pg_proc, oid) of an object.
type ObjectId = (u32, u32);

async fn dependents_in(
    client: &Client,
    a: &mut RunbookAnalysis,
) -> Result<(), tokio_postgres::Error> {
    let mut gone: Vec<ObjectId> = Vec::new();
    for s in a.steps.iter_mut().flat_map(|st| st.statements.iter_mut()) {
        let mut here = Vec::new();
        for d in &s.drops {
            if let Some(id) = object_id(client, d.kind, &d.lookup).await? {
                gone.push(id);
                here.push((d.clone(), id));
            }
        }
        for (d, id) in here {
            let names = depending(client, id, &gone).await?;
            if !names.is_empty() {
                add_finding(s, &d, &names);
            }
        }
    }
    Ok(())
}

async fn object_id(
    client: &Client,
    kind: DropKind,
    lookup: &str,
) -> Result<Option<ObjectId>, tokio_postgres::Error> {
    let sql = match kind {
        DropKind::Relation => {
            "SELECT 'pg_class'::regclass::oid AS classid, to_regclass($1::text)::oid AS objid"
        }
        DropKind::Routine => {
            "SELECT 'pg_proc'::regclass::oid AS classid, to_regprocedure($1::text)::oid AS objid"
        }
        DropKind::RoutineByName => {
            "SELECT 'pg_proc'::regclass::oid AS classid, to_regproc($1::text)::oid AS objid"
        }
    };
    let row = match client.query_one(sql, &[&lookup]).await {
        Ok(row) => row,
        // A name the server cannot read (a type it lacks): nothing to look up.
        Err(e) if e.as_db_error().is_some() => {
            client.batch_execute("ROLLBACK").await?;
            client.batch_execute(BEGIN).await?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let classid: u32 = row.try_get("classid")?;
    let objid: Option<u32> = row.try_get("objid")?;
    Ok(objid.map(|o| (classid, o)))
}

/// What depends on `id` in the ordinary way (deptype 'n'), a view's rewrite
/// rule read as the view, without the objects in `gone`.
async fn depending(
    client: &Client,
    id: ObjectId,
    gone: &[ObjectId],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT \
                    CASE WHEN r.oid IS NULL THEN d.classid ELSE 'pg_class'::regclass::oid END AS classid, \
                    COALESCE(r.ev_class, d.objid) AS objid, \
                    CASE WHEN r.oid IS NULL THEN pg_describe_object(d.classid, d.objid, d.objsubid) \
                         ELSE pg_describe_object('pg_class'::regclass, r.ev_class, 0) END AS what \
             FROM pg_depend d \
             LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid \
             WHERE d.refclassid = $1 AND d.refobjid = $2 AND d.deptype = 'n' \
               AND COALESCE(r.ev_class, 0) <> $2 \
             ORDER BY 3",
            &[&id.0, &id.1],
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let dep: ObjectId = (row.try_get("classid")?, row.try_get("objid")?);
        let what: Option<String> = row.try_get("what")?;
        if gone.contains(&dep) {
            continue;
        }
        if let Some(w) = what {
            let w = crate::text::one_line(&w);
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    Ok(out)
}

fn add_finding(s: &mut StatementAnalysis, d: &catalog::Dropped, names: &[String]) {
    let object = crate::text::one_line(&d.lookup);
    let list = names.join(", ");
    if d.cascade {
        s.findings.push(finding(
            RuleId::DropWithDependents,
            format!("CASCADE also drops what depends on {object} on the target: {list}"),
        ));
    } else {
        let mut f = finding(
            RuleId::DropWithDependents,
            format!("dropping {object} fails on the target: {list} depend(s) on it"),
        );
        f.severity = crate::analysis::FindingSeverity::Error;
        s.findings.push(f);
    }
}
