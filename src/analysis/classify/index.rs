//! Index builds and physical maintenance: CREATE INDEX, REINDEX, CLUSTER,
//! VACUUM, REFRESH MATERIALIZED VIEW.

use pg_query::NodeEnum as N;
use pg_query::protobuf as pb;

use super::facts::Facts;
use super::tree::{has_option, rv_name};
use crate::analysis::Context;
use crate::analysis::IndexBuild;
use crate::analysis::StatementKind;
use crate::analysis::WorkKind;
use crate::analysis::lock::LockMode::*;
use crate::analysis::name::RelationName;
use crate::analysis::rules::RuleId;

pub(super) fn create_index(s: &pb::IndexStmt, ctx: &Context) -> Facts {
    let mut f = Facts::new(StatementKind::INDEX_STMT);
    let table = s.relation.as_ref().map(rv_name).unwrap_or_default();
    f.work_on_keys(
        &table,
        if s.concurrent {
            WorkKind::BuildIndexConcurrently
        } else {
            WorkKind::BuildIndex
        },
        plain_keys(s),
    );
    if s.concurrent {
        // CREATE INDEX CONCURRENTLY cannot run in a transaction block (CREATE INDEX docs).
        f.transactional = false;
        f.lock(&table, ShareUpdateExclusive);
    } else {
        f.lock(&table, Share);
        if !ctx.created.contains(&table) {
            f.find(
                RuleId::IndexNotConcurrent,
                format!("CREATE INDEX on {table} blocks writes to it while the index builds"),
            );
        }
    }
    if !s.idxname.is_empty() {
        // An index lives in its table's schema (CREATE INDEX: "no schema
        // name can be included here").
        f.creates
            .push(RelationName::new(table.schema(), &s.idxname));
        f.builds_index = Some(IndexBuild {
            table,
            name: s.idxname.clone(),
        });
    }
    f
}

/// The key columns of `CREATE INDEX` when each is a plain column without
/// its own COLLATE (what the forecast can sample); else none. INCLUDE
/// columns are stored, not sorted: left out.
fn plain_keys(s: &pb::IndexStmt) -> Vec<String> {
    let mut keys = Vec::new();
    for p in &s.index_params {
        match &p.node {
            Some(N::IndexElem(e))
                if !e.name.is_empty() && e.expr.is_none() && e.collation.is_empty() =>
            {
                keys.push(e.name.clone())
            }
            _ => return Vec::new(),
        }
    }
    keys
}

pub(super) fn reindex(s: &pb::ReindexStmt) -> Facts {
    let mut f = Facts::new(StatementKind::REINDEX_STMT);
    let concurrent = has_option(&s.params, "concurrently");
    let kind = pb::ReindexObjectType::try_from(s.kind).unwrap_or(pb::ReindexObjectType::Undefined);
    // REINDEX CONCURRENTLY, and REINDEX SCHEMA/DATABASE/SYSTEM, cannot run in a transaction block.
    f.transactional = !concurrent
        && matches!(
            kind,
            pb::ReindexObjectType::ReindexObjectIndex | pb::ReindexObjectType::ReindexObjectTable
        );
    let name = s.relation.as_ref().map(rv_name);
    if let Some(name) = name {
        let mode = match (concurrent, kind) {
            (true, _) => ShareUpdateExclusive,
            // REINDEX INDEX holds ACCESS EXCLUSIVE on the index (and SHARE on its table).
            (false, pb::ReindexObjectType::ReindexObjectIndex) => AccessExclusive,
            (false, _) => Share,
        };
        if !concurrent {
            f.find(RuleId::ReindexNotConcurrent, format!("REINDEX {name}"));
        }
        f.lock(&name, mode);
        f.work(
            &name,
            if concurrent {
                WorkKind::BuildIndexConcurrently
            } else {
                WorkKind::BuildIndex
            },
        );
    }
    f
}

pub(super) fn cluster(s: &pb::ClusterStmt) -> Facts {
    let mut f = Facts::new(StatementKind::CLUSTER_STMT);
    match &s.relation {
        Some(rv) => {
            let t = rv_name(rv);
            f.lock(&t, AccessExclusive);
            f.work(&t, WorkKind::Rewrite);
            f.find(
                RuleId::Cluster,
                format!("CLUSTER {t} rewrites it under ACCESS EXCLUSIVE"),
            );
        }
        // CLUSTER without a table cannot run inside a transaction block (CLUSTER docs).
        None => f.transactional = false,
    }
    f.rewrites = true;
    f
}

pub(super) fn vacuum(s: &pb::VacuumStmt) -> Facts {
    let mut f = Facts::new(StatementKind::VACUUM_STMT);
    let full = s.is_vacuumcmd && has_option(&s.options, "full");
    // VACUUM cannot run inside a transaction block; ANALYZE alone can (VACUUM, ANALYZE docs).
    f.transactional = !s.is_vacuumcmd;
    let mode = if full {
        AccessExclusive
    } else {
        ShareUpdateExclusive
    };
    let mut names = Vec::new();
    for r in &s.rels {
        if let Some(N::VacuumRelation(vr)) = r.node.as_ref()
            && let Some(rv) = &vr.relation
        {
            let name = rv_name(rv);
            f.lock(&name, mode);
            if full {
                f.work(&name, WorkKind::Rewrite);
            }
            names.push(name.to_string());
        }
    }
    if full {
        f.rewrites = true;
        f.find(
            RuleId::VacuumFull,
            format!("VACUUM FULL {}", names.join(", ")),
        );
    }
    f
}

pub(super) fn refresh_matview(s: &pb::RefreshMatViewStmt) -> Facts {
    let mut f = Facts::new(StatementKind::REFRESH_MAT_VIEW_STMT);
    let v = s.relation.as_ref().map(rv_name).unwrap_or_default();
    if s.concurrent {
        f.lock(&v, Exclusive);
    } else {
        f.lock(&v, AccessExclusive);
        f.find(
            RuleId::RefreshMatviewNotConcurrent,
            format!("REFRESH MATERIALIZED VIEW {v} blocks its readers"),
        );
    }
    f
}
