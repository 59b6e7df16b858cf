//! A statement's kind: the name PostgreSQL's parser (pg_query) gives its
//! parse node, such as `IndexStmt`. Plan JSON shows it as `type`, so the
//! strings are a contract; code compares kinds, never strings.

use std::fmt;

use pg_query::NodeEnum as N;
use serde::{Serialize, Serializer};

/// A statement's kind, made only from the table below: each kind's text is
/// the name of the pg_query node it stands for (`stringify!` of the
/// variant), or `Empty` and `OtherStmt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatementKind(&'static str);

macro_rules! kinds {
    ($($name:ident = $node:ident,)*) => {
        impl StatementKind {
            $(pub const $name: StatementKind = StatementKind(stringify!($node));)*

            /// The kind of a parse node; `OtherStmt` for one not in the table.
            pub fn of(node: &N) -> StatementKind {
                match node {
                    $(N::$node(_) => StatementKind::$name,)*
                    _ => StatementKind::OTHER,
                }
            }
        }
    };
}

kinds! {
    ALTER_DEFAULT_PRIVILEGES_STMT = AlterDefaultPrivilegesStmt,
    ALTER_ENUM_STMT = AlterEnumStmt,
    ALTER_FUNCTION_STMT = AlterFunctionStmt,
    ALTER_OBJECT_SCHEMA_STMT = AlterObjectSchemaStmt,
    ALTER_OWNER_STMT = AlterOwnerStmt,
    ALTER_POLICY_STMT = AlterPolicyStmt,
    ALTER_PUBLICATION_STMT = AlterPublicationStmt,
    ALTER_ROLE_STMT = AlterRoleStmt,
    ALTER_SEQ_STMT = AlterSeqStmt,
    ALTER_SYSTEM_STMT = AlterSystemStmt,
    ALTER_TABLE_STMT = AlterTableStmt,
    CALL_STMT = CallStmt,
    CHECK_POINT_STMT = CheckPointStmt,
    CLUSTER_STMT = ClusterStmt,
    COMMENT_STMT = CommentStmt,
    COMPOSITE_TYPE_STMT = CompositeTypeStmt,
    COPY_STMT = CopyStmt,
    CREATE_DOMAIN_STMT = CreateDomainStmt,
    CREATE_ENUM_STMT = CreateEnumStmt,
    CREATE_EVENT_TRIG_STMT = CreateEventTrigStmt,
    CREATE_EXTENSION_STMT = CreateExtensionStmt,
    CREATE_FUNCTION_STMT = CreateFunctionStmt,
    CREATE_POLICY_STMT = CreatePolicyStmt,
    CREATE_PUBLICATION_STMT = CreatePublicationStmt,
    CREATE_ROLE_STMT = CreateRoleStmt,
    CREATE_SCHEMA_STMT = CreateSchemaStmt,
    CREATE_SEQ_STMT = CreateSeqStmt,
    CREATE_STATS_STMT = CreateStatsStmt,
    CREATE_STMT = CreateStmt,
    CREATE_TABLE_AS_STMT = CreateTableAsStmt,
    CREATE_TABLE_SPACE_STMT = CreateTableSpaceStmt,
    CREATE_TRIG_STMT = CreateTrigStmt,
    CREATEDB_STMT = CreatedbStmt,
    DEFINE_STMT = DefineStmt,
    DELETE_STMT = DeleteStmt,
    DISCARD_STMT = DiscardStmt,
    DO_STMT = DoStmt,
    DROP_OWNED_STMT = DropOwnedStmt,
    DROP_STMT = DropStmt,
    DROP_TABLE_SPACE_STMT = DropTableSpaceStmt,
    DROPDB_STMT = DropdbStmt,
    EXPLAIN_STMT = ExplainStmt,
    GRANT_ROLE_STMT = GrantRoleStmt,
    GRANT_STMT = GrantStmt,
    INDEX_STMT = IndexStmt,
    INSERT_STMT = InsertStmt,
    LOCK_STMT = LockStmt,
    MERGE_STMT = MergeStmt,
    NOTIFY_STMT = NotifyStmt,
    REFRESH_MAT_VIEW_STMT = RefreshMatViewStmt,
    REINDEX_STMT = ReindexStmt,
    RENAME_STMT = RenameStmt,
    RULE_STMT = RuleStmt,
    SELECT_STMT = SelectStmt,
    TRANSACTION_STMT = TransactionStmt,
    TRUNCATE_STMT = TruncateStmt,
    UPDATE_STMT = UpdateStmt,
    VACUUM_STMT = VacuumStmt,
    VARIABLE_SET_STMT = VariableSetStmt,
    VARIABLE_SHOW_STMT = VariableShowStmt,
    VIEW_STMT = ViewStmt,
}

impl StatementKind {
    /// A statement with no parse tree (only a comment, say).
    pub const EMPTY: StatementKind = StatementKind("Empty");
    /// A statement whose node pgpilot does not name.
    pub const OTHER: StatementKind = StatementKind("OtherStmt");

    /// The node's name, as plan JSON shows it.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether the server reports the statement's progress in a
    /// `pg_stat_progress_*` view (CREATE INDEX and REINDEX, VACUUM with
    /// ANALYZE, CLUSTER, COPY; Monitoring Database Activity, "Progress
    /// Reporting").
    pub fn reports_progress(self) -> bool {
        [
            StatementKind::INDEX_STMT,
            StatementKind::REINDEX_STMT,
            StatementKind::VACUUM_STMT,
            StatementKind::CLUSTER_STMT,
            StatementKind::COPY_STMT,
        ]
        .contains(&self)
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for StatementKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(sql: &str) -> Option<StatementKind> {
        let parsed = crate::analysis::parse_statements(sql).ok()?;
        Some(StatementKind::of(parsed.first()?.node.as_ref()?))
    }

    #[test]
    fn a_kind_is_its_parse_node_name_in_json() {
        assert_eq!(
            kind_of("CREATE INDEX CONCURRENTLY i ON t (a)"),
            Some(StatementKind::INDEX_STMT)
        );
        assert_eq!(StatementKind::INDEX_STMT.as_str(), "IndexStmt");
        assert_eq!(kind_of("SELECT 1"), Some(StatementKind::SELECT_STMT));
        assert_eq!(kind_of("LISTEN c"), Some(StatementKind::OTHER));
        assert_eq!(
            serde_json::to_string(&StatementKind::ALTER_TABLE_STMT)
                .ok()
                .as_deref(),
            Some("\"AlterTableStmt\"")
        );
    }
}
