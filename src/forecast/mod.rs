//! The forecast of `plan --db`: how big the tables a step touches are, and
//! for a step that rewrites, indexes, validates or scans a table, about how
//! long that takes and which lock is held meanwhile. The method is in
//! docs/forecast.md: a read throughput measured on the target, scaled by a
//! per-operation factor calibrated on the sandbox, and each index build's
//! sort (a rewrite's rebuilt indexes included) timed on a sample of its key.

mod keys;
mod measure;
mod rebuild;

use std::collections::HashMap;

use serde::Serialize;

use crate::analysis::{LockMode, RelationName, StepAnalysis, WorkKind};

pub use keys::KeySort;
pub use measure::{measure_tables, relations_of};
pub use rebuild::Rebuild;

/// What the catalog and one bounded read say about one relation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSize {
    /// The relation as the forecast names it (quoted where it needs quotes).
    pub relation: String,
    /// `pg_relation_size`: the main fork.
    pub table_bytes: i64,
    /// `pg_indexes_size`: every index on it.
    pub index_bytes: i64,
    /// `pg_class.reltuples`, or the sample's estimate when never analysed.
    pub rows: i64,
    /// How many indexes a rewrite rebuilds.
    pub indexes: i64,
    /// Bytes per second a bounded sequential read of it took on the target;
    /// `None` when it could not be read (an index, a locked table).
    pub read_bytes_per_s: Option<f64>,
    /// Each index key the runbook builds on it, its sort timed on a sample.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_sorts: Vec<KeySort>,
    /// Every index a rewrite of it rebuilds, read from pg_index when the
    /// runbook rewrites it (empty otherwise, or when it could not be read:
    /// then `indexes` counts them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rebuilds: Vec<Rebuild>,
}

/// Each relation the runbook touches, by its analysed name: found or missing.
pub type Sizes = HashMap<RelationName, Option<TableSize>>;

/// A step's forecast: `plan --format json` prints it as the step's `forecast`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub rows: i64,
    /// About how long the step's row-by-row work takes; `None` when it
    /// neither rewrites, indexes, validates nor scans a table (or nothing
    /// could be measured).
    pub seconds: Option<f64>,
    /// The strongest lock the step takes.
    pub lock: Option<LockMode>,
    /// Each table's row-by-row work, with the lock held meanwhile.
    pub work: Vec<WorkForecast>,
    pub tables: Vec<TableSize>,
    /// Relations the target does not have (yet): not counted.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkForecast {
    pub relation: String,
    pub kind: WorkKind,
    pub bytes: i64,
    pub seconds: Option<f64>,
    pub lock: Option<LockMode>,
}

/// Seconds of row-by-row work per second of a plain sequential read of the
/// same heap, per operation, calibrated on the sandbox (docs/forecast.md):
/// a validation reads every row and checks it.
const FACTOR_VALIDATE: f64 = 1.2;
/// One index build whose key could not be sampled (an expression, REINDEX,
/// a GIN index a rewrite rebuilds): read the heap, sort, write the index,
/// as an integer key takes.
const FACTOR_INDEX: f64 = 6.0;
/// Writing the new heap, without its indexes (each is rebuilt on top):
/// every row read, its new version formed (the cast of a type change
/// evaluated) and inserted, with its WAL record unless wal_level is
/// minimal. A per-row insert costs many times a per-row read; calibrated
/// on the sandbox (docs/benchmarks.md, "Issue 14").
const FACTOR_REWRITE: f64 = 12.0;

/// The seconds `kind` takes on a relation of this size; an index build on
/// `keys` whose sort was sampled is the heap's read plus that sort scaled
/// to the table's rows and the entries written (docs/forecast.md). A
/// rewrite is the new heap plus the rebuild of every index on the table,
/// each forecast as that index's own build.
pub fn work_seconds(kind: WorkKind, size: &TableSize, keys: &[String]) -> Option<f64> {
    let rate = size.read_bytes_per_s.filter(|r| *r > 0.0)?;
    let read = size.table_bytes as f64 / rate;
    let build = |keys: &[String]| sampled_build(size, keys, read, rate);
    Some(match kind {
        WorkKind::BuildIndex => build(keys).unwrap_or(FACTOR_INDEX * read),
        // Two scans of the heap, plus the waits for older transactions,
        // which no throughput predicts.
        WorkKind::BuildIndexConcurrently => 2.0 * build(keys).unwrap_or(FACTOR_INDEX * read),
        WorkKind::Rewrite => {
            let rebuilds: f64 = if size.rebuilds.is_empty() {
                size.indexes as f64 * FACTOR_INDEX * read
            } else {
                size.rebuilds
                    .iter()
                    .map(|r| build(&r.keys).unwrap_or(FACTOR_INDEX * read))
                    .sum()
            };
            FACTOR_REWRITE * read + rebuilds
        }
        WorkKind::Scan => read,
        WorkKind::Validate => FACTOR_VALIDATE * read,
    })
}

/// An index build on `keys` from its sampled sort: the heap read, the sort
/// scaled to the table's rows, the entries written. `None` when no sample
/// of that key was taken.
fn sampled_build(size: &TableSize, keys: &[String], read: f64, rate: f64) -> Option<f64> {
    if keys.is_empty() {
        return None;
    }
    let sort = size.key_sorts.iter().find(|k| k.keys == keys)?;
    Some(read + sort.build_seconds(size.rows, rate))
}

/// The forecast of one step from the measured sizes.
pub fn forecast_step(a: &StepAnalysis, sizes: &Sizes) -> Forecast {
    let mut f = Forecast {
        table_bytes: 0,
        index_bytes: 0,
        rows: 0,
        seconds: None,
        lock: a.lock,
        work: Vec::new(),
        tables: Vec::new(),
        missing: Vec::new(),
    };
    for relation in relations_of(a) {
        match sizes.get(&relation) {
            Some(Some(size)) => {
                if f.tables.iter().all(|t| t.relation != size.relation) {
                    f.table_bytes += size.table_bytes;
                    f.index_bytes += size.index_bytes;
                    f.rows += size.rows;
                    f.tables.push(size.clone());
                }
            }
            _ => {
                let name = relation.to_string();
                if !f.missing.contains(&name) {
                    f.missing.push(name);
                }
            }
        }
    }
    for s in &a.statements {
        for w in &s.work {
            let Some(Some(size)) = sizes.get(&w.table) else {
                continue;
            };
            let seconds = work_seconds(w.kind, size, &w.keys);
            if let Some(secs) = seconds {
                f.seconds = Some(f.seconds.unwrap_or(0.0) + secs);
            }
            f.work.push(WorkForecast {
                relation: size.relation.clone(),
                kind: w.kind,
                bytes: size.table_bytes,
                seconds,
                lock: s
                    .locks
                    .iter()
                    .find(|l| l.relation == w.table)
                    .map(|l| l.mode)
                    .or(s.lock),
            });
        }
    }
    f
}

impl WorkForecast {
    /// "rewrites 2.3 GB under ACCESS EXCLUSIVE: about 45 s during which
    /// every query on equipment_readings waits". The relation is the
    /// catalog's name, made safe where it is shown.
    pub fn sentence(&self) -> String {
        let lock = self
            .lock
            .map(|l| format!(" under {}", l.sql_name()))
            .unwrap_or_default();
        let how_long = match self.seconds {
            Some(s) => format!("about {}", seconds_text(s)),
            None => "for a time pgpilot could not measure".to_string(),
        };
        format!(
            "{} {} ({}){lock}: {how_long} during which {}",
            self.kind.verb(),
            self.relation,
            bytes_text(self.bytes),
            waiting(self.lock, &self.relation),
        )
    }
}

/// Who waits while the lock is held, in words.
fn waiting(lock: Option<LockMode>, relation: &str) -> String {
    match lock {
        Some(LockMode::AccessExclusive) => format!("every query on {relation} waits"),
        Some(l) if l.blocks_writes() => {
            format!("every write to {relation} waits; reads go on")
        }
        Some(LockMode::ShareUpdateExclusive) => format!(
            "reads and writes on {relation} go on; VACUUM and other schema changes on it wait"
        ),
        _ => format!("reads and writes on {relation} go on"),
    }
}

/// 2.3 GB, 512 kB: binary units, one decimal from MB up.
pub fn bytes_text(b: i64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if b < 1024 {
        return format!("{b} bytes");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "kB" {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// 0.4 s, 45 s, 12 min, 2.5 h.
pub fn seconds_text(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(bytes: i64, indexes: i64) -> TableSize {
        TableSize {
            relation: "t".into(),
            table_bytes: bytes,
            index_bytes: 0,
            rows: 0,
            indexes,
            read_bytes_per_s: Some(100.0 * 1024.0 * 1024.0),
            key_sorts: Vec::new(),
            rebuilds: Vec::new(),
        }
    }

    #[test]
    fn heavier_work_takes_longer_and_a_rewrite_rebuilds_each_index() {
        let s = size(1024 * 1024 * 1024, 0);
        let scan = work_seconds(WorkKind::Scan, &s, &[]).unwrap();
        let index = work_seconds(WorkKind::BuildIndex, &s, &[]).unwrap();
        let rewrite = work_seconds(WorkKind::Rewrite, &s, &[]).unwrap();
        assert!(scan < index && index < rewrite);
        let with_two = work_seconds(WorkKind::Rewrite, &size(1024 * 1024 * 1024, 2), &[]).unwrap();
        assert!((with_two - rewrite - 2.0 * index).abs() < 1e-6);
    }

    #[test]
    fn a_rewrite_counts_each_rebuilt_index_as_its_own_build() {
        let mut s = size(1024 * 1024 * 1024, 2);
        s.rows = 1_000_000;
        s.key_sorts.push(KeySort {
            keys: vec!["label".into()],
            sample_rows: 30_000,
            sample_seconds: 2.0,
            key_width: 40.0,
        });
        s.rebuilds = vec![
            Rebuild {
                index: "t_label".into(),
                keys: vec!["label".into()],
            },
            // An expression: no sample, an integer key's factor.
            Rebuild {
                index: "t_lower".into(),
                keys: Vec::new(),
            },
        ];
        let keys = vec!["label".to_string()];
        let label = work_seconds(WorkKind::BuildIndex, &s, &keys).unwrap();
        let other = work_seconds(WorkKind::BuildIndex, &s, &[]).unwrap();
        let heap = work_seconds(WorkKind::Rewrite, &size(1024 * 1024 * 1024, 0), &[]).unwrap();
        let rewrite = work_seconds(WorkKind::Rewrite, &s, &[]).unwrap();
        assert!((rewrite - heap - label - other).abs() < 1e-6, "{rewrite}");
        // The sampled key, slower to sort, is not the integer factor.
        assert!(label > 2.0 * other, "{label} {other}");
    }

    #[test]
    fn no_measured_rate_no_seconds() {
        let mut s = size(1024, 0);
        s.read_bytes_per_s = None;
        assert_eq!(work_seconds(WorkKind::Scan, &s, &[]), None);
    }

    #[test]
    fn the_sentence_names_size_lock_time_and_who_waits() {
        let w = WorkForecast {
            relation: "equipment_readings".into(),
            kind: WorkKind::Rewrite,
            bytes: 2_469_606_195,
            seconds: Some(45.2),
            lock: Some(LockMode::AccessExclusive),
        };
        assert_eq!(
            w.sentence(),
            "rewrites equipment_readings (2.3 GB) under ACCESS EXCLUSIVE: about 45 s during which every query on equipment_readings waits"
        );
        assert_eq!(bytes_text(512 * 1024), "512 kB");
        assert_eq!(seconds_text(600.0), "10 min");
    }
}
