//! Rules that look at a statement's shape rather than its locks: names,
//! duplicate columns, re-runnability, domains, enums, schemas, CASCADE.
//! They run after the statement's family classifier.

use pg_query::NodeEnum as N;
use pg_query::protobuf as pb;

use super::facts::Facts;
use super::tree::{dotted, str_of};
use crate::analysis::Context;
use crate::analysis::name::quote_ident;
use crate::analysis::rules::RuleId;
use pb::ObjectType as Ot;

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated.
const MAX_IDENTIFIER_BYTES: usize = 63;

pub(super) fn lint(node: &N, ctx: &Context, f: &mut Facts) {
    duplicates(node, f);
    if ctx.enabled.contains(&RuleId::UnqualifiedName) {
        unqualified(node, f);
    }
    if ctx.enabled.contains(&RuleId::RerunUnsafe) {
        rerun_unsafe(node, f);
    }
    match node {
        N::CreateDomainStmt(s) => {
            let checked = s.constraints.iter().any(|c| {
                matches!(c.node.as_ref(), Some(N::Constraint(c))
                    if c.contype == pb::ConstrType::ConstrCheck as i32)
            });
            if checked {
                f.find(
                    RuleId::DomainConstraint,
                    format!("domain {} has a CHECK constraint", dotted(&s.domainname)),
                );
            }
        }
        // subtype 'C' is ADD CONSTRAINT (parsenodes.h, AlterDomainStmt).
        N::AlterDomainStmt(s) if s.subtype == "C" => {
            f.find(
                RuleId::AlterDomainConstraint,
                format!(
                    "ALTER DOMAIN {} ADD CONSTRAINT checks every column that uses it",
                    dotted(&s.type_name)
                ),
            );
        }
        N::AlterEnumStmt(s) => {
            let ty = dotted(&s.type_name);
            if !s.old_val.is_empty() {
                f.breaking = true;
                f.find(
                    RuleId::RenameEnumValue,
                    format!("renaming value '{}' of {ty}", s.old_val),
                );
            } else if s.new_val_neighbor.is_empty() {
                f.find(
                    RuleId::EnumValueOrder,
                    format!("'{}' is added last to {ty}", s.new_val),
                );
            }
        }
        N::DropdbStmt(s) => f.find(
            RuleId::DropDatabase,
            format!("dropping database {}", quote_ident(&s.dbname)),
        ),
        N::RenameStmt(s) if s.rename_type == Ot::ObjectSchema as i32 => {
            f.breaking = true;
            f.find(
                RuleId::RenameSchema,
                format!(
                    "renaming schema {} to {}",
                    quote_ident(&s.subname),
                    quote_ident(&s.newname)
                ),
            );
        }
        N::DropStmt(s) if s.behavior == pb::DropBehavior::DropCascade as i32 => {
            f.find(
                RuleId::DropCascade,
                "CASCADE drops whatever depends on the dropped objects",
            );
        }
        N::AlterObjectSchemaStmt(s) => {
            f.breaking = true;
            f.find(
                RuleId::SetSchema,
                format!("moving an object to schema {}", quote_ident(&s.newschema)),
            );
        }
        _ => {}
    }
}

/// Identifiers PostgreSQL truncates, from the statement's tokens: the
/// parse tree holds the names already cut to 63 bytes.
pub fn too_long(text: &str, f: &mut Facts) {
    let Ok(tokens) = pg_query::scan_tokens(text) else {
        return;
    };
    for t in &tokens {
        let Some(word) = text.get(t.start as usize..t.end as usize) else {
            continue;
        };
        let name = match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None if t.token == pg_query::protobuf::Token::Ident as i32 => word.to_lowercase(),
            None => continue,
        };
        if name.len() > MAX_IDENTIFIER_BYTES {
            f.find(
                RuleId::IdentifierTooLong,
                format!(
                    "{} is {} bytes: PostgreSQL names it {}",
                    quote_ident(&name),
                    name.len(),
                    quote_ident(&truncated(&name))
                ),
            );
        }
    }
}

/// The name PostgreSQL keeps: the first 63 bytes, cut at a character boundary.
fn truncated(name: &str) -> String {
    let mut end = MAX_IDENTIFIER_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Columns declared or assigned twice: the statement fails when it runs.
fn duplicates(node: &N, f: &mut Facts) {
    let names: Vec<String> = match node {
        N::CreateStmt(s) => s
            .table_elts
            .iter()
            .filter_map(|e| match e.node.as_ref() {
                Some(N::ColumnDef(c)) => Some(c.colname.clone()),
                _ => None,
            })
            .collect(),
        N::ViewStmt(s) => s
            .aliases
            .iter()
            .filter_map(str_of)
            .map(str::to_string)
            .collect(),
        N::UpdateStmt(s) => res_target_names(&s.target_list),
        N::InsertStmt(s) => res_target_names(&s.cols),
        _ => return,
    };
    let mut seen = std::collections::HashSet::new();
    let mut reported = std::collections::HashSet::new();
    for n in &names {
        if !seen.insert(n) && reported.insert(n) {
            f.find(
                RuleId::DuplicateColumn,
                format!("column {} appears more than once", quote_ident(n)),
            );
        }
    }
}

fn res_target_names(targets: &[pb::Node]) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| match t.node.as_ref() {
            // `SET a.b = …` on a composite field is not the whole column.
            Some(N::ResTarget(r)) if r.indirection.is_empty() => Some(r.name.clone()),
            _ => None,
        })
        .collect()
}

/// Tables named without their schema by DDL (opt-in).
fn unqualified(node: &N, f: &mut Facts) {
    let rel = match node {
        N::CreateStmt(s) => s.relation.as_ref(),
        N::AlterTableStmt(s) => s.relation.as_ref(),
        N::CreateTableAsStmt(s) => s.into.as_ref().and_then(|i| i.rel.as_ref()),
        N::IndexStmt(s) => s.relation.as_ref(),
        N::DropStmt(s) if s.remove_type == Ot::ObjectTable as i32 => {
            for o in &s.objects {
                if let Some(N::List(l)) = o.node.as_ref()
                    && l.items.len() == 1
                {
                    f.find(
                        RuleId::UnqualifiedName,
                        format!("table {} has no schema", dotted(&l.items)),
                    );
                }
            }
            return;
        }
        _ => None,
    };
    if let Some(rv) = rel
        && rv.schemaname.is_empty()
        && rv.relpersistence != "t"
    {
        f.find(
            RuleId::UnqualifiedName,
            format!("table {} has no schema", quote_ident(&rv.relname)),
        );
    }
}

/// DDL that fails when run a second time (opt-in).
fn rerun_unsafe(node: &N, f: &mut Facts) {
    let what = match node {
        N::CreateStmt(s) if !s.if_not_exists => Some("CREATE TABLE without IF NOT EXISTS"),
        N::IndexStmt(s) if !s.if_not_exists || s.idxname.is_empty() => {
            Some("CREATE INDEX without a name and IF NOT EXISTS")
        }
        N::CreateTableAsStmt(s) if !s.if_not_exists => {
            Some("CREATE TABLE AS without IF NOT EXISTS")
        }
        N::DropStmt(s) if !s.missing_ok => Some("DROP without IF EXISTS"),
        N::AlterTableStmt(s) => s.cmds.iter().find_map(|c| match c.node.as_ref() {
            Some(N::AlterTableCmd(c)) if !c.missing_ok => {
                match pb::AlterTableType::try_from(c.subtype) {
                    Ok(pb::AlterTableType::AtAddColumn) => Some("ADD COLUMN without IF NOT EXISTS"),
                    Ok(pb::AlterTableType::AtDropColumn) => Some("DROP COLUMN without IF EXISTS"),
                    Ok(pb::AlterTableType::AtDropConstraint) => {
                        Some("DROP CONSTRAINT without IF EXISTS")
                    }
                    _ => None,
                }
            }
            _ => None,
        }),
        _ => None,
    };
    if let Some(what) = what {
        f.find(RuleId::RerunUnsafe, format!("{what} fails on a re-run"));
    }
}
