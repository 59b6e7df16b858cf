//! DDL of objects other than tables' columns and indexes: views, sequences,
//! triggers, statistics, DROP, RENAME, COMMENT, schemas, databases, roles.

use pg_query::NodeEnum as N;
use pg_query::protobuf as pb;

use super::facts::Facts;
use super::tree::{dotted, object_name, object_parts, read_all, rv_name};
use crate::analysis::Context;
use crate::analysis::StatementKind;
use crate::analysis::catalog::{DropKind, Dropped};
use crate::analysis::lock::LockMode::*;
use crate::analysis::name::{RelationName, quote_ident};
use crate::analysis::rules::RuleId;
use pb::ObjectType as Ot;

pub(super) fn create_table_as(s: &pb::CreateTableAsStmt) -> Facts {
    let mut f = Facts::new(StatementKind::CREATE_TABLE_AS_STMT);
    if let Some(into) = &s.into
        && let Some(rv) = &into.rel
    {
        f.creates.push(rv_name(rv));
    }
    if let Some(q) = s.query.as_ref().and_then(|q| q.node.as_ref()) {
        read_all(&mut f, q, &[]);
    }
    f
}

pub(super) fn view(s: &pb::ViewStmt, ctx: &Context) -> Facts {
    let mut f = Facts::new(StatementKind::VIEW_STMT);
    let view = s.view.as_ref().map(rv_name).unwrap_or_default();
    if let Some(q) = s.query.as_ref().and_then(|q| q.node.as_ref()) {
        read_all(&mut f, q, &[]);
    }
    if s.replace && !ctx.created.contains(&view) {
        f.lock(&view, AccessExclusive);
    } else {
        f.creates.push(view);
    }
    f
}

pub(super) fn create_sequence(s: &pb::CreateSeqStmt) -> Facts {
    let mut f = Facts::new(StatementKind::CREATE_SEQ_STMT);
    if let Some(rv) = &s.sequence {
        f.creates.push(rv_name(rv));
    }
    f
}

pub(super) fn create_trigger(s: &pb::CreateTrigStmt) -> Facts {
    let mut f = Facts::new(StatementKind::CREATE_TRIG_STMT);
    if let Some(rv) = &s.relation {
        f.lock(&rv_name(rv), ShareRowExclusive);
    }
    f
}

pub(super) fn create_stats(s: &pb::CreateStatsStmt) -> Facts {
    let mut f = Facts::new(StatementKind::CREATE_STATS_STMT);
    for r in &s.relations {
        if let Some(N::RangeVar(rv)) = r.node.as_ref() {
            f.lock(&rv_name(rv), ShareUpdateExclusive);
        }
    }
    f
}

pub(super) fn alter_object_schema(s: &pb::AlterObjectSchemaStmt) -> Facts {
    let mut f = Facts::new(StatementKind::ALTER_OBJECT_SCHEMA_STMT);
    if let Some(rv) = &s.relation {
        f.lock(&rv_name(rv), AccessExclusive);
        f.breaking = true;
    }
    f
}

/// What a DROP names, for `check --db` to find what depends on it.
fn dropped(s: &pb::DropStmt, kind: Ot, relations: &[RelationName], cascade: bool) -> Vec<Dropped> {
    match kind {
        Ot::ObjectTable | Ot::ObjectMatview | Ot::ObjectView | Ot::ObjectSequence => relations
            .iter()
            .map(|r| Dropped {
                kind: DropKind::Relation,
                lookup: r.to_string(),
                cascade,
            })
            .collect(),
        Ot::ObjectFunction | Ot::ObjectProcedure | Ot::ObjectRoutine => s
            .objects
            .iter()
            .filter_map(|o| match o.node.as_ref() {
                Some(N::ObjectWithArgs(o)) => Some(o),
                _ => None,
            })
            .map(|o| {
                let name = dotted(&o.objname);
                if o.args_unspecified {
                    Dropped {
                        kind: DropKind::RoutineByName,
                        lookup: name,
                        cascade,
                    }
                } else {
                    let args: Vec<String> = o
                        .objargs
                        .iter()
                        .filter_map(|a| match a.node.as_ref() {
                            Some(N::TypeName(t)) => Some(dotted(&t.names)),
                            _ => None,
                        })
                        .collect();
                    Dropped {
                        kind: DropKind::Routine,
                        lookup: format!("{name}({})", args.join(",")),
                        cascade,
                    }
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn drop(s: &pb::DropStmt, ctx: &Context) -> Facts {
    let mut f = Facts::new(StatementKind::DROP_STMT);
    let cascade = s.behavior == pb::DropBehavior::DropCascade as i32;
    let names: Vec<String> = s.objects.iter().map(object_name).collect();
    // The relations a DROP TABLE/VIEW/INDEX … names, with their exact parts.
    let relations: Vec<RelationName> = s
        .objects
        .iter()
        .filter_map(|o| RelationName::from_parts(&object_parts(o)))
        .collect();
    let kind = Ot::try_from(s.remove_type).unwrap_or(Ot::Undefined);
    f.drops = dropped(s, kind, &relations, cascade);
    let (verb, data_holding) = match kind {
        Ot::ObjectTable => ("drop table", true),
        Ot::ObjectMatview => ("drop materialized view", true),
        Ot::ObjectForeignTable => ("drop foreign table", false),
        Ot::ObjectSequence => ("drop sequence", true),
        Ot::ObjectSchema => ("drop schema", true),
        Ot::ObjectType | Ot::ObjectDomain => ("drop type", true),
        Ot::ObjectExtension => ("drop extension", true),
        Ot::ObjectView => ("drop view", false),
        Ot::ObjectIndex => ("drop index", false),
        _ => ("drop", false),
    };
    match kind {
        Ot::ObjectTable
        | Ot::ObjectMatview
        | Ot::ObjectView
        | Ot::ObjectSequence
        | Ot::ObjectForeignTable => {
            for n in &relations {
                f.lock(n, AccessExclusive);
            }
            f.breaking = true;
            if kind == Ot::ObjectTable {
                for n in relations.iter().filter(|n| !ctx.created.contains(*n)) {
                    f.find(RuleId::DropTable, format!("DROP TABLE {n} loses its rows"));
                }
            }
        }
        Ot::ObjectIndex => {
            if s.concurrent {
                // DROP INDEX CONCURRENTLY cannot run in a transaction block (DROP INDEX docs).
                f.transactional = false;
                for n in &relations {
                    f.lock(n, ShareUpdateExclusive);
                }
            } else {
                for n in &relations {
                    f.lock(n, AccessExclusive);
                    if !ctx.created.contains(n) {
                        f.find(
                            RuleId::DropIndexNotConcurrent,
                            format!("DROP INDEX {n} locks its table ACCESS EXCLUSIVE"),
                        );
                    }
                }
            }
        }
        Ot::ObjectTrigger | Ot::ObjectRule | Ot::ObjectPolicy => {
            // The object is [schema.]table.name; dropping it locks the table.
            for o in &s.objects {
                let parts = object_parts(o);
                if let Some((_, table)) = parts.split_last()
                    && let Some(table) = RelationName::from_parts(table)
                {
                    f.lock(&table, AccessExclusive);
                }
            }
        }
        _ => {}
    }
    if data_holding || cascade {
        f.destroy(
            if cascade && !data_holding {
                "drop (cascade)"
            } else {
                verb
            },
            names.join(", "),
        );
    }
    f
}

pub(super) fn rename(s: &pb::RenameStmt) -> Facts {
    let mut f = Facts::new(StatementKind::RENAME_STMT);
    let rel = s.relation.as_ref().map(rv_name).unwrap_or_default();
    match Ot::try_from(s.rename_type).unwrap_or(Ot::Undefined) {
        Ot::ObjectColumn => {
            f.lock(&rel, AccessExclusive);
            f.breaking = true;
            f.find(
                RuleId::RenameColumn,
                format!(
                    "renaming {rel}.{} to {}",
                    quote_ident(&s.subname),
                    quote_ident(&s.newname)
                ),
            );
        }
        Ot::ObjectTable
        | Ot::ObjectView
        | Ot::ObjectMatview
        | Ot::ObjectSequence
        | Ot::ObjectForeignTable => {
            f.lock(&rel, AccessExclusive);
            f.breaking = true;
            f.find(
                RuleId::RenameTable,
                format!("renaming {rel} to {}", quote_ident(&s.newname)),
            );
        }
        // ALTER INDEX … RENAME takes SHARE UPDATE EXCLUSIVE since PostgreSQL 12.
        Ot::ObjectIndex => f.lock(&rel, ShareUpdateExclusive),
        Ot::ObjectTabconstraint | Ot::ObjectTrigger | Ot::ObjectRule | Ot::ObjectPolicy => {
            f.lock(&rel, AccessExclusive)
        }
        _ => {}
    }
    f
}

pub(super) fn comment(s: &pb::CommentStmt) -> Facts {
    let mut f = Facts::new(StatementKind::COMMENT_STMT);
    let Some(obj) = s.object.as_ref() else {
        return f;
    };
    let parts = object_parts(obj);
    // COMMENT ON a relation or column takes SHARE UPDATE EXCLUSIVE on the relation.
    let rel = match Ot::try_from(s.objtype).unwrap_or(Ot::Undefined) {
        Ot::ObjectTable
        | Ot::ObjectView
        | Ot::ObjectMatview
        | Ot::ObjectIndex
        | Ot::ObjectSequence
        | Ot::ObjectForeignTable => RelationName::from_parts(&parts),
        Ot::ObjectColumn => parts
            .split_last()
            .and_then(|(_, table)| RelationName::from_parts(table)),
        _ => None,
    };
    if let Some(rel) = rel {
        f.lock(&rel, ShareUpdateExclusive);
    }
    f
}

pub(super) fn dropdb(s: &pb::DropdbStmt) -> Facts {
    let mut f = Facts::new(StatementKind::DROPDB_STMT);
    f.transactional = false;
    f.destroy("drop database", quote_ident(&s.dbname));
    f
}

pub(super) fn drop_owned(s: &pb::DropOwnedStmt) -> Facts {
    let mut f = Facts::new(StatementKind::DROP_OWNED_STMT);
    let roles: Vec<String> = s
        .roles
        .iter()
        .filter_map(|r| match r.node.as_ref() {
            Some(N::RoleSpec(rs)) => Some(quote_ident(&rs.rolename)),
            _ => None,
        })
        .collect();
    f.destroy("drop owned by", roles.join(", "));
    f
}
