//! Reading sizes and a read throughput from the target, read-only: each
//! relation in a READ ONLY transaction with a short statement_timeout and
//! lock_timeout, taking nothing stronger than ACCESS SHARE (what SELECT and
//! pg_relation_size take) and writing nothing.

use std::time::Instant;

use tokio_postgres::Client;

use super::keys::sort_sample;
use super::rebuild::rebuilds_of;
use super::{Sizes, TableSize};
use crate::analysis::{RelationName, StepAnalysis, WorkKind, quote_ident};

/// The most a throughput sample reads: 2,048 pages (16 MB at 8 kB).
const SAMPLE_PAGES: i64 = 2048;
/// Sample reads per table, while they stay within the budget.
const REPEATS: usize = 3;
const REPEAT_BUDGET_S: f64 = 0.3;
/// Distinct keys sorted by sample per table at most: past them (a table
/// with dozens of indexes), an index keeps the per-index factor, so the
/// probe's cost stays bounded.
const MAX_KEY_SAMPLES: usize = 8;
/// What one statement of the measurement may cost at most.
const STATEMENT_TIMEOUT: &str = "1s";
/// ACCESS SHARE waits only behind ACCESS EXCLUSIVE; the forecast does not
/// wait there (nor make others queue behind its request).
const LOCK_TIMEOUT: &str = "200ms";

/// The existing relations a step locks or works through, in order.
pub fn relations_of(a: &StepAnalysis) -> Vec<RelationName> {
    let mut out: Vec<RelationName> = Vec::new();
    for s in &a.statements {
        let names = s
            .locks
            .iter()
            .map(|l| &l.relation)
            .chain(s.work.iter().map(|w| &w.table));
        for r in names {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// Sizes and throughput of every relation the steps touch, each measured
/// once. A relation the target lacks is `None`; an error of the connection
/// itself is returned.
pub async fn measure_tables<'a>(
    client: &Client,
    steps: impl IntoIterator<Item = &'a StepAnalysis>,
) -> Result<Sizes, tokio_postgres::Error> {
    let steps: Vec<&StepAnalysis> = steps.into_iter().collect();
    let mut sizes = Sizes::new();
    for a in &steps {
        for relation in relations_of(a) {
            if sizes.contains_key(&relation) {
                continue;
            }
            let keys = index_keys(&steps, &relation);
            let rewritten = rewrites(&steps, &relation);
            let size = measure_one(client, &relation, &keys, rewritten).await;
            // Whatever happened inside, leave no transaction open.
            client.batch_execute("ROLLBACK").await?;
            sizes.insert(relation, size?);
        }
    }
    Ok(sizes)
}

/// Each distinct key an index build of the steps sorts `relation` by.
fn index_keys(steps: &[&StepAnalysis], relation: &RelationName) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let works = steps
        .iter()
        .flat_map(|a| &a.statements)
        .flat_map(|s| &s.work);
    for w in works {
        let builds = matches!(
            w.kind,
            WorkKind::BuildIndex | WorkKind::BuildIndexConcurrently
        );
        if builds && &w.table == relation && !w.keys.is_empty() && !out.contains(&w.keys) {
            out.push(w.keys.clone());
        }
    }
    out
}

/// Whether a step rewrites `relation`: then every index on it is rebuilt.
fn rewrites(steps: &[&StepAnalysis], relation: &RelationName) -> bool {
    steps
        .iter()
        .flat_map(|a| &a.statements)
        .flat_map(|s| &s.work)
        .any(|w| w.kind == WorkKind::Rewrite && &w.table == relation)
}

async fn measure_one(
    client: &Client,
    relation: &RelationName,
    keys: &[Vec<String>],
    rewritten: bool,
) -> Result<Option<TableSize>, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'; \
             SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        ))
        .await?;
    // The analysed name, quoted where it needs quotes, is the name
    // PostgreSQL resolves: "Orders" is not orders.
    let row = client
        .query_opt(
            "SELECT n.nspname, c.relname, c.relkind::text AS relkind, \
                    pg_relation_size(c.oid) AS table_bytes, \
                    pg_indexes_size(c.oid) AS index_bytes, \
                    c.reltuples::float8 AS reltuples, \
                    (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid) AS indexes, \
                    current_setting('block_size')::int8 AS block_size \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($1::text)",
            &[&relation.to_string()],
        )
        .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(None),
        // Not a name the server can resolve (a missing schema, a lock it
        // would wait for): counted as missing, the plan goes on.
        Err(e) if e.as_db_error().is_some() => return Ok(None),
        Err(e) => return Err(e),
    };
    let schema: String = row.try_get("nspname")?;
    let name: String = row.try_get("relname")?;
    let relkind: String = row.try_get("relkind")?;
    let table_bytes: i64 = row.try_get("table_bytes")?;
    let block_size: i64 = row.try_get("block_size")?;
    let reltuples: f64 = row.try_get("reltuples")?;
    let ident = format!("{}.{}", quote_ident(&schema), quote_ident(&name));
    let mut size = TableSize {
        relation: if schema == "public" {
            quote_ident(&name)
        } else {
            ident.clone()
        },
        table_bytes,
        index_bytes: row.try_get("index_bytes")?,
        rows: reltuples.max(0.0).round() as i64,
        indexes: row.try_get("indexes")?,
        read_bytes_per_s: None,
        key_sorts: Vec::new(),
        rebuilds: Vec::new(),
    };
    if rewritten {
        size.rebuilds = rebuilds_of(client, &relation.to_string()).await?;
    }
    if matches!(relkind.as_str(), "r" | "m" | "t")
        && let Some((rate, rows)) = read_rate(client, &ident, table_bytes, block_size).await?
    {
        size.read_bytes_per_s = Some(rate);
        if reltuples < 0.0 {
            // Never analysed (reltuples -1 since PostgreSQL 14): the sample's count.
            size.rows = rows;
        }
        // The runbook's own index builds first, then the keys of the
        // indexes a rewrite rebuilds; each distinct key sampled once.
        let mut sampled: Vec<&Vec<String>> = Vec::new();
        let rebuilt = size.rebuilds.iter().map(|r| &r.keys);
        for k in keys.iter().chain(rebuilt) {
            if k.is_empty() || sampled.contains(&k) || sampled.len() >= MAX_KEY_SAMPLES {
                continue;
            }
            sampled.push(k);
            if let Some(sort) = sort_sample(
                client,
                (&schema, &name),
                k,
                (size.rows, table_bytes / block_size.max(1)),
            )
            .await?
            {
                size.key_sorts.push(sort);
            }
        }
    }
    Ok(Some(size))
}

/// Times a sequential read of at most [`SAMPLE_PAGES`] pages of `ident`:
/// the whole table when it is smaller, else a SYSTEM sample (whole pages,
/// read in block order). Bytes per second and the rows it implies; `None`
/// when the read failed (timed out, or its lock was not granted in time).
async fn read_rate(
    client: &Client,
    ident: &str,
    table_bytes: i64,
    block_size: i64,
) -> Result<Option<(f64, i64)>, tokio_postgres::Error> {
    let pages = table_bytes / block_size.max(1);
    let (sql, fraction) = if pages <= SAMPLE_PAGES {
        (format!("SELECT count(*) AS n FROM {ident}"), 1.0)
    } else {
        let percent = 100.0 * SAMPLE_PAGES as f64 / pages as f64;
        (
            format!("SELECT count(*) AS n FROM {ident} TABLESAMPLE SYSTEM ({percent:.6})"),
            percent / 100.0,
        )
    };
    // The fastest of up to three reads while they stay under 0.3 s in all:
    // load spikes on a shared server make a single timing noisy.
    let mut fastest = f64::INFINITY;
    let mut spent = 0.0;
    let mut n: i64 = 0;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let row = match client.query_one(&sql, &[]).await {
            Ok(row) => row,
            Err(e) if e.as_db_error().is_some() => break,
            Err(e) => return Err(e),
        };
        let took = started.elapsed().as_secs_f64();
        n = row.try_get("n")?;
        fastest = fastest.min(took);
        spent += took;
        if spent > REPEAT_BUDGET_S {
            break;
        }
    }
    if !fastest.is_finite() {
        return Ok(None);
    }
    let elapsed = fastest.max(1e-4);
    let read = table_bytes as f64 * fraction;
    Ok(Some((read / elapsed, (n as f64 / fraction).round() as i64)))
}
