//! Reading names and relations out of pg_query's parse tree, shared by the
//! statement families.

use pg_query::NodeEnum as N;
use pg_query::NodeRef;
use pg_query::protobuf as pb;

use super::facts::Facts;
use crate::analysis::lock::LockMode::*;
use crate::analysis::name::{RelationName, quote_ident};

/// The relation a RangeVar names, with the parser's exact (already folded) parts.
pub(super) fn rv_name(rv: &pb::RangeVar) -> RelationName {
    RelationName::new(
        (!rv.schemaname.is_empty()).then_some(rv.schemaname.as_str()),
        &rv.relname,
    )
}

pub(super) fn str_of(node: &pb::Node) -> Option<&str> {
    match node.node.as_ref()? {
        N::String(s) => Some(&s.sval),
        _ => None,
    }
}

/// A qualified name in SQL form from a list of String nodes (DROP objects).
pub(super) fn dotted(nodes: &[pb::Node]) -> String {
    nodes
        .iter()
        .filter_map(str_of)
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// A DROP object's name in SQL form, for phrases and findings.
pub(super) fn object_name(node: &pb::Node) -> String {
    match node.node.as_ref() {
        Some(N::List(l)) => dotted(&l.items),
        Some(N::String(s)) => quote_ident(&s.sval),
        Some(N::TypeName(t)) => dotted(&t.names),
        Some(N::ObjectWithArgs(o)) => dotted(&o.objname),
        _ => "?".to_string(),
    }
}

/// The list items of a DROP/COMMENT object (`[schema, table, column]`).
pub(super) fn object_parts(node: &pb::Node) -> Vec<String> {
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

pub(super) fn type_last_name(t: &pb::TypeName) -> &str {
    t.names.last().and_then(str_of).unwrap_or("")
}

/// Every relation a statement reads, by walking its tree (CTE names excluded).
pub(super) fn range_vars(node: &N) -> Vec<RelationName> {
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

pub(super) fn read_all(f: &mut Facts, node: &N, except: &[RelationName]) {
    for r in range_vars(node) {
        if !except.contains(&r) {
            f.lock(&r, AccessShare);
        }
    }
}

pub(super) const VOLATILE_FUNCTIONS: &[&str] = &[
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

pub(super) const SERIAL_TYPES: &[&str] = &[
    "serial",
    "bigserial",
    "smallserial",
    "serial2",
    "serial4",
    "serial8",
];

/// Functions known to be immutable or stable (pg_proc.provolatile 'i' or
/// 's'): a default calling only these is evaluated once for existing rows.
pub(super) const NON_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_timestamp",
    "lower",
    "upper",
    "length",
    "char_length",
    "btrim",
    "trim",
    "concat",
    "concat_ws",
    "substring",
    "substr",
    "replace",
    "md5",
    "abs",
    "round",
    "floor",
    "ceil",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "make_date",
    "make_interval",
    "date_trunc",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "array_fill",
    "int4",
    "int8",
    "numeric",
    "timezone",
    "current_setting",
];

/// A function call that makes a default volatile: a known volatile one, or
/// one pgpilot does not know (volatile until proven otherwise). The flag says
/// whether it is known to be volatile.
pub(super) fn volatile_call(expr: &pb::Node) -> Option<(String, bool)> {
    let node = expr.node.as_ref()?;
    node.nodes().into_iter().find_map(|(n, ..)| match n {
        NodeRef::FuncCall(fc) => {
            let name = fc.funcname.last().and_then(str_of)?;
            let qualified = dotted(&fc.funcname);
            if VOLATILE_FUNCTIONS.contains(&name) {
                Some((format!("{qualified}()"), true))
            } else if fc.funcname.len() == 1 && NON_VOLATILE_FUNCTIONS.contains(&name)
                || fc.funcname.len() == 2
                    && str_of(&fc.funcname[0]) == Some("pg_catalog")
                    && NON_VOLATILE_FUNCTIONS.contains(&name)
            {
                None
            } else {
                Some((format!("{qualified}()"), false))
            }
        }
        _ => None,
    })
}

pub(super) fn has_option(options: &[pb::Node], name: &str) -> bool {
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
