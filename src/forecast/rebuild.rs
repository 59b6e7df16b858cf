//! The indexes a rewrite of a table rebuilds: every index on it, read from
//! pg_index (docs/forecast.md, "Rewrites"). ALTER COLUMN TYPE, VACUUM FULL,
//! CLUSTER and the other rewrites write a new heap and then build each of
//! the table's indexes again from it (reindex_relation), one after the
//! other, all under the rewrite's ACCESS EXCLUSIVE lock.

use serde::Serialize;
use tokio_postgres::Client;

/// One index a rewrite rebuilds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rebuild {
    /// The index's name in the catalog (text from the database: made safe
    /// where it is shown).
    pub index: String,
    /// Its key columns when it is a B-tree on plain columns, each with the
    /// column's own collation and no predicate: the forecast times a sort
    /// of a sample of them, as for a CREATE INDEX. Empty otherwise (an
    /// expression, a partial index, GIN/GiST…): the per-index factor.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Every index on `relation` (its quoted name, as `to_regclass` reads it),
/// in the caller's READ ONLY transaction: a catalog read under ACCESS SHARE
/// of pg_index, nothing on the table itself. Under a savepoint: a server
/// error (a timeout under load) gives an empty list, the forecast then
/// counts `TableSize::indexes` with the per-index factor, and leaves the
/// transaction usable.
pub async fn rebuilds_of(
    client: &Client,
    relation: &str,
) -> Result<Vec<Rebuild>, tokio_postgres::Error> {
    client.batch_execute("SAVEPOINT pgpilot_rebuilds").await?;
    match list(client, relation).await {
        Ok(list) => {
            client
                .batch_execute("RELEASE SAVEPOINT pgpilot_rebuilds")
                .await?;
            Ok(list)
        }
        Err(e) if e.as_db_error().is_some() => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT pgpilot_rebuilds")
                .await?;
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

async fn list(client: &Client, relation: &str) -> Result<Vec<Rebuild>, tokio_postgres::Error> {
    // indkey/indcollation hold the key columns first (indnkeyatts of
    // them), then INCLUDE columns; attnum 0 is an expression. A B-tree
    // sorts its keys; an explicit COLLATE other than the column's sorts
    // unlike the column, which the sample would not show.
    let rows = client
        .query(
            "SELECT ic.relname::text AS index, \
                    am.amname = 'btree' AND i.indexprs IS NULL AND i.indpred IS NULL \
                      AND NOT EXISTS ( \
                        SELECT 1 FROM unnest(i.indkey::int2[], i.indcollation::oid[]) \
                               WITH ORDINALITY k(attnum, coll, n) \
                        LEFT JOIN pg_attribute a \
                          ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                        WHERE k.n <= i.indnkeyatts \
                          AND (k.attnum = 0 OR a.attname IS NULL \
                               OR (k.coll <> 0 AND k.coll <> a.attcollation))) AS plain, \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
                          JOIN pg_attribute a \
                            ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          WHERE k.n <= i.indnkeyatts ORDER BY k.n) AS keys \
             FROM pg_index i \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_am am ON am.oid = ic.relam \
             WHERE i.indrelid = to_regclass($1::text) \
             ORDER BY ic.relname",
            &[&relation],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let plain: Option<bool> = row.try_get("plain")?;
        let keys: Vec<String> = row.try_get("keys")?;
        out.push(Rebuild {
            index: row.try_get("index")?,
            keys: if plain == Some(true) {
                keys
            } else {
                Vec::new()
            },
        });
    }
    Ok(out)
}
