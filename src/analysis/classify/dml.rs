//! Statements that read or change rows: SELECT, INSERT, UPDATE, DELETE,
//! MERGE, COPY, TRUNCATE, LOCK TABLE.

use pg_query::NodeEnum as N;
use pg_query::protobuf as pb;

use super::facts::Facts;
use super::tree::{range_vars, read_all, rv_name};
use crate::analysis::Context;
use crate::analysis::StatementKind;
use crate::analysis::lock::LockMode::{self, *};
use crate::analysis::name::RelationName;
use crate::analysis::rules::RuleId;

pub(super) fn select(node: &N, s: &pb::SelectStmt) -> Facts {
    let mut f = Facts::new(StatementKind::SELECT_STMT);
    let locked: Vec<RelationName> = s
        .locking_clause
        .iter()
        .filter_map(|c| match c.node.as_ref() {
            Some(N::LockingClause(lc)) => Some(lc),
            _ => None,
        })
        .flat_map(|lc| {
            if lc.locked_rels.is_empty() {
                range_vars(node)
            } else {
                lc.locked_rels
                    .iter()
                    .filter_map(|r| match r.node.as_ref() {
                        Some(N::RangeVar(rv)) => Some(rv_name(rv)),
                        _ => None,
                    })
                    .collect()
            }
        })
        .collect();
    for r in range_vars(node) {
        // SELECT … FOR UPDATE/SHARE takes ROW SHARE on the locked tables.
        f.lock(
            &r,
            if locked.contains(&r) {
                RowShare
            } else {
                AccessShare
            },
        );
    }
    if let Some(into) = &s.into_clause
        && let Some(rv) = &into.rel
    {
        f.creates.push(rv_name(rv));
    }
    f
}

pub(super) fn insert(node: &N, s: &pb::InsertStmt) -> Facts {
    let mut f = Facts::new(StatementKind::INSERT_STMT);
    let target = s.relation.as_ref().map(rv_name).unwrap_or_default();
    f.lock(&target, RowExclusive);
    read_all(&mut f, node, std::slice::from_ref(&target));
    if let Some(oc) = &s.on_conflict_clause
        && oc.action == pb::OnConflictAction::OnconflictUpdate as i32
    {
        f.destroy("overwrite rows of", target.to_string());
    }
    f
}

pub(super) fn update(node: &N, s: &pb::UpdateStmt, ctx: &Context) -> Facts {
    let mut f = Facts::new(StatementKind::UPDATE_STMT);
    let target = s.relation.as_ref().map(rv_name).unwrap_or_default();
    f.lock(&target, RowExclusive);
    read_all(&mut f, node, std::slice::from_ref(&target));
    if s.where_clause.is_none() && !ctx.created.contains(&target) {
        f.find(
            RuleId::UnboundedDml,
            format!("UPDATE of every row of {target}"),
        );
    }
    f.destroy("update", target.to_string());
    f
}

pub(super) fn delete(node: &N, s: &pb::DeleteStmt, ctx: &Context) -> Facts {
    let mut f = Facts::new(StatementKind::DELETE_STMT);
    let target = s.relation.as_ref().map(rv_name).unwrap_or_default();
    f.lock(&target, RowExclusive);
    read_all(&mut f, node, std::slice::from_ref(&target));
    if s.where_clause.is_none() && !ctx.created.contains(&target) {
        f.find(
            RuleId::UnboundedDml,
            format!("DELETE of every row of {target}"),
        );
    }
    f.destroy("delete from", target.to_string());
    f
}

pub(super) fn merge(node: &N, s: &pb::MergeStmt) -> Facts {
    let mut f = Facts::new(StatementKind::MERGE_STMT);
    let target = s.relation.as_ref().map(rv_name).unwrap_or_default();
    f.lock(&target, RowExclusive);
    read_all(&mut f, node, std::slice::from_ref(&target));
    let changes_rows = s.merge_when_clauses.iter().any(|w| {
            matches!(w.node.as_ref(), Some(N::MergeWhenClause(c))
                if c.command_type == pb::CmdType::CmdUpdate as i32 || c.command_type == pb::CmdType::CmdDelete as i32)
        });
    if changes_rows {
        f.destroy("merge into", target.to_string());
    }
    f
}

pub(super) fn copy(node: &N, s: &pb::CopyStmt) -> Facts {
    let mut f = Facts::new(StatementKind::COPY_STMT);
    if let Some(rv) = &s.relation {
        f.lock(
            &rv_name(rv),
            if s.is_from { RowExclusive } else { AccessShare },
        );
    } else {
        read_all(&mut f, node, &[]);
    }
    if s.is_program {
        f.opaque = true;
        f.find(
            RuleId::OpaqueStatement,
            "COPY … PROGRAM runs a shell command on the server",
        );
    }
    f
}

pub(super) fn truncate(s: &pb::TruncateStmt) -> Facts {
    let mut f = Facts::new(StatementKind::TRUNCATE_STMT);
    let names: Vec<RelationName> = s
        .relations
        .iter()
        .filter_map(|r| match r.node.as_ref() {
            Some(N::RangeVar(rv)) => Some(rv_name(rv)),
            _ => None,
        })
        .collect();
    for n in &names {
        f.lock(n, AccessExclusive);
    }
    let listed = names
        .iter()
        .map(RelationName::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if s.behavior == pb::DropBehavior::DropCascade as i32 {
        f.find(
            RuleId::TruncateCascade,
            format!("TRUNCATE {listed} CASCADE also empties the tables that reference it"),
        );
    }
    f.destroy("truncate", listed);
    f
}

pub(super) fn lock_table(s: &pb::LockStmt) -> Facts {
    let mut f = Facts::new(StatementKind::LOCK_STMT);
    let mode = LockMode::from_pg_number(s.mode).unwrap_or(AccessExclusive);
    for r in &s.relations {
        if let Some(N::RangeVar(rv)) = r.node.as_ref() {
            f.lock(&rv_name(rv), mode);
        }
    }
    f.find(
        RuleId::LockTable,
        format!("LOCK TABLE … IN {} MODE", mode.sql_name()),
    );
    f
}
