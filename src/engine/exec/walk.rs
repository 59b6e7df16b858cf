//! A backfill's keyset walk: the table and key resolved by the server (names
//! quoted by it, never by pgpilot), the next batch's bounds, the pace
//! (`target_batch_time`) and the progress estimate.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};

use crate::engine::{EngineEvent, Resize};
use crate::runbook::Backfill;

/// A key exactly as the server sent it, bound back unchanged: the batch
/// statement's parameters are read in its own type, so any orderable type
/// (integers, text, uuid, …) passes through without pgpilot decoding it.
#[derive(Debug)]
pub(super) struct RawKey(Vec<u8>);

impl<'a> FromSql<'a> for RawKey {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<RawKey, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawKey(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl ToSql for RawKey {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A batch: its first and last key (in the type of the statement's `$1`
/// and `$2`), the last as text for the cursor, and how many keys it holds.
pub(super) struct BatchBounds {
    pub(super) first: RawKey,
    pub(super) last: RawKey,
    pub(super) last_text: String,
    pub(super) walked: u64,
}

/// The table and key as the server names them, and the prepared statements.
pub(super) struct Walk {
    /// The step's SQL, prepared: `$1`/`$2` in the types the server inferred.
    pub(super) statement: Statement,
    first_batch: Statement,
    next_batch: Statement,
    /// The largest key when the walk started (as text): its last key.
    end: Option<String>,
    /// Fraction of the key range walked, for integer keys (min, max).
    range: Option<(f64, f64)>,
    reltuples: f64,
    table: String,
}

impl Walk {
    pub(super) async fn resolve(client: &Client, b: &Backfill, sql: &str) -> Result<Walk, String> {
        let pg = |e: tokio_postgres::Error| super::sql::SqlFailure::from_pg(&e).message;
        let row = client
            .query_opt(
                "SELECT c.oid::regclass::text AS tbl, quote_ident(a.attname) AS col,
                        format_type(a.atttypid, a.atttypmod) AS typ,
                        a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AS integral,
                        greatest(c.reltuples, 0)::float8 AS reltuples
                   FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                  WHERE c.oid = to_regclass($1) AND a.attname = $2 AND a.attnum > 0
                    AND NOT a.attisdropped",
                &[&b.table, &b.key],
            )
            .await
            .map_err(pg)?
            .ok_or_else(|| {
                format!(
                    "table {} has no column {} (or there is no such table)",
                    crate::text::one_line(&b.table),
                    crate::text::one_line(&b.key)
                )
            })?;
        let table: String = row.try_get("tbl").map_err(pg)?;
        let col: String = row.try_get("col").map_err(pg)?;
        let typ: String = row.try_get("typ").map_err(pg)?;
        let integral: bool = row.try_get("integral").map_err(pg)?;
        let reltuples: f64 = row.try_get("reltuples").map_err(pg)?;
        let statement = client.prepare(sql).await.map_err(pg)?;
        let [p1, p2, ..] = statement.params() else {
            return Err("the sql must use $1 and $2 (the batch's first and last key)".into());
        };
        let param_type = |t: &Type| {
            let oid = t.oid();
            async move {
                client
                    .query_one("SELECT format_type($1::oid, NULL) AS t", &[&oid])
                    .await
                    .and_then(|r| r.try_get::<_, String>("t"))
            }
        };
        let (t1, t2) = (
            param_type(p1).await.map_err(pg)?,
            param_type(p2).await.map_err(pg)?,
        );
        // The names and types come from the server (regclass, quote_ident,
        // format_type): quoted as it quotes them.
        // Three index probes in one statement, each cheap: the first key,
        // the key `$1 - 1` places after it (a full batch's last key) and,
        // only when there is none (the last, short batch), the largest key
        // left and a count of the keys up to it. A CTE of the batch's keys
        // read four times cost 2–3 ms a batch, more than the probes (about
        // 1 ms, as a psql loop's min()/max()), and unlike min()/max() the
        // probes work for any orderable key (uuid has no max()). No row: no
        // key is left.
        let bounds = |filter: &str| {
            format!(
                "SELECT f.k::{t1} AS first, l.k::{t2} AS last, l.k::text AS last_text,
                        CASE WHEN o.k IS NULL
                             THEN (SELECT count(*) FROM (SELECT 1 FROM {table} {filter}
                                                          ORDER BY {col} LIMIT $1::int8) c)
                             ELSE $1::int8 END AS n
                   FROM (SELECT {col} AS k FROM {table} {filter} ORDER BY {col} LIMIT 1) f
                   LEFT JOIN LATERAL (SELECT {col} AS k FROM {table} {filter}
                                       ORDER BY {col} OFFSET $1::int8 - 1 LIMIT 1) o ON true
                  CROSS JOIN LATERAL (SELECT coalesce(o.k, (SELECT {col} FROM {table} {filter}
                                                             ORDER BY {col} DESC LIMIT 1)) AS k) l"
            )
        };
        // The walk ends at the largest key when it starts: rows inserted
        // meanwhile are the application's to write (expand/contract), and a
        // table that keeps growing would otherwise never let the walk end.
        let first_batch = client
            .prepare(&bounds(&format!("WHERE {col} <= $2::text::{typ}")))
            .await
            .map_err(pg)?;
        let next_batch = client
            .prepare(&bounds(&format!(
                "WHERE {col} > $2::text::{typ} AND {col} <= $3::text::{typ}"
            )))
            .await
            .map_err(pg)?;
        // ORDER BY, not max(): uuid and other keys have no max() aggregate.
        let end: Option<String> = client
            .query_opt(
                // NULL keys sort first in DESC order and are never walked
                // (no batch's bounds can hold them).
                &format!(
                    "SELECT {col}::text AS last FROM {table} WHERE {col} IS NOT NULL
                      ORDER BY {col} DESC LIMIT 1"
                ),
                &[],
            )
            .await
            .map_err(pg)?
            .map(|r| r.try_get("last"))
            .transpose()
            .map_err(pg)?;
        let range = if integral {
            let r = client
                .query_one(
                    &format!(
                        "SELECT min({col})::float8 AS lo, max({col})::float8 AS hi FROM {table}"
                    ),
                    &[],
                )
                .await
                .map_err(pg)?;
            match (
                r.try_get::<_, Option<f64>>("lo"),
                r.try_get::<_, Option<f64>>("hi"),
            ) {
                (Ok(Some(lo)), Ok(Some(hi))) if hi > lo => Some((lo, hi)),
                _ => None,
            }
        } else {
            None
        };
        Ok(Walk {
            statement,
            first_batch,
            next_batch,
            end,
            range,
            reltuples,
            table,
        })
    }

    /// The next batch after `cursor` (from the first key without one), or
    /// `None` when no key is left up to the walk's last key.
    pub(super) async fn next_batch(
        &self,
        client: &Client,
        cursor: Option<&str>,
        size: u64,
    ) -> Result<Option<BatchBounds>, tokio_postgres::Error> {
        let limit = size.min(i64::MAX as u64) as i64;
        let row = match cursor {
            None => {
                client
                    .query_opt(&self.first_batch, &[&limit, &self.end])
                    .await?
            }
            Some(c) => {
                client
                    .query_opt(&self.next_batch, &[&limit, &c, &self.end])
                    .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let walked: i64 = row.try_get("n")?;
        if walked <= 0 {
            return Ok(None);
        }
        Ok(Some(BatchBounds {
            first: row.try_get("first")?,
            last: row.try_get("last")?,
            last_text: row.try_get("last_text")?,
            walked: walked as u64,
        }))
    }

    /// Keys in the table by the planner's estimate (`reltuples`); counted
    /// when the table was never analyzed.
    pub(super) async fn estimate(&self, client: &Client, _cursor: Option<&str>) -> u64 {
        if self.reltuples >= 1.0 {
            return self.reltuples as u64;
        }
        client
            .query_one(&format!("SELECT count(*) AS n FROM {}", self.table), &[])
            .await
            .and_then(|r| r.try_get::<_, i64>("n"))
            .map(|n| n.max(0) as u64)
            .unwrap_or(0)
    }

    /// The share of the key range walked up to `last` (integer keys only).
    fn fraction(&self, last: &str) -> Option<f64> {
        let (lo, hi) = self.range?;
        let last: f64 = last.parse().ok()?;
        Some(((last - lo) / (hi - lo)).clamp(0.0, 1.0))
    }
}

/// Batch size and its adaptation to `target_batch_time`: ×2 or ÷2 per
/// batch, between 1 and 100 × the initial size.
pub(super) struct Pace {
    pub(super) size: u64,
    initial: u64,
    target: Option<Duration>,
    last_took: Option<Duration>,
}

impl Pace {
    pub(super) fn new(b: &Backfill) -> Pace {
        Pace {
            size: b.batch_size.max(1),
            initial: b.batch_size.max(1),
            target: b.target_batch_time,
            last_took: None,
        }
    }

    /// The operator's resize, within the same bounds as the adaptation;
    /// from then on the operator's size holds (no more adaptation).
    pub(super) fn order(&mut self, r: Resize) -> String {
        let max = self.initial.saturating_mul(100);
        let new = match r {
            Resize::Double => self.size.saturating_mul(2).min(max),
            Resize::Halve => (self.size / 2).max(1),
        };
        self.target = None;
        let said = if new == self.size {
            format!(
                "batch size stays {new}: the operator's resize is bounded by 1 and 100 × batch_size"
            )
        } else {
            format!("batch size {} → {new}: resized by the operator", self.size)
        };
        self.size = new;
        said
    }

    pub(super) fn took(&mut self, d: Duration) {
        self.last_took = Some(d);
    }

    /// After a batch of `walked` keys: the new size, said when it changed.
    pub(super) fn after_batch(&mut self, walked: u64) -> Option<String> {
        let (target, took) = (self.target?, self.last_took?);
        // A short last batch says nothing about the size.
        if walked < self.size {
            return None;
        }
        let max = self.initial.saturating_mul(100);
        let new = if took < target / 2 {
            self.size.saturating_mul(2).min(max)
        } else if took > target.saturating_mul(3) / 2 {
            (self.size / 2).max(1)
        } else {
            self.size
        };
        if new == self.size {
            return None;
        }
        let said = format!(
            "batch size {} → {new}: the last batch took {} ms, target {} ms",
            self.size,
            took.as_millis(),
            target.as_millis()
        );
        self.size = new;
        Some(said)
    }
}

/// Keys walked, the estimate of the total, the rate; what the audit has
/// been told (at most one record per 1 %, at least one a minute).
pub(super) struct Progress {
    pub(super) done: u64,
    pub(super) batches: u64,
    total: u64,
    /// Keys walked and time spent in this run, for the rate.
    walked_here: u64,
    started: Instant,
    audited_percent: u64,
    audited_at: Instant,
}

impl Progress {
    pub(super) fn new(done: u64, total: u64) -> Progress {
        Progress {
            done,
            batches: 0,
            total: total.max(done),
            walked_here: 0,
            started: Instant::now(),
            audited_percent: 0,
            audited_at: Instant::now(),
        }
    }

    /// The estimate after a batch that ends at `last` with `done` walked:
    /// from the key range for integer keys once a twentieth is walked,
    /// else the planner's estimate; never below what is walked.
    pub(super) fn total_after(&self, done: u64, walk: &Walk, last: &str) -> u64 {
        let by_range = walk
            .fraction(last)
            .filter(|f| *f >= 0.05)
            .map(|f| (done as f64 / f) as u64);
        by_range.unwrap_or(self.total).max(done)
    }

    pub(super) fn committed(&mut self, walked: u64, total: u64, _took: Duration) {
        self.done += walked;
        self.walked_here += walked;
        self.batches += 1;
        self.total = total.max(self.done);
    }

    pub(super) fn percent(&self) -> u64 {
        self.done
            .saturating_mul(100)
            .checked_div(self.total)
            .map_or(100, |p| p.min(100))
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.walked_here as f64 / secs
    }

    /// The progress event; `size`: the next batch's, `paused`: by the
    /// operator, `waiting`: why the walk waits by itself.
    pub(super) fn event(
        &self,
        step: &str,
        size: u64,
        paused: bool,
        waiting: Option<&str>,
    ) -> EngineEvent {
        let rate = self.rate();
        let left = self.total.saturating_sub(self.done) as f64;
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left / rate));
        EngineEvent::Progress {
            step: step.to_string(),
            done: self.done,
            total_estimate: self.total,
            rate_per_s: rate,
            eta,
            batch_size: size,
            paused,
            waiting: waiting.map(str::to_string),
        }
    }

    /// A progress record is due at a new whole percent, but not more than
    /// once per 1 %; and at least once a minute.
    pub(super) fn audit_due(&mut self) -> Option<String> {
        let p = self.percent();
        let minute = self.audited_at.elapsed() >= Duration::from_secs(60);
        if p <= self.audited_percent && !minute {
            return None;
        }
        self.audited_percent = p;
        self.audited_at = Instant::now();
        Some(format!(
            "{p}% ({} of about {} key(s), {:.0} key(s)/s)",
            self.done,
            self.total,
            self.rate()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(target_ms: u64) -> Pace {
        Pace::new(&Backfill {
            table: "t".into(),
            key: "id".into(),
            batch_size: 100,
            target_batch_time: Some(Duration::from_millis(target_ms)),
            batch_pause: Duration::ZERO,
            table_at: None,
        })
    }

    #[test]
    fn the_batch_size_doubles_or_halves_within_bounds() {
        let mut p = pace(500);
        p.took(Duration::from_millis(10));
        for _ in 0..20 {
            p.after_batch(p.size);
        }
        assert_eq!(p.size, 10_000, "at most 100 × the initial size");
        p.took(Duration::from_secs(5));
        for _ in 0..40 {
            p.after_batch(p.size);
        }
        assert_eq!(p.size, 1, "at least one row");
        p.took(Duration::from_millis(500));
        assert_eq!(p.after_batch(1), None, "on target: unchanged");
    }

    #[test]
    fn the_operators_resize_is_bounded_and_holds_against_the_adaptation() {
        let mut p = pace(500);
        assert!(p.order(Resize::Double).contains("100 → 200"));
        p.took(Duration::from_secs(5));
        assert_eq!(p.after_batch(p.size), None, "the operator's size holds");
        for _ in 0..10 {
            p.order(Resize::Halve);
        }
        assert_eq!(p.size, 1, "at least one row");
        for _ in 0..20 {
            p.order(Resize::Double);
        }
        assert_eq!(p.size, 10_000, "at most 100 × the initial size");
    }

    #[test]
    fn progress_is_audited_once_per_percent() {
        let mut p = Progress::new(0, 1000);
        p.committed(5, 1000, Duration::ZERO);
        assert!(p.audit_due().is_none(), "0 %: nothing new");
        p.committed(10, 1000, Duration::ZERO);
        assert!(p.audit_due().is_some_and(|m| m.starts_with("1%")));
        p.committed(1, 1000, Duration::ZERO);
        assert!(p.audit_due().is_none(), "still 1 %");
    }
}
