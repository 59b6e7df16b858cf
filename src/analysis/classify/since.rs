//! What depends on the target's PostgreSQL version (`Context::version`):
//! syntax the target lacks is a finding, advice that names a newer
//! feature is replaced by what the target can do, and facts that changed
//! between versions (a DEFAULT rewrote before 11, ALTER TYPE … ADD VALUE
//! could not run in a transaction block before 12) follow the target.
//! The versions are the release notes' ("E.x. Release N").

use pg_query::NodeEnum as N;
use pg_query::protobuf as pb;

use super::facts::Facts;
use super::tree::{has_option, rv_name};
use crate::analysis::name::quote_ident;
use crate::analysis::rules::RuleId;
use crate::analysis::{Context, WorkKind};
use pb::AlterTableType as At;
use pb::ConstrType as Ct;

pub(super) fn apply(node: &N, ctx: &Context, f: &mut Facts) {
    let v = ctx.version;
    for (feature, since) in syntax(node) {
        if !v.has(since) {
            f.find(
                RuleId::NeedsNewerPostgres,
                format!(
                    "{feature} needs PostgreSQL {since}; target is {} (from {})",
                    v.major,
                    v.source.label()
                ),
            );
        }
    }
    let major = v.major;
    for finding in &mut f.findings {
        let advice = match RuleId::parse(finding.rule) {
            Some(RuleId::ReindexNotConcurrent) if !v.has(12) => format!(
                "PostgreSQL {major} has no REINDEX CONCURRENTLY (12+): CREATE INDEX CONCURRENTLY a new index with the same definition, DROP INDEX CONCURRENTLY the old one, then rename the new one, each in a step of its own"
            ),
            Some(RuleId::DetachPartitionNotConcurrent) if !v.has(14) => format!(
                "PostgreSQL {major} has no DETACH PARTITION … CONCURRENTLY (14+): run the DETACH alone in its step with a short lock_timeout (pgpilot retries it) at a quiet time, or upgrade to 14"
            ),
            Some(RuleId::SetNotNull) if !v.has(12) => format!(
                "PostgreSQL {major} scans the table for SET NOT NULL even when a validated CHECK (col IS NOT NULL) proves it (12+ skips the scan): keep the CHECK added NOT VALID then VALIDATEd instead, or SET NOT NULL at a quiet time"
            ),
            _ => continue,
        };
        finding.advice = advice;
        finding.message = format!("{} (PostgreSQL {major})", finding.message);
    }
    match node {
        // ALTER TYPE … ADD VALUE "cannot be executed inside a transaction
        // block" before PostgreSQL 12 (ALTER TYPE, 11's docs).
        N::AlterEnumStmt(s) if s.old_val.is_empty() && !v.has(12) => f.transactional = false,
        N::AlterTableStmt(s) if !v.has(11) => {
            let table = s.relation.as_ref().map(rv_name).unwrap_or_default();
            if ctx.created.contains(&table) {
                return;
            }
            for cd in added_columns(s) {
                if has_default(cd)
                    && !f
                        .findings
                        .iter()
                        .any(|x| x.rule == RuleId::VolatileDefault.as_str())
                {
                    f.rewrites = true;
                    f.work(&table, WorkKind::Rewrite);
                    f.find(
                        RuleId::AddColumnDefaultRewrite,
                        format!(
                            "the DEFAULT of {table}.{} rewrites every existing row on PostgreSQL {major}",
                            quote_ident(&cd.colname)
                        ),
                    );
                }
            }
        }
        _ => {}
    }
}

/// The version-dependent syntax a statement uses, with the major version
/// that introduced it.
fn syntax(node: &N) -> Vec<(&'static str, u32)> {
    let mut out = Vec::new();
    match node {
        N::MergeStmt(_) => out.push(("MERGE", 15)),
        N::ReindexStmt(s) if has_option(&s.params, "concurrently") => {
            out.push(("REINDEX … CONCURRENTLY", 12))
        }
        N::IndexStmt(s) if s.nulls_not_distinct => out.push(("NULLS NOT DISTINCT", 15)),
        N::DropdbStmt(s) if has_option(&s.options, "force") => {
            out.push(("DROP DATABASE … WITH (FORCE)", 13))
        }
        N::CreateStmt(s) => {
            for e in &s.table_elts {
                match e.node.as_ref() {
                    Some(N::ColumnDef(cd)) => constraints(column_constraints(cd), &mut out),
                    Some(N::Constraint(c)) => constraints([c.as_ref()], &mut out),
                    _ => {}
                }
            }
        }
        N::AlterTableStmt(s) => {
            for c in s.cmds.iter().filter_map(|c| match c.node.as_ref() {
                Some(N::AlterTableCmd(c)) => Some(c),
                _ => None,
            }) {
                let def = c.def.as_ref().and_then(|d| d.node.as_ref());
                match At::try_from(c.subtype).unwrap_or(At::Undefined) {
                    At::AtDetachPartition if matches!(def, Some(N::PartitionCmd(p)) if p.concurrent) => {
                        out.push(("DETACH PARTITION … CONCURRENTLY", 14))
                    }
                    At::AtDetachPartitionFinalize => out.push(("DETACH PARTITION … FINALIZE", 14)),
                    At::AtSetAccessMethod => out.push(("ALTER TABLE … SET ACCESS METHOD", 15)),
                    At::AtAddColumn => {
                        if let Some(N::ColumnDef(cd)) = def {
                            constraints(column_constraints(cd), &mut out);
                        }
                    }
                    At::AtAddConstraint => {
                        if let Some(N::Constraint(con)) = def {
                            constraints([con.as_ref()], &mut out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

fn constraints<'a>(
    cs: impl IntoIterator<Item = &'a pb::Constraint>,
    out: &mut Vec<(&'static str, u32)>,
) {
    for c in cs {
        match Ct::try_from(c.contype).unwrap_or(Ct::Undefined) {
            Ct::ConstrGenerated if c.generated_kind == "v" => {
                out.push(("a VIRTUAL generated column", 18))
            }
            Ct::ConstrGenerated => out.push(("GENERATED ALWAYS AS (…) STORED", 12)),
            Ct::ConstrUnique | Ct::ConstrPrimary if c.nulls_not_distinct => {
                out.push(("UNIQUE NULLS NOT DISTINCT", 15))
            }
            _ => {}
        }
    }
}

fn column_constraints(cd: &pb::ColumnDef) -> impl Iterator<Item = &pb::Constraint> {
    cd.constraints.iter().filter_map(|c| match c.node.as_ref() {
        Some(N::Constraint(c)) => Some(c.as_ref()),
        _ => None,
    })
}

fn added_columns(s: &pb::AlterTableStmt) -> impl Iterator<Item = &pb::ColumnDef> {
    s.cmds.iter().filter_map(|c| match c.node.as_ref() {
        Some(N::AlterTableCmd(c)) if c.subtype == At::AtAddColumn as i32 => {
            match c.def.as_ref().and_then(|d| d.node.as_ref()) {
                Some(N::ColumnDef(cd)) => Some(cd.as_ref()),
                _ => None,
            }
        }
        _ => None,
    })
}

/// A DEFAULT other than NULL: what PostgreSQL 10 writes into every row.
fn has_default(cd: &pb::ColumnDef) -> bool {
    column_constraints(cd).any(|c| {
        c.contype == Ct::ConstrDefault as i32
            && !matches!(
                c.raw_expr.as_ref().and_then(|e| e.node.as_ref()),
                Some(N::AConst(a)) if a.isnull
            )
    })
}
