//! Rehearsal runs the whole runbook in one transaction that is rolled back.
//! Statements that cannot run in a transaction block get their transactional
//! form (CONCURRENTLY removed through pg_query's deparser) or are skipped.

use pg_query::NodeEnum as N;

/// The statement without CONCURRENTLY, or `None` when it has no transactional
/// form (VACUUM, CREATE DATABASE, ALTER SYSTEM, …).
pub fn transactional_form(sql: &str) -> Option<String> {
    let mut parsed = pg_query::parse(sql, 0).ok()?;
    if parsed.protobuf.stmts.len() != 1 {
        return None;
    }
    let node = parsed.protobuf.stmts[0].stmt.as_mut()?.node.as_mut()?;
    match node {
        N::IndexStmt(s) if s.concurrent => s.concurrent = false,
        N::DropStmt(s) if s.concurrent => s.concurrent = false,
        N::ReindexStmt(s) => {
            let before = s.params.len();
            s.params.retain(
                |p| !matches!(p.node.as_ref(), Some(N::DefElem(d)) if d.defname == "concurrently"),
            );
            if s.params.len() == before {
                return None;
            }
        }
        N::AlterTableStmt(s) => {
            let mut changed = false;
            for cmd in &mut s.cmds {
                if let Some(N::AlterTableCmd(c)) = cmd.node.as_mut()
                    && let Some(def) = c.def.as_mut()
                    && let Some(N::PartitionCmd(pc)) = def.node.as_mut()
                    && pc.concurrent
                {
                    pc.concurrent = false;
                    changed = true;
                }
            }
            if !changed {
                return None;
            }
        }
        _ => return None,
    }
    parsed.protobuf.deparse(Default::default()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_concurrently() {
        assert_eq!(
            transactional_form("CREATE INDEX CONCURRENTLY i ON t (a)").as_deref(),
            Some("CREATE INDEX i ON t USING btree (a)")
        );
        assert_eq!(
            transactional_form("DROP INDEX CONCURRENTLY IF EXISTS i").as_deref(),
            Some("DROP INDEX IF EXISTS i")
        );
        assert_eq!(
            transactional_form("REINDEX INDEX CONCURRENTLY i").as_deref(),
            Some("REINDEX INDEX i")
        );
        assert!(
            transactional_form("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY")
                .is_some_and(|s| !s.contains("CONCURRENTLY"))
        );
    }

    #[test]
    fn has_no_form_for_vacuum() {
        assert_eq!(transactional_form("VACUUM t"), None);
    }
}
