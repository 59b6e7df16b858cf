//! The long work a statement does on an existing table while it holds its
//! lock: what `plan --db` forecasts a duration for.

use serde::Serialize;

use super::name::RelationName;

/// What a statement does to every row of a table, cheapest first: the
/// forecast's per-operation factor follows it (docs/forecast.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Reads every row to check it: SET NOT NULL without a validated CHECK,
    /// ATTACH PARTITION's partition constraint.
    Scan,
    /// Validates a constraint: ADD CHECK / FOREIGN KEY without NOT VALID,
    /// VALIDATE CONSTRAINT.
    Validate,
    /// Builds an index: CREATE INDEX, REINDEX, ADD PRIMARY KEY / UNIQUE.
    BuildIndex,
    /// Builds an index CONCURRENTLY: two scans of the table and a wait for
    /// older transactions (CREATE INDEX, "Building Indexes Concurrently").
    BuildIndexConcurrently,
    /// Writes a new copy of the table and rebuilds its indexes: ALTER COLUMN
    /// TYPE, a volatile default, VACUUM FULL, CLUSTER, SET TABLESPACE.
    Rewrite,
}

impl WorkKind {
    /// The verb of the plan's forecast sentence.
    pub fn verb(self) -> &'static str {
        match self {
            WorkKind::Scan => "scans",
            WorkKind::Validate => "validates",
            WorkKind::BuildIndex => "builds an index on",
            WorkKind::BuildIndexConcurrently => "builds an index concurrently on",
            WorkKind::Rewrite => "rewrites",
        }
    }
}

/// One table a statement works through row by row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableWork {
    pub table: RelationName,
    pub kind: WorkKind,
    /// An index build's key columns, as PostgreSQL names them, when every
    /// key is a plain column of the table with its own collation: the
    /// forecast times a sort of a sample of them. Empty otherwise
    /// (expressions, an explicit COLLATE, REINDEX, every other work).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::analysis::{Context, analyze_sql};

    /// The key columns of each statement's one index build.
    fn keys(sql: &str) -> Vec<Vec<String>> {
        analyze_sql(sql, &mut Context::default())
            .unwrap()
            .iter()
            .map(|a| a.work.first().map(|w| w.keys.clone()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn an_index_build_names_its_plain_key_columns_only() {
        let k = keys(
            r#"CREATE INDEX i ON t (a, "Label") INCLUDE (z);
               CREATE INDEX CONCURRENTLY i2 ON t (lower(a));
               CREATE INDEX i3 ON t (a COLLATE "C");
               ALTER TABLE t ADD PRIMARY KEY (id, b);
               REINDEX TABLE t"#,
        );
        let none: Vec<String> = Vec::new();
        assert_eq!(k[0], ["a", "Label"]);
        // An expression or its own collation: not what the column sorts like.
        assert_eq!(k[1], none);
        assert_eq!(k[2], none);
        assert_eq!(k[3], ["id", "b"]);
        assert_eq!(k[4], none);
    }
}
