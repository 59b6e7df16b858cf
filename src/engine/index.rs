//! Where an index a step builds stands in the catalog: what an interrupted or
//! failed `CREATE INDEX CONCURRENTLY` left behind. A failed concurrent build
//! leaves the index INVALID (`pg_index.indisvalid` false); it must be dropped
//! before building again (CREATE INDEX, "Building Indexes Concurrently").

use tokio_postgres::{Client, Row};

use crate::analysis::{IndexBuild, RelationName};

/// The index named exactly `$2` on the table `$1` (a name in SQL form, as
/// the statement names it). An index lives in its table's schema, so this
/// finds that very index, never a look-alike through case folding or the
/// search path.
const INDEX_STATE_SQL: &str = "
SELECT n.nspname::text AS schema_name, c.relname::text AS index_name, i.indisvalid AS valid
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.indrelid = to_regclass($1)
   AND c.relname = $2";

/// What the catalog says of one index a step builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexState {
    /// Built and valid.
    Valid,
    /// Left INVALID; its schema-qualified name from the catalog.
    Invalid(RelationName),
    /// Not there (or its table is not).
    Missing,
    /// The catalog could not be read: the reason, redacted.
    Unknown(String),
}

/// The INVALID ones among `states`, by their schema-qualified names.
pub fn invalid(states: &[IndexState]) -> Vec<RelationName> {
    states
        .iter()
        .filter_map(|s| match s {
            IndexState::Invalid(name) => Some(name.clone()),
            IndexState::Valid | IndexState::Missing | IndexState::Unknown(_) => None,
        })
        .collect()
}

pub async fn index_state(client: &Client, build: &IndexBuild) -> IndexState {
    let table = build.table.to_string();
    match client
        .query_opt(INDEX_STATE_SQL, &[&table, &build.name])
        .await
    {
        Ok(Some(row)) => read(&row).unwrap_or_else(unknown),
        Ok(None) => IndexState::Missing,
        Err(e) => unknown(e),
    }
}

fn read(row: &Row) -> Result<IndexState, tokio_postgres::Error> {
    if row.try_get("valid")? {
        return Ok(IndexState::Valid);
    }
    let schema: String = row.try_get("schema_name")?;
    let name: String = row.try_get("index_name")?;
    Ok(IndexState::Invalid(RelationName::new(Some(&schema), &name)))
}

fn unknown(e: tokio_postgres::Error) -> IndexState {
    IndexState::Unknown(crate::pg::redact(&e.to_string()))
}
