//! CREATE TABLE and ALTER TABLE. ALTER TABLE's lock levels follow tablecmds.c's
//! AlterTableGetLockLevel.

use pg_query::NodeEnum as N;
use pg_query::protobuf as pb;

use super::facts::Facts;
use super::tree::{SERIAL_TYPES, rv_name, str_of, type_last_name, volatile_call};
use crate::analysis::Context;
use crate::analysis::StatementKind;
use crate::analysis::WorkKind;
use crate::analysis::catalog::Retype;
use crate::analysis::lock::LockMode::{self, *};
use crate::analysis::name::{RelationName, quote_ident};
use crate::analysis::rules::RuleId;
use pb::AlterTableType as At;

pub(super) fn column_type_findings(
    f: &mut Facts,
    table: &RelationName,
    col: &str,
    t: &pb::TypeName,
) {
    column_findings(f, table, col, t, false);
}

/// Findings about a column's type; `key` when it is (part of) the primary key.
pub(super) fn column_findings(
    f: &mut Facts,
    table: &RelationName,
    col: &str,
    t: &pb::TypeName,
    key: bool,
) {
    let col = quote_ident(col);
    let ty = type_last_name(t);
    if key
        && matches!(
            ty,
            "int4" | "int2" | "serial" | "serial4" | "smallserial" | "serial2"
        )
    {
        f.find(
            RuleId::IntKey,
            format!("key {table}.{col} is {}", shown_type(ty)),
        );
    }
    if SERIAL_TYPES.contains(&ty) {
        f.find(RuleId::PreferIdentity, format!("{table}.{col} is {ty}"));
    }
    match ty {
        "bpchar" => f.find(RuleId::CharType, format!("{table}.{col} is char(n)")),
        "varchar" if !t.typmods.is_empty() => {
            f.find(RuleId::PreferText, format!("{table}.{col} is varchar(n)"))
        }
        _ => {}
    }
    match ty {
        "json" => f.find(RuleId::PreferJsonb, format!("{table}.{col} is json")),
        "timestamp" => f.find(
            RuleId::PreferTimestamptz,
            format!("{table}.{col} is timestamp without time zone"),
        ),
        _ => {}
    }
}

/// A type's name as written in SQL, for messages.
fn shown_type(ty: &str) -> &str {
    match ty {
        "int4" => "integer",
        "int2" => "smallint",
        other => other,
    }
}

/// Whether a column definition says PRIMARY KEY itself.
fn inline_primary_key(cd: &pb::ColumnDef) -> bool {
    cd.constraints.iter().any(|c| {
        matches!(c.node.as_ref(), Some(N::Constraint(c))
            if c.contype == pb::ConstrType::ConstrPrimary as i32)
    })
}

/// The columns of a table-level PRIMARY KEY (…).
fn table_primary_key(elts: &[pb::Node]) -> Vec<String> {
    elts.iter()
        .filter_map(|e| match e.node.as_ref() {
            Some(N::Constraint(c)) if c.contype == pb::ConstrType::ConstrPrimary as i32 => {
                Some(c.keys.iter().filter_map(str_of).map(str::to_string))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// A type's integer modifiers as written: numeric(12,2) → [12, 2].
fn type_mods(t: &pb::TypeName) -> Vec<i64> {
    t.typmods
        .iter()
        .filter_map(|m| match m.node.as_ref() {
            Some(N::AConst(c)) => match &c.val {
                Some(pb::a_const::Val::Ival(i)) => Some(i64::from(i.ival)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Type changes PostgreSQL makes without a rewrite when the column already
/// is varchar or text: to text, to unbounded or (longer) varchar. A numeric
/// target is not among them offline: from integer or float it rewrites.
fn maybe_coercible(t: &pb::TypeName) -> bool {
    matches!(type_last_name(t), "text" | "varchar")
}

pub(super) fn create_table(s: &pb::CreateStmt, _ctx: &Context) -> Facts {
    let mut f = Facts::new(StatementKind::CREATE_STMT);
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
    let pk = table_primary_key(&s.table_elts);
    for elt in &s.table_elts {
        match elt.node.as_ref() {
            Some(N::ColumnDef(cd)) => {
                if let Some(t) = &cd.type_name {
                    let key = inline_primary_key(cd) || pk.contains(&cd.colname);
                    column_findings(&mut f, &table, &cd.colname, t, key);
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

pub(super) fn alter_table(s: &pb::AlterTableStmt, ctx: &mut Context) -> Facts {
    let mut f = Facts::new(StatementKind::ALTER_TABLE_STMT);
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
                f.breaking = true;
                let target = match def {
                    Some(N::ColumnDef(cd)) => cd.type_name.as_ref(),
                    _ => None,
                };
                let using = matches!(def, Some(N::ColumnDef(cd)) if cd.raw_default.is_some());
                if target.is_some_and(maybe_coercible) && !using {
                    f.find(
                        RuleId::CoercibleTypeChange,
                        format!(
                            "{column} becomes a type varchar/text converts to without a rewrite"
                        ),
                    );
                } else {
                    f.rewrites = true;
                    f.work(&table, WorkKind::Rewrite);
                    f.find(
                        RuleId::ColumnTypeChange,
                        format!("changing the type of {column}"),
                    );
                }
                if let Some(N::ColumnDef(cd)) = def
                    && let Some(t) = &cd.type_name
                {
                    column_type_findings(&mut f, &table, col, t);
                    if existing {
                        f.retypes.push(Retype {
                            table: table.clone(),
                            column: col.clone(),
                            to: type_last_name(t).to_string(),
                            to_mods: type_mods(t),
                            using,
                        });
                    }
                }
                AccessExclusive
            }
            At::AtSetNotNull => {
                f.breaking = true;
                // A validated CHECK (col IS NOT NULL) spares the scan from PostgreSQL 12.
                let proven = ctx.version.has(12)
                    && ctx
                        .validated_not_null
                        .contains(&(table.clone(), col.clone()));
                if existing && !proven {
                    f.work(&table, WorkKind::Scan);
                    f.find(
                        RuleId::SetNotNull,
                        format!("SET NOT NULL on {column} scans the table under ACCESS EXCLUSIVE"),
                    );
                }
                AccessExclusive
            }
            At::AtDropNotNull => {
                f.breaking = true;
                f.find(
                    RuleId::DropNotNull,
                    format!("{column} may hold NULL from now on"),
                );
                AccessExclusive
            }
            At::AtAddConstraint => match def {
                Some(N::Constraint(con)) => add_constraint(&mut f, &table, con, existing, ctx),
                _ => AccessExclusive,
            },
            At::AtValidateConstraint => {
                // `name` is the constraint's here; constraint names are per table.
                if ctx
                    .not_valid_in_step
                    .contains(&(table.clone(), col.clone()))
                {
                    f.find(
                        RuleId::ValidateSameTransaction,
                        format!(
                            "{} on {table} was added NOT VALID in this same step",
                            quote_ident(col)
                        ),
                    );
                }
                if let Some(checked) = ctx.not_null_checks.get(&(table.clone(), col.clone())) {
                    ctx.validated_not_null
                        .insert((table.clone(), checked.clone()));
                }
                f.work(&table, WorkKind::Validate);
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
                f.work(&table, WorkKind::Rewrite);
                AccessExclusive
            }
            At::AtSetExpression => {
                f.rewrites = true;
                f.work(&table, WorkKind::Rewrite);
                AccessExclusive
            }
            At::AtAttachPartition => {
                // ATTACH PARTITION: SHARE UPDATE EXCLUSIVE on the parent, ACCESS EXCLUSIVE on the partition.
                if let Some(N::PartitionCmd(pc)) = def
                    && let Some(rv) = &pc.name
                {
                    // The partition is scanned for rows outside its bound
                    // (ALTER TABLE ATTACH PARTITION) unless a constraint proves it.
                    f.lock(&rv_name(rv), AccessExclusive);
                    f.work(&rv_name(rv), WorkKind::Scan);
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
                if !concurrent {
                    f.find(
                        RuleId::DetachPartitionNotConcurrent,
                        format!("detaching a partition of {table} without CONCURRENTLY"),
                    );
                }
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
pub(super) fn rel_options_lock(def: Option<&N>) -> LockMode {
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

pub(super) fn add_column(f: &mut Facts, table: &RelationName, cd: &pb::ColumnDef, existing: bool) {
    let col = &quote_ident(&cd.colname);
    if let Some(t) = &cd.type_name {
        column_findings(f, table, &cd.colname, t, inline_primary_key(cd));
        if SERIAL_TYPES.contains(&type_last_name(t)) && existing {
            f.rewrites = true;
            f.work(table, WorkKind::Rewrite);
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
                if let Some((call, known)) = c.raw_expr.as_ref().and_then(|e| volatile_call(e))
                    && existing
                {
                    f.rewrites = true;
                    f.work(table, WorkKind::Rewrite);
                    let why = if known {
                        "is volatile"
                    } else {
                        "calls a function pgpilot does not know to be immutable or stable, so it counts as volatile"
                    };
                    f.find(RuleId::VolatileDefault, format!("the default {call} of {table}.{col} {why}: every existing row is rewritten"));
                }
            }
            pb::ConstrType::ConstrIdentity | pb::ConstrType::ConstrGenerated if existing => {
                has_default = true;
                f.rewrites = true;
                f.work(table, WorkKind::Rewrite);
                f.find(RuleId::VolatileDefault, format!("{table}.{col} is an identity or generated column: every existing row is rewritten"));
            }
            pb::ConstrType::ConstrNotnull | pb::ConstrType::ConstrPrimary => not_null = true,
            pb::ConstrType::ConstrForeign => {
                if let Some(pk) = &c.pktable {
                    f.lock(&rv_name(pk), ShareRowExclusive);
                    if existing {
                        f.find(
                            RuleId::ForeignKeyNotValid,
                            format!(
                                "{table}.{col} REFERENCES {} takes SHARE ROW EXCLUSIVE on both tables and cannot be added NOT VALID inline",
                                rv_name(pk)
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
        if matches!(
            pb::ConstrType::try_from(c.contype),
            Ok(pb::ConstrType::ConstrUnique | pb::ConstrType::ConstrPrimary)
        ) && existing
        {
            f.work(table, WorkKind::BuildIndex);
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

pub(super) fn add_constraint(
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
            if con.skip_validation && !con.conname.is_empty() {
                ctx.not_valid_in_step
                    .insert((table.clone(), con.conname.clone()));
            }
            if !con.skip_validation && existing {
                f.work(table, WorkKind::Validate);
                f.find(
                    RuleId::ForeignKeyNotValid,
                    format!("foreign key {name} on {table} is validated while it is added"),
                );
            }
            ShareRowExclusive
        }
        pb::ConstrType::ConstrCheck => {
            if con.skip_validation && !con.conname.is_empty() {
                ctx.not_valid_in_step
                    .insert((table.clone(), con.conname.clone()));
            }
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
                f.work(table, WorkKind::Validate);
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
                let keys = match pb::ConstrType::try_from(con.contype) {
                    Ok(pb::ConstrType::ConstrExclusion) => Vec::new(),
                    _ => con
                        .keys
                        .iter()
                        .filter_map(str_of)
                        .map(str::to_string)
                        .collect(),
                };
                f.work_on_keys(table, WorkKind::BuildIndex, keys);
                f.find(
                    RuleId::UniqueConstraint,
                    format!("constraint {name} on {table} builds its index under ACCESS EXCLUSIVE"),
                );
            }
            AccessExclusive
        }
        pb::ConstrType::ConstrNotnull => {
            // ADD CONSTRAINT … NOT NULL (PostgreSQL 18) scans like SET NOT NULL.
            if existing && !con.skip_validation {
                f.work(table, WorkKind::Scan);
            }
            f.breaking = true;
            AccessExclusive
        }
        _ => AccessExclusive,
    }
}

/// The column of a `CHECK (col IS NOT NULL)` constraint.
pub(super) fn is_not_null_check(con: &pb::Constraint) -> Option<String> {
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
