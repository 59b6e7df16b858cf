//! What an index build's sort costs on the target: a bounded sample of the
//! key columns sorted with their own types and collations (docs/forecast.md,
//! "Index builds"). Text under a linguistic collation compares many times
//! slower than an integer; only the target knows its collations' speed.

use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use crate::analysis::quote_ident;

/// Rows a sort sample holds at most.
const SAMPLE_ROWS: i64 = 30_000;
/// Pages it reads at most, as the read-rate sample (measure.rs).
const SAMPLE_PAGES: i64 = 2048;
/// Timings of each query while they stay under this in all.
const REPEATS: usize = 3;
const REPEAT_BUDGET_S: f64 = 0.3;
/// A CREATE INDEX sort, per second of the sample's in-memory sort scaled to
/// the table: tuplesort of index tuples, spilling to disk past
/// maintenance_work_mem. Calibrated on the sandbox (docs/benchmarks.md):
/// 1.1× bigint, 1.4× int, 1.6× md5 text under C.UTF-8.
pub const SORT_FACTOR: f64 = 1.4;
/// Bytes per index entry besides the key: line pointer and tuple header.
const ENTRY_OVERHEAD: f64 = 16.0;

/// A sort of a sample of one key, timed on the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeySort {
    /// The key columns, in order.
    pub keys: Vec<String>,
    /// Rows in the sample.
    pub sample_rows: i64,
    /// Seconds the sort of the sample took (the sample's read taken off).
    pub sample_seconds: f64,
    /// Bytes per entry: pg_stats.avg_width summed over the keys (8 for a
    /// column never analysed).
    pub key_width: f64,
}

impl KeySort {
    /// Seconds a CREATE INDEX on `rows` rows spends beyond reading the
    /// heap: the sort, scaled n·log n from the sample, and writing the
    /// entries at `write_bytes_per_s`.
    pub fn build_seconds(&self, rows: i64, write_bytes_per_s: f64) -> f64 {
        let n = self.sample_rows.max(2) as f64;
        let rows = (rows.max(0) as f64).max(1.0);
        let scale = if rows > n {
            rows / n * rows.ln() / n.ln()
        } else {
            rows / n
        };
        let write = rows * (self.key_width + ENTRY_OVERHEAD) / write_bytes_per_s.max(1.0);
        SORT_FACTOR * self.sample_seconds * scale + write
    }
}

/// Times `SELECT … ORDER BY keys` over a sample of at most
/// [`SAMPLE_ROWS`] rows of `ident`, against the same sample unsorted.
/// Inside the caller's READ ONLY transaction, under a savepoint: a key
/// that is not a column (or a timeout) gives `None` and leaves the
/// transaction usable.
pub async fn sort_sample(
    client: &Client,
    (schema, name): (&str, &str),
    keys: &[String],
    (rows, pages): (i64, i64),
) -> Result<Option<KeySort>, tokio_postgres::Error> {
    let out = match client.batch_execute("SAVEPOINT pgpilot_key_sort").await {
        Ok(()) => timed(client, (schema, name), keys, (rows, pages)).await,
        Err(e) => Err(e),
    };
    let end = match out {
        Ok(Some(_)) => "RELEASE SAVEPOINT pgpilot_key_sort",
        _ => "ROLLBACK TO SAVEPOINT pgpilot_key_sort",
    };
    match (out, client.batch_execute(end).await) {
        // A server error (the transaction aborted before, a timeout, a key
        // that is not a column): no sample, the forecast falls back.
        (Err(e), _) | (_, Err(e)) if e.as_db_error().is_none() => Err(e),
        (Ok(sort), Ok(())) => Ok(sort),
        _ => Ok(None),
    }
}

async fn timed(
    client: &Client,
    (schema, name): (&str, &str),
    keys: &[String],
    (rows, pages): (i64, i64),
) -> Result<Option<KeySort>, tokio_postgres::Error> {
    let ident = format!("{}.{}", quote_ident(schema), quote_ident(name));
    let cols = keys
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let sample = sample_sql(&ident, &cols, rows, pages);
    let plain = format!("SELECT count(*) AS n FROM ({sample}) s");
    let sorted =
        format!("SELECT cardinality(array_agg(0 ORDER BY {cols}))::int8 AS n FROM ({sample}) s");
    let Some((read, _)) = fastest(client, &plain).await? else {
        return Ok(None);
    };
    let Some((sort, n)) = fastest(client, &sorted).await? else {
        return Ok(None);
    };
    if n < 2 {
        return Ok(None);
    }
    let width: Option<f64> = client
        .query_one(
            "SELECT sum(coalesce(st.avg_width, 8))::float8 AS width \
             FROM unnest($3::text[]) k(col) \
             LEFT JOIN pg_stats st ON st.attname = k.col \
               AND st.schemaname = $1 AND st.tablename = $2",
            &[&schema, &name, &keys],
        )
        .await?
        .try_get("width")?;
    Ok(Some(KeySort {
        keys: keys.to_vec(),
        sample_rows: n,
        sample_seconds: (sort - read).max(1e-5),
        key_width: width.unwrap_or(8.0 * keys.len() as f64),
    }))
}

/// At most [`SAMPLE_ROWS`] rows of the key columns, and at most
/// [`SAMPLE_PAGES`] pages read: whole pages by SYSTEM sampling when the
/// table holds more than either.
fn sample_sql(ident: &str, cols: &str, rows: i64, pages: i64) -> String {
    // Half as many rows again: SYSTEM picks pages, not rows.
    let by_rows = 150.0 * SAMPLE_ROWS as f64 / rows.max(1) as f64;
    let by_pages = 100.0 * SAMPLE_PAGES as f64 / pages.max(1) as f64;
    let percent = by_rows.min(by_pages);
    if percent >= 100.0 {
        return format!("SELECT {cols} FROM {ident} LIMIT {SAMPLE_ROWS}");
    }
    format!("SELECT {cols} FROM {ident} TABLESAMPLE SYSTEM ({percent:.6}) LIMIT {SAMPLE_ROWS}")
}

/// The fastest of up to three runs of `sql` and its `n`; `None` when the
/// first failed with a server error (which then propagates as `Err`).
async fn fastest(client: &Client, sql: &str) -> Result<Option<(f64, i64)>, tokio_postgres::Error> {
    let mut best = f64::INFINITY;
    let mut spent = 0.0;
    let mut n = 0;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let row = client.query_one(sql, &[]).await?;
        let took = started.elapsed().as_secs_f64();
        n = row.try_get::<_, Option<i64>>("n")?.unwrap_or(0);
        best = best.min(took);
        spent += took;
        if spent > REPEAT_BUDGET_S {
            break;
        }
    }
    Ok(best.is_finite().then_some((best, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sort(seconds: f64, width: f64) -> KeySort {
        KeySort {
            keys: vec!["k".into()],
            sample_rows: 30_000,
            sample_seconds: seconds,
            key_width: width,
        }
    }

    #[test]
    fn the_sort_scales_n_log_n_from_the_sample() {
        // No write cost (an infinite rate): the sort alone.
        let s = sort(0.01, 4.0);
        let full = s.build_seconds(1_000_000, f64::INFINITY);
        let expected = SORT_FACTOR * 0.01 * (1e6 / 3e4) * (1e6f64.ln() / 3e4f64.ln());
        assert!((full - expected).abs() < 1e-9, "{full} {expected}");
        // A table smaller than the sample: linear, no log.
        let small = s.build_seconds(15_000, f64::INFINITY);
        assert!((small - SORT_FACTOR * 0.005).abs() < 1e-9);
    }

    #[test]
    fn a_slower_sort_or_a_wider_key_takes_longer() {
        let rate = 100.0 * 1024.0 * 1024.0;
        let int = sort(0.011, 4.0).build_seconds(1_000_000, rate);
        let text = sort(0.040, 33.0).build_seconds(1_000_000, rate);
        assert!(text > 3.0 * int, "{text} {int}");
        let wide = sort(0.011, 400.0).build_seconds(1_000_000, rate);
        // 1M entries of 396 bytes more, at 100 MB/s.
        assert!((wide - int - 1e6 * 396.0 / rate).abs() < 1e-9);
    }

    #[test]
    fn the_sample_reads_at_most_its_rows_and_pages() {
        assert_eq!(
            sample_sql("t", "\"k\"", 100, 2),
            "SELECT \"k\" FROM t LIMIT 30000"
        );
        assert_eq!(
            sample_sql("t", "\"k\"", 1_000_000, 9_346),
            "SELECT \"k\" FROM t TABLESAMPLE SYSTEM (4.500000) LIMIT 30000"
        );
        // Wide rows, 2 a page: 2,048 pages of 20,000, not 45,000 rows.
        assert_eq!(
            sample_sql("t", "\"k\"", 40_000, 20_000),
            "SELECT \"k\" FROM t TABLESAMPLE SYSTEM (10.240000) LIMIT 30000"
        );
    }
}
