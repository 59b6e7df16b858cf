//! Per-statement facts. Lock levels follow PostgreSQL's docs (13.3.1
//! "Table-Level Locks", and each command's reference page) and tablecmds.c's
//! AlterTableGetLockLevel; tests/lock_ground_truth.rs checks every claim
//! against pg_locks on a real server.

mod dml;
mod facts;
mod index;
mod lint;
mod objects;
mod since;
mod table;
mod tree;

use pg_query::NodeEnum as N;

use super::Context;
use super::StatementKind;
use super::rules::RuleId;
use tree::read_all;

pub use facts::Facts;
pub use lint::too_long;

/// What one statement does: its family's facts, then the shape rules.
pub fn classify(node: &N, ctx: &mut Context) -> Facts {
    let mut f = family(node, ctx);
    lint::lint(node, ctx, &mut f);
    since::apply(node, ctx, &mut f);
    f
}

/// What one statement does, by its family.
fn family(node: &N, ctx: &mut Context) -> Facts {
    match node {
        N::SelectStmt(s) => dml::select(node, s),
        N::InsertStmt(s) => dml::insert(node, s),
        N::UpdateStmt(s) => dml::update(node, s, ctx),
        N::DeleteStmt(s) => dml::delete(node, s, ctx),
        N::MergeStmt(s) => dml::merge(node, s),
        N::CopyStmt(s) => dml::copy(node, s),
        N::CreateStmt(s) => table::create_table(s, ctx),
        N::CreateTableAsStmt(s) => objects::create_table_as(s),
        N::ViewStmt(s) => objects::view(s, ctx),
        N::IndexStmt(s) => index::create_index(s, ctx),
        N::DropStmt(s) => objects::drop(s, ctx),
        N::TruncateStmt(s) => dml::truncate(s),
        N::AlterTableStmt(s) => table::alter_table(s, ctx),
        N::RenameStmt(s) => objects::rename(s),
        N::CreateTrigStmt(s) => objects::create_trigger(s),
        N::CommentStmt(s) => objects::comment(s),
        N::LockStmt(s) => dml::lock_table(s),
        N::VacuumStmt(s) => index::vacuum(s),
        N::ClusterStmt(s) => index::cluster(s),
        N::ReindexStmt(s) => index::reindex(s),
        N::RefreshMatViewStmt(s) => index::refresh_matview(s),
        N::CreateStatsStmt(s) => objects::create_stats(s),
        N::AlterObjectSchemaStmt(s) => objects::alter_object_schema(s),
        N::TransactionStmt(_) => {
            let mut f = Facts::new(StatementKind::TRANSACTION_STMT);
            f.find(
                RuleId::TransactionControl,
                "transaction control inside a step",
            );
            f
        }
        N::DoStmt(_) | N::CallStmt(_) => {
            let mut f = Facts::new(StatementKind::of(node));
            f.opaque = true;
            f.find(RuleId::OpaqueStatement, "its effects cannot be analyzed");
            f
        }
        N::CreatedbStmt(_)
        | N::AlterSystemStmt(_)
        | N::CreateTableSpaceStmt(_)
        | N::DropTableSpaceStmt(_) => {
            // These cannot run inside a transaction block (their reference pages).
            let mut f = Facts::new(StatementKind::of(node));
            f.transactional = false;
            f
        }
        N::DropdbStmt(s) => objects::dropdb(s),
        N::DropOwnedStmt(s) => objects::drop_owned(s),
        N::ExplainStmt(s) => {
            let analyze = s
                .options
                .iter()
                .any(|o| matches!(o.node.as_ref(), Some(N::DefElem(d)) if d.defname == "analyze"));
            let inner = s.query.as_ref().and_then(|q| q.node.as_ref());
            match inner {
                // EXPLAIN ANALYZE runs the statement.
                Some(q) if analyze => {
                    let mut f = classify(q, ctx);
                    f.kind = StatementKind::EXPLAIN_STMT;
                    f
                }
                Some(q) => {
                    let mut f = Facts::new(StatementKind::EXPLAIN_STMT);
                    read_all(&mut f, q, &[]);
                    f
                }
                None => Facts::new(StatementKind::EXPLAIN_STMT),
            }
        }
        N::CreateSeqStmt(s) => objects::create_sequence(s),
        other => Facts::new(StatementKind::of(other)),
    }
}
