//! Per-statement facts. Lock levels follow PostgreSQL's docs (13.3.1
//! "Table-Level Locks", and each command's reference page) and tablecmds.c's
//! AlterTableGetLockLevel; tests/lock_ground_truth.rs checks every claim
//! against pg_locks on a real server.

use pb::AlterTableType as At;
use pb::ObjectType as Ot;
use pg_query::NodeEnum as N;
use pg_query::NodeRef;
use pg_query::protobuf as pb;

use crate::analysis::lock::LockMode::{self, *};
use crate::analysis::name::{RelationName, quote_ident};
use crate::analysis::rules::{RuleId, finding};
use crate::analysis::{AtRisk, Context, Finding, IndexBuild, RelationLock, StatementAnalysis};

/// What one statement does, before relations created earlier in the runbook
/// are set aside.
pub struct Facts {
    kind: String,
    locks: Vec<(RelationName, LockMode)>,
    creates: Vec<RelationName>,
    builds_index: Option<IndexBuild>,
    transactional: bool,
    destructive: bool,
    at_risk: Option<AtRisk>,
    rewrites: bool,
    breaking: bool,
    opaque: bool,
    findings: Vec<Finding>,
}

impl Facts {
    fn new(kind: &str) -> Facts {
        Facts {
            kind: kind.to_string(),
            locks: Vec::new(),
            creates: Vec::new(),
            builds_index: None,
            transactional: true,
            destructive: false,
            at_risk: None,
            rewrites: false,
            breaking: false,
            opaque: false,
            findings: Vec::new(),
        }
    }

    pub fn unknown(kind: &str) -> Facts {
        Facts::new(kind)
    }

    fn lock(&mut self, relation: &RelationName, mode: LockMode) {
        self.locks.push((relation.clone(), mode));
    }

    fn destroy(&mut self, verb: &'static str, object: impl Into<String>) {
        self.destructive = true;
        if self.at_risk.is_none() {
            self.at_risk = Some(AtRisk {
                verb,
                object: object.into(),
            });
        }
    }

    fn find(&mut self, rule: RuleId, message: impl Into<String>) {
        self.findings.push(finding(rule, message));
    }

    /// The statement's analysis; records what it creates in `ctx` for later statements.
    pub fn into_analysis(self, sql: String, ctx: &mut Context) -> StatementAnalysis {
        let mut relations: Vec<RelationName> = Vec::new();
        for r in self.locks.iter().map(|(r, _)| r).chain(&self.creates) {
            if !relations.contains(r) {
                relations.push(r.clone());
            }
        }
        let mut locks: Vec<RelationLock> = Vec::new();
        for (relation, mode) in self.locks {
            if ctx.created.contains(&relation) || self.creates.contains(&relation) {
                continue;
            }
            match locks.iter_mut().find(|l| l.relation == relation) {
                Some(l) => l.mode = l.mode.max(mode),
                None => locks.push(RelationLock { relation, mode }),
            }
        }
        ctx.created.extend(self.creates.iter().cloned());
        StatementAnalysis {
            sql,
            kind: self.kind,
            relations,
            lock: locks.iter().map(|l| l.mode).max(),
            locks,
            transactional: self.transactional,
            destructive: self.destructive || self.opaque,
            rewrites: self.rewrites,
            breaking: self.breaking,
            opaque: self.opaque,
            at_risk: self.at_risk,
            creates: self.creates,
            builds_index: self.builds_index,
            findings: self.findings,
            start: 0,
            end: 0,
        }
    }
}

/// The relation a RangeVar names, with the parser's exact (already folded) parts.
fn rv_name(rv: &pb::RangeVar) -> RelationName {
    RelationName::new(
        (!rv.schemaname.is_empty()).then_some(rv.schemaname.as_str()),
        &rv.relname,
    )
}

fn str_of(node: &pb::Node) -> Option<&str> {
    match node.node.as_ref()? {
        N::String(s) => Some(&s.sval),
        _ => None,
    }
}

/// A qualified name in SQL form from a list of String nodes (DROP objects).
fn dotted(nodes: &[pb::Node]) -> String {
    nodes
        .iter()
        .filter_map(str_of)
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// A DROP object's name in SQL form, for phrases and findings.
fn object_name(node: &pb::Node) -> String {
    match node.node.as_ref() {
        Some(N::List(l)) => dotted(&l.items),
        Some(N::String(s)) => quote_ident(&s.sval),
        Some(N::TypeName(t)) => dotted(&t.names),
        Some(N::ObjectWithArgs(o)) => dotted(&o.objname),
        _ => "?".to_string(),
    }
}

/// The list items of a DROP/COMMENT object (`[schema, table, column]`).
fn object_parts(node: &pb::Node) -> Vec<String> {
    match node.node.as_ref() {
        Some(N::List(l)) => l
            .items
            .iter()
            .filter_map(str_of)
            .map(str::to_string)
            .collect(),
        Some(N::String(s)) => vec![s.sval.clone()],
        _ => Vec::new(),
    }
}

fn type_last_name(t: &pb::TypeName) -> &str {
    t.names.last().and_then(str_of).unwrap_or("")
}

/// Every relation a statement reads, by walking its tree (CTE names excluded).
fn range_vars(node: &N) -> Vec<RelationName> {
    let all = node.nodes();
    let ctes: Vec<&str> = all
        .iter()
        .filter_map(|(n, ..)| match n {
            NodeRef::CommonTableExpr(c) => Some(c.ctename.as_str()),
            _ => None,
        })
        .collect();
    let mut out: Vec<RelationName> = Vec::new();
    for (n, ..) in &all {
        if let NodeRef::RangeVar(rv) = n {
            let name = rv_name(rv);
            let is_cte = rv.schemaname.is_empty() && ctes.contains(&rv.relname.as_str());
            if !is_cte && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn read_all(f: &mut Facts, node: &N, except: &[RelationName]) {
    for r in range_vars(node) {
        if !except.contains(&r) {
            f.lock(&r, AccessShare);
        }
    }
}

const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
];

const SERIAL_TYPES: &[&str] = &[
    "serial",
    "bigserial",
    "smallserial",
    "serial2",
    "serial4",
    "serial8",
];

fn volatile_call(expr: &pb::Node) -> Option<String> {
    let node = expr.node.as_ref()?;
    node.nodes().into_iter().find_map(|(n, ..)| match n {
        NodeRef::FuncCall(fc) => {
            let name = fc.funcname.last().and_then(str_of)?;
            VOLATILE_FUNCTIONS
                .contains(&name)
                .then(|| format!("{name}()"))
        }
        _ => None,
    })
}

pub fn classify(node: &N, ctx: &mut Context) -> Facts {
    match node {
        N::SelectStmt(s) => select(node, s),
        N::InsertStmt(s) => {
            let mut f = Facts::new("InsertStmt");
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
        N::UpdateStmt(s) => {
            let mut f = Facts::new("UpdateStmt");
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
        N::DeleteStmt(s) => {
            let mut f = Facts::new("DeleteStmt");
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
        N::MergeStmt(s) => {
            let mut f = Facts::new("MergeStmt");
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
        N::CopyStmt(s) => {
            let mut f = Facts::new("CopyStmt");
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
        N::CreateStmt(s) => create_table(s, ctx),
        N::CreateTableAsStmt(s) => {
            let mut f = Facts::new("CreateTableAsStmt");
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
        N::ViewStmt(s) => {
            let mut f = Facts::new("ViewStmt");
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
        N::IndexStmt(s) => {
            let mut f = Facts::new("IndexStmt");
            let table = s.relation.as_ref().map(rv_name).unwrap_or_default();
            if s.concurrent {
                // CREATE INDEX CONCURRENTLY cannot run in a transaction block (CREATE INDEX docs).
                f.transactional = false;
                f.lock(&table, ShareUpdateExclusive);
            } else {
                f.lock(&table, Share);
                if !ctx.created.contains(&table) {
                    f.find(
                        RuleId::IndexNotConcurrent,
                        format!(
                            "CREATE INDEX on {table} blocks writes to it while the index builds"
                        ),
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
        N::DropStmt(s) => drop(s, ctx),
        N::TruncateStmt(s) => {
            let mut f = Facts::new("TruncateStmt");
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
        N::AlterTableStmt(s) => alter_table(s, ctx),
        N::RenameStmt(s) => rename(s),
        N::CreateTrigStmt(s) => {
            let mut f = Facts::new("CreateTrigStmt");
            if let Some(rv) = &s.relation {
                f.lock(&rv_name(rv), ShareRowExclusive);
            }
            f
        }
        N::CommentStmt(s) => comment(s),
        N::LockStmt(s) => {
            let mut f = Facts::new("LockStmt");
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
        N::VacuumStmt(s) => vacuum(s),
        N::ClusterStmt(s) => {
            let mut f = Facts::new("ClusterStmt");
            match &s.relation {
                Some(rv) => {
                    let t = rv_name(rv);
                    f.lock(&t, AccessExclusive);
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
        N::ReindexStmt(s) => reindex(s),
        N::RefreshMatViewStmt(s) => {
            let mut f = Facts::new("RefreshMatViewStmt");
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
        N::CreateStatsStmt(s) => {
            let mut f = Facts::new("CreateStatsStmt");
            for r in &s.relations {
                if let Some(N::RangeVar(rv)) = r.node.as_ref() {
                    f.lock(&rv_name(rv), ShareUpdateExclusive);
                }
            }
            f
        }
        N::AlterObjectSchemaStmt(s) => {
            let mut f = Facts::new("AlterObjectSchemaStmt");
            if let Some(rv) = &s.relation {
                f.lock(&rv_name(rv), AccessExclusive);
                f.breaking = true;
            }
            f
        }
        N::TransactionStmt(_) => {
            let mut f = Facts::new("TransactionStmt");
            f.find(
                RuleId::TransactionControl,
                "transaction control inside a step",
            );
            f
        }
        N::DoStmt(_) | N::CallStmt(_) => {
            let mut f = Facts::new(if matches!(node, N::DoStmt(_)) {
                "DoStmt"
            } else {
                "CallStmt"
            });
            f.opaque = true;
            f.find(RuleId::OpaqueStatement, "its effects cannot be analyzed");
            f
        }
        N::CreatedbStmt(_)
        | N::AlterSystemStmt(_)
        | N::CreateTableSpaceStmt(_)
        | N::DropTableSpaceStmt(_) => {
            // These cannot run inside a transaction block (their reference pages).
            let mut f = Facts::new(stmt_name(node));
            f.transactional = false;
            f
        }
        N::DropdbStmt(s) => {
            let mut f = Facts::new("DropdbStmt");
            f.transactional = false;
            f.destroy("drop database", quote_ident(&s.dbname));
            f
        }
        N::DropOwnedStmt(s) => {
            let mut f = Facts::new("DropOwnedStmt");
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
                    f.kind = "ExplainStmt".into();
                    f
                }
                Some(q) => {
                    let mut f = Facts::new("ExplainStmt");
                    read_all(&mut f, q, &[]);
                    f
                }
                None => Facts::new("ExplainStmt"),
            }
        }
        N::CreateSeqStmt(s) => {
            let mut f = Facts::new("CreateSeqStmt");
            if let Some(rv) = &s.sequence {
                f.creates.push(rv_name(rv));
            }
            f
        }
        other => Facts::new(stmt_name(other)),
    }
}

fn select(node: &N, s: &pb::SelectStmt) -> Facts {
    let mut f = Facts::new("SelectStmt");
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

fn column_type_findings(f: &mut Facts, table: &RelationName, col: &str, t: &pb::TypeName) {
    let col = quote_ident(col);
    match type_last_name(t) {
        "json" => f.find(RuleId::PreferJsonb, format!("{table}.{col} is json")),
        "timestamp" => f.find(
            RuleId::PreferTimestamptz,
            format!("{table}.{col} is timestamp without time zone"),
        ),
        _ => {}
    }
}

fn create_table(s: &pb::CreateStmt, _ctx: &Context) -> Facts {
    let mut f = Facts::new("CreateStmt");
    let table = s.relation.as_ref().map(rv_name).unwrap_or_default();
    for parent in &s.inh_relations {
        if let Some(N::RangeVar(rv)) = parent.node.as_ref() {
            // PARTITION OF locks the parent ACCESS EXCLUSIVE; INHERITS takes SHARE UPDATE EXCLUSIVE.
            f.lock(
                &rv_name(rv),
                if s.partbound.is_some() {
                    AccessExclusive
                } else {
                    ShareUpdateExclusive
                },
            );
        }
    }
    let mut constraints: Vec<&pb::Constraint> = Vec::new();
    for elt in &s.table_elts {
        match elt.node.as_ref() {
            Some(N::ColumnDef(cd)) => {
                if let Some(t) = &cd.type_name {
                    column_type_findings(&mut f, &table, &cd.colname, t);
                }
                constraints.extend(cd.constraints.iter().filter_map(|c| match c.node.as_ref() {
                    Some(N::Constraint(c)) => Some(c.as_ref()),
                    _ => None,
                }));
            }
            Some(N::Constraint(c)) => constraints.push(c.as_ref()),
            Some(N::TableLikeClause(l)) => {
                if let Some(rv) = &l.relation {
                    f.lock(&rv_name(rv), AccessShare);
                }
            }
            _ => {}
        }
    }
    for c in constraints {
        if c.contype == pb::ConstrType::ConstrForeign as i32
            && let Some(pk) = &c.pktable
        {
            // A foreign key takes SHARE ROW EXCLUSIVE on the referenced table to add its triggers.
            f.lock(&rv_name(pk), ShareRowExclusive);
        }
    }
    f.creates.push(table);
    f
}

fn drop(s: &pb::DropStmt, ctx: &Context) -> Facts {
    let mut f = Facts::new("DropStmt");
    let cascade = s.behavior == pb::DropBehavior::DropCascade as i32;
    let names: Vec<String> = s.objects.iter().map(object_name).collect();
    // The relations a DROP TABLE/VIEW/INDEX … names, with their exact parts.
    let relations: Vec<RelationName> = s
        .objects
        .iter()
        .filter_map(|o| RelationName::from_parts(&object_parts(o)))
        .collect();
    let kind = Ot::try_from(s.remove_type).unwrap_or(Ot::Undefined);
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

fn alter_table(s: &pb::AlterTableStmt, ctx: &mut Context) -> Facts {
    let mut f = Facts::new("AlterTableStmt");
    let table = s.relation.as_ref().map(rv_name).unwrap_or_default();
    let existing = !ctx.created.contains(&table);
    for cmd in &s.cmds {
        let Some(N::AlterTableCmd(c)) = cmd.node.as_ref() else {
            continue;
        };
        let subtype = At::try_from(c.subtype).unwrap_or(At::Undefined);
        let def = c.def.as_ref().and_then(|d| d.node.as_ref());
        let col = &c.name;
        let column = format!("{table}.{}", quote_ident(col));
        let mode = match subtype {
            At::AtAddColumn => {
                if let Some(N::ColumnDef(cd)) = def {
                    add_column(&mut f, &table, cd, existing);
                }
                AccessExclusive
            }
            At::AtDropColumn => {
                f.destroy("drop column", column.clone());
                f.breaking = true;
                f.find(
                    RuleId::DropColumn,
                    format!("dropping {column} loses its data"),
                );
                AccessExclusive
            }
            At::AtAlterColumnType => {
                f.destroy("retype column", column.clone());
                f.rewrites = true;
                f.breaking = true;
                f.find(
                    RuleId::ColumnTypeChange,
                    format!("changing the type of {column}"),
                );
                if let Some(N::ColumnDef(cd)) = def
                    && let Some(t) = &cd.type_name
                {
                    column_type_findings(&mut f, &table, col, t);
                }
                AccessExclusive
            }
            At::AtSetNotNull => {
                f.breaking = true;
                if existing
                    && !ctx
                        .validated_not_null
                        .contains(&(table.clone(), col.clone()))
                {
                    f.find(
                        RuleId::SetNotNull,
                        format!("SET NOT NULL on {column} scans the table under ACCESS EXCLUSIVE"),
                    );
                }
                AccessExclusive
            }
            At::AtAddConstraint => match def {
                Some(N::Constraint(con)) => add_constraint(&mut f, &table, con, existing, ctx),
                _ => AccessExclusive,
            },
            At::AtValidateConstraint => {
                // `name` is the constraint's here; constraint names are per table.
                if let Some(checked) = ctx.not_null_checks.get(&(table.clone(), col.clone())) {
                    ctx.validated_not_null
                        .insert((table.clone(), checked.clone()));
                }
                ShareUpdateExclusive
            }
            At::AtSetStatistics
            | At::AtSetOptions
            | At::AtResetOptions
            | At::AtClusterOn
            | At::AtDropCluster => ShareUpdateExclusive,
            At::AtSetRelOptions | At::AtResetRelOptions | At::AtReplaceRelOptions => {
                rel_options_lock(def)
            }
            At::AtEnableTrig
            | At::AtEnableAlwaysTrig
            | At::AtEnableReplicaTrig
            | At::AtDisableTrig
            | At::AtEnableTrigAll
            | At::AtDisableTrigAll
            | At::AtEnableTrigUser
            | At::AtDisableTrigUser => ShareRowExclusive,
            At::AtSetLogged | At::AtSetUnLogged | At::AtSetAccessMethod | At::AtSetTableSpace => {
                f.rewrites = true;
                AccessExclusive
            }
            At::AtSetExpression => {
                f.rewrites = true;
                AccessExclusive
            }
            At::AtAttachPartition => {
                // ATTACH PARTITION: SHARE UPDATE EXCLUSIVE on the parent, ACCESS EXCLUSIVE on the partition.
                if let Some(N::PartitionCmd(pc)) = def
                    && let Some(rv) = &pc.name
                {
                    f.lock(&rv_name(rv), AccessExclusive);
                }
                ShareUpdateExclusive
            }
            At::AtDetachPartition => {
                let concurrent = matches!(def, Some(N::PartitionCmd(pc)) if pc.concurrent);
                let mode = if concurrent {
                    ShareUpdateExclusive
                } else {
                    AccessExclusive
                };
                if concurrent {
                    // DETACH PARTITION CONCURRENTLY cannot run in a transaction block (ALTER TABLE docs).
                    f.transactional = false;
                }
                if let Some(N::PartitionCmd(pc)) = def
                    && let Some(rv) = &pc.name
                {
                    f.lock(&rv_name(rv), mode);
                }
                mode
            }
            At::AtDetachPartitionFinalize => ShareUpdateExclusive,
            // Everything else, as in AlterTableGetLockLevel's default: ACCESS EXCLUSIVE.
            _ => AccessExclusive,
        };
        f.lock(&table, mode);
    }
    f
}

/// Storage parameters that need only SHARE UPDATE EXCLUSIVE (reloptions.c's lockmode per option).
fn rel_options_lock(def: Option<&N>) -> LockMode {
    const LIGHT: &[&str] = &[
        "fillfactor",
        "parallel_workers",
        "toast_tuple_target",
        "vacuum_truncate",
        "vacuum_index_cleanup",
        "log_autovacuum_min_duration",
    ];
    let Some(N::List(list)) = def else {
        return AccessExclusive;
    };
    let light = list.items.iter().all(|i| match i.node.as_ref() {
        Some(N::DefElem(d)) => {
            let name = d.defname.as_str();
            d.defnamespace.is_empty() && (LIGHT.contains(&name) || name.starts_with("autovacuum_"))
        }
        _ => false,
    });
    if light {
        ShareUpdateExclusive
    } else {
        AccessExclusive
    }
}

fn add_column(f: &mut Facts, table: &RelationName, cd: &pb::ColumnDef, existing: bool) {
    let col = &quote_ident(&cd.colname);
    if let Some(t) = &cd.type_name {
        column_type_findings(f, table, &cd.colname, t);
        if SERIAL_TYPES.contains(&type_last_name(t)) && existing {
            f.rewrites = true;
            f.find(
                RuleId::VolatileDefault,
                format!(
                    "{table}.{col} is {} (a nextval() default): every existing row is rewritten",
                    type_last_name(t)
                ),
            );
        }
    }
    let mut has_default = false;
    let mut not_null = cd.is_not_null;
    for c in cd.constraints.iter().filter_map(|c| match c.node.as_ref() {
        Some(N::Constraint(c)) => Some(c),
        _ => None,
    }) {
        match pb::ConstrType::try_from(c.contype).unwrap_or(pb::ConstrType::Undefined) {
            pb::ConstrType::ConstrDefault => {
                has_default = true;
                if let Some(call) = c.raw_expr.as_ref().and_then(|e| volatile_call(e))
                    && existing
                {
                    f.rewrites = true;
                    f.find(RuleId::VolatileDefault, format!("the default {call} of {table}.{col} is volatile: every existing row is rewritten"));
                }
            }
            pb::ConstrType::ConstrIdentity | pb::ConstrType::ConstrGenerated if existing => {
                has_default = true;
                f.rewrites = true;
                f.find(RuleId::VolatileDefault, format!("{table}.{col} is an identity or generated column: every existing row is rewritten"));
            }
            pb::ConstrType::ConstrNotnull | pb::ConstrType::ConstrPrimary => not_null = true,
            pb::ConstrType::ConstrForeign => {
                if let Some(pk) = &c.pktable {
                    f.lock(&rv_name(pk), ShareRowExclusive);
                }
            }
            _ => {}
        }
        if matches!(
            pb::ConstrType::try_from(c.contype),
            Ok(pb::ConstrType::ConstrUnique | pb::ConstrType::ConstrPrimary)
        ) && existing
        {
            f.find(
                RuleId::UniqueConstraint,
                format!("{table}.{col} is added with a unique index built under ACCESS EXCLUSIVE"),
            );
        }
    }
    if not_null && !has_default && existing {
        f.breaking = true;
        f.find(
            RuleId::AddColumnNotNull,
            format!("{table}.{col} is NOT NULL without a default"),
        );
    }
}

fn add_constraint(
    f: &mut Facts,
    table: &RelationName,
    con: &pb::Constraint,
    existing: bool,
    ctx: &mut Context,
) -> LockMode {
    let name = if con.conname.is_empty() {
        "(unnamed)".to_string()
    } else {
        quote_ident(&con.conname)
    };
    match pb::ConstrType::try_from(con.contype).unwrap_or(pb::ConstrType::Undefined) {
        pb::ConstrType::ConstrForeign => {
            if let Some(pk) = &con.pktable {
                f.lock(&rv_name(pk), ShareRowExclusive);
            }
            if !con.skip_validation && existing {
                f.find(
                    RuleId::ForeignKeyNotValid,
                    format!("foreign key {name} on {table} is validated while it is added"),
                );
            }
            ShareRowExclusive
        }
        pb::ConstrType::ConstrCheck => {
            if let Some(column) = is_not_null_check(con) {
                if !con.conname.is_empty() {
                    ctx.not_null_checks
                        .insert((table.clone(), con.conname.clone()), column.clone());
                }
                if !con.skip_validation {
                    ctx.validated_not_null.insert((table.clone(), column));
                }
            }
            if !con.skip_validation && existing {
                f.find(
                    RuleId::CheckNotValid,
                    format!(
                        "CHECK constraint {name} on {table} scans the table under ACCESS EXCLUSIVE"
                    ),
                );
            }
            AccessExclusive
        }
        pb::ConstrType::ConstrUnique
        | pb::ConstrType::ConstrPrimary
        | pb::ConstrType::ConstrExclusion => {
            if con.indexname.is_empty() && existing {
                f.find(
                    RuleId::UniqueConstraint,
                    format!("constraint {name} on {table} builds its index under ACCESS EXCLUSIVE"),
                );
            }
            AccessExclusive
        }
        pb::ConstrType::ConstrNotnull => {
            f.breaking = true;
            AccessExclusive
        }
        _ => AccessExclusive,
    }
}

/// The column of a `CHECK (col IS NOT NULL)` constraint.
fn is_not_null_check(con: &pb::Constraint) -> Option<String> {
    let expr = con.raw_expr.as_ref()?.node.as_ref()?;
    let N::NullTest(t) = expr else { return None };
    if t.nulltesttype != pb::NullTestType::IsNotNull as i32 {
        return None;
    }
    let N::ColumnRef(cr) = t.arg.as_ref()?.node.as_ref()? else {
        return None;
    };
    cr.fields.last().and_then(str_of).map(str::to_string)
}

fn rename(s: &pb::RenameStmt) -> Facts {
    let mut f = Facts::new("RenameStmt");
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

fn comment(s: &pb::CommentStmt) -> Facts {
    let mut f = Facts::new("CommentStmt");
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

fn has_option(options: &[pb::Node], name: &str) -> bool {
    options.iter().any(|o| match o.node.as_ref() {
        // A bare option (VACUUM (FULL)) has no argument; FULL false is written as an argument.
        Some(N::DefElem(d)) if d.defname == name => {
            match d.arg.as_ref().and_then(|a| a.node.as_ref()) {
                Some(N::String(s)) => !matches!(s.sval.as_str(), "false" | "off" | "0"),
                Some(N::Boolean(b)) => b.boolval,
                Some(N::Integer(i)) => i.ival != 0,
                _ => true,
            }
        }
        _ => false,
    })
}

fn vacuum(s: &pb::VacuumStmt) -> Facts {
    let mut f = Facts::new("VacuumStmt");
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

fn reindex(s: &pb::ReindexStmt) -> Facts {
    let mut f = Facts::new("ReindexStmt");
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
    }
    f
}

/// The node's statement type name as pg_query spells it (`SelectStmt`).
fn stmt_name(node: &N) -> &'static str {
    match node {
        N::GrantStmt(_) => "GrantStmt",
        N::GrantRoleStmt(_) => "GrantRoleStmt",
        N::CreateFunctionStmt(_) => "CreateFunctionStmt",
        N::AlterFunctionStmt(_) => "AlterFunctionStmt",
        N::CreateSchemaStmt(_) => "CreateSchemaStmt",
        N::CreateExtensionStmt(_) => "CreateExtensionStmt",
        N::CreateEnumStmt(_) => "CreateEnumStmt",
        N::AlterEnumStmt(_) => "AlterEnumStmt",
        N::CreateDomainStmt(_) => "CreateDomainStmt",
        N::CompositeTypeStmt(_) => "CompositeTypeStmt",
        N::DefineStmt(_) => "DefineStmt",
        N::VariableSetStmt(_) => "VariableSetStmt",
        N::VariableShowStmt(_) => "VariableShowStmt",
        N::AlterSeqStmt(_) => "AlterSeqStmt",
        N::CreatedbStmt(_) => "CreatedbStmt",
        N::AlterSystemStmt(_) => "AlterSystemStmt",
        N::CreateTableSpaceStmt(_) => "CreateTableSpaceStmt",
        N::DropTableSpaceStmt(_) => "DropTableSpaceStmt",
        N::CreatePolicyStmt(_) => "CreatePolicyStmt",
        N::AlterPolicyStmt(_) => "AlterPolicyStmt",
        N::CreateRoleStmt(_) => "CreateRoleStmt",
        N::AlterRoleStmt(_) => "AlterRoleStmt",
        N::NotifyStmt(_) => "NotifyStmt",
        N::CheckPointStmt(_) => "CheckPointStmt",
        N::DiscardStmt(_) => "DiscardStmt",
        N::AlterOwnerStmt(_) => "AlterOwnerStmt",
        N::AlterDefaultPrivilegesStmt(_) => "AlterDefaultPrivilegesStmt",
        N::RuleStmt(_) => "RuleStmt",
        N::CreateEventTrigStmt(_) => "CreateEventTrigStmt",
        N::CreatePublicationStmt(_) => "CreatePublicationStmt",
        N::AlterPublicationStmt(_) => "AlterPublicationStmt",
        _ => "OtherStmt",
    }
}
