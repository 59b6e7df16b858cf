//! Progress of long statements, from the server's `pg_stat_progress_*`
//! views (Monitoring Database Activity, "Progress Reporting"): CREATE
//! INDEX [CONCURRENTLY] and REINDEX, VACUUM, VACUUM FULL and CLUSTER,
//! ANALYZE (PostgreSQL 13+) and COPY (PostgreSQL 14+). A view the server
//! does not have is left out of the query, never an error.
//!
//! Cost: the plain poll does not change. This second query is sent only
//! when the poll shows an active backend whose statement can report
//! progress ([`worth_reading`]), so a server doing nothing long pays
//! nothing for it.

use serde::Serialize;
use tokio_postgres::Client;

use super::{Backend, shown};

/// What one backend's long statement has done so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandProgress {
    pub pid: i32,
    /// `CREATE INDEX CONCURRENTLY`, `VACUUM`, `VACUUM FULL`, `CLUSTER`,
    /// `ANALYZE`, `COPY FROM`, … as the server names it.
    pub command: String,
    pub relation: Option<String>,
    pub phase: String,
    /// Work done and total in the phase's unit (blocks, tuples, lockers,
    /// bytes); `None` where the phase counts nothing.
    pub done: Option<i64>,
    pub total: Option<i64>,
    /// `done / total` of the current phase, 0–100.
    pub percent: Option<f64>,
    /// Seconds left for the whole statement, from the rate seen across
    /// polls and the weights of the phases still to come (see [`super::eta`]);
    /// `None` until two polls saw the phase move, and while it waits.
    pub eta_s: Option<f64>,
    /// The session a build waits for in its waiting phases
    /// (`current_locker_pid`), named.
    pub locker: Option<Locker>,
    /// A concurrent build whose key columns are all passed by value
    /// (integers, timestamps, …): its table scan is a smaller share of the
    /// work than a text key's, which the ETA's weights follow. Not in the
    /// JSON.
    #[serde(skip)]
    pub byval_key: bool,
}

/// The session a CREATE INDEX CONCURRENTLY waits on ("waiting for old
/// snapshots", "waiting for writers before …"): its texts made safe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Locker {
    pub pid: i32,
    pub application: Option<String>,
    pub user: Option<String>,
    pub state: Option<String>,
    pub xact_age_s: Option<f64>,
    pub query: String,
}

impl Locker {
    /// `pid 4242 (nightly-report, alice)`.
    pub fn named(&self) -> String {
        let parts: Vec<&str> = [self.application.as_deref(), self.user.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        if parts.is_empty() {
            format!("pid {}", self.pid)
        } else {
            format!("pid {} ({})", self.pid, parts.join(", "))
        }
    }
}

impl CommandProgress {
    /// Whether the statement is in a phase where it waits for other
    /// sessions rather than working.
    pub fn waiting(&self) -> bool {
        self.phase.starts_with("waiting")
    }
}

/// Statement words whose execution reports progress. A backend's query
/// text containing one of them, while active, makes the poll read the
/// progress views; a false positive costs one cheap query.
const REPORTING: [&str; 6] = ["INDEX", "VACUUM", "CLUSTER", "ANALY", "COPY", "REINDEX"];

/// Whether a poll that saw `backends` should read the progress views: an
/// active session whose statement may report progress, or an autovacuum
/// worker.
pub fn worth_reading(backends: &[Backend]) -> bool {
    backends.iter().any(|b| {
        b.backend_type == "autovacuum worker"
            || (b.state == "active" && {
                let q = b.query.to_ascii_uppercase();
                REPORTING.iter().any(|w| q.contains(w))
            })
    })
}

/// The progress query for a server of `server_version_num`: one row per
/// backend of the current database with a statement reporting progress.
/// Columns: pid, command, relation, phase, done, total, locker_pid,
/// locker_application, locker_user, locker_state, locker_xact_age_s,
/// locker_query.
pub fn progress_sql(server_version_num: i32) -> String {
    let mut parts = vec![
        // Building phases count blocks (the table scan) or tuples (sort,
        // load); the waiting phases count the lockers waited for.
        "SELECT p.pid, p.command::text AS command, p.relid, p.phase::text AS phase,
        CASE WHEN p.phase::text LIKE 'waiting%' THEN p.lockers_done
             WHEN p.blocks_total > 0 THEN p.blocks_done
             WHEN p.tuples_total > 0 THEN p.tuples_done END AS done,
        CASE WHEN p.phase::text LIKE 'waiting%' THEN nullif(p.lockers_total, 0)
             WHEN p.blocks_total > 0 THEN p.blocks_total
             WHEN p.tuples_total > 0 THEN p.tuples_total END AS total,
        nullif(p.current_locker_pid, 0)::int4 AS locker_pid,
        (SELECT bool_and(t.typbyval)
           FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
           JOIN pg_type t ON t.oid = a.atttypid
          WHERE i.indexrelid = p.index_relid AND 0 <> ALL (i.indkey::int2[])) AS byval_key
   FROM pg_stat_progress_create_index p WHERE p.datid = (SELECT oid FROM db)"
            .to_string(),
        "SELECT p.pid, 'VACUUM', p.relid, p.phase::text,
        CASE WHEN p.phase = 'vacuuming heap' THEN p.heap_blks_vacuumed ELSE p.heap_blks_scanned END,
        nullif(p.heap_blks_total, 0), NULL::int, NULL::bool
   FROM pg_stat_progress_vacuum p WHERE p.datid = (SELECT oid FROM db)"
            .to_string(),
        "SELECT p.pid, p.command::text, p.relid, p.phase::text,
        CASE WHEN p.heap_blks_total > 0 THEN p.heap_blks_scanned ELSE p.heap_tuples_written END,
        nullif(p.heap_blks_total, 0), NULL::int, NULL::bool
   FROM pg_stat_progress_cluster p WHERE p.datid = (SELECT oid FROM db)"
            .to_string(),
    ];
    if server_version_num >= 130000 {
        parts.push(
            "SELECT p.pid, 'ANALYZE', p.relid, p.phase::text,
        p.sample_blks_scanned, nullif(p.sample_blks_total, 0), NULL::int, NULL::bool
   FROM pg_stat_progress_analyze p WHERE p.datid = (SELECT oid FROM db)"
                .to_string(),
        );
    }
    if server_version_num >= 140000 {
        parts.push(
            "SELECT p.pid, p.command::text, p.relid, 'copying',
        CASE WHEN p.bytes_total > 0 THEN p.bytes_processed ELSE p.tuples_processed END,
        nullif(p.bytes_total, 0), NULL::int, NULL::bool
   FROM pg_stat_progress_copy p WHERE p.datid = (SELECT oid FROM db)"
                .to_string(),
        );
    }
    format!(
        "WITH db AS MATERIALIZED (SELECT oid FROM pg_database WHERE datname = current_database()),
     p AS ({})
SELECT p.pid AS pid, p.command AS command,
       CASE WHEN p.relid <> 0 THEN p.relid::regclass::text END AS relation,
       p.phase AS phase, p.done::int8 AS done, p.total::int8 AS total,
       p.locker_pid AS locker_pid, coalesce(p.byval_key, false) AS byval_key,
       nullif(a.application_name, '') AS locker_application,
       a.usename::text AS locker_user,
       a.state AS locker_state,
       date_part('epoch', now() - a.xact_start) AS locker_xact_age_s,
       left(a.query, 2000) AS locker_query
  FROM p
  LEFT JOIN pg_stat_activity a ON a.pid = p.locker_pid
 WHERE p.pid <> pg_backend_pid()
 ORDER BY p.pid",
        parts.join("\n UNION ALL\n ")
    )
}

/// Reads the progress views (prepared `statement` of [`progress_sql`]);
/// `eta_s` is left for [`super::eta::Tracker`] to fill.
pub async fn read(
    client: &Client,
    statement: &tokio_postgres::Statement,
) -> Result<Vec<CommandProgress>, tokio_postgres::Error> {
    let rows = client.query(statement, &[]).await?;
    rows.iter().map(row).collect()
}

fn row(r: &tokio_postgres::Row) -> Result<CommandProgress, tokio_postgres::Error> {
    let done: Option<i64> = r.try_get("done")?;
    let total: Option<i64> = r.try_get("total")?;
    let percent = match (done, total) {
        (Some(d), Some(t)) if t > 0 => Some(((d as f64 / t as f64) * 100.0).clamp(0.0, 100.0)),
        _ => None,
    };
    let locker = match r.try_get::<_, Option<i32>>("locker_pid")? {
        Some(pid) => Some(Locker {
            pid,
            application: r
                .try_get::<_, Option<String>>("locker_application")?
                .as_deref()
                .map(shown),
            user: r
                .try_get::<_, Option<String>>("locker_user")?
                .as_deref()
                .map(shown),
            state: r
                .try_get::<_, Option<String>>("locker_state")?
                .as_deref()
                .map(shown),
            xact_age_s: r.try_get("locker_xact_age_s")?,
            query: shown(
                &r.try_get::<_, Option<String>>("locker_query")?
                    .unwrap_or_default(),
            ),
        }),
        None => None,
    };
    Ok(CommandProgress {
        pid: r.try_get("pid")?,
        command: shown(
            &r.try_get::<_, Option<String>>("command")?
                .unwrap_or_default(),
        ),
        relation: r
            .try_get::<_, Option<String>>("relation")?
            .as_deref()
            .map(shown),
        phase: shown(&r.try_get::<_, Option<String>>("phase")?.unwrap_or_default()),
        done,
        total,
        percent,
        eta_s: None,
        locker,
        byval_key: r.try_get("byval_key")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(state: &str, query: &str, backend_type: &str) -> Backend {
        Backend {
            pid: 1,
            backend_type: backend_type.into(),
            user: None,
            application: None,
            client: "local".into(),
            state: state.into(),
            wait_event_type: None,
            wait_event: None,
            xact_age_s: None,
            query_age_s: None,
            state_age_s: None,
            query: query.into(),
            blocked_by: Vec::new(),
            waiting_for: None,
        }
    }

    #[test]
    fn only_a_statement_that_reports_progress_costs_the_second_query() {
        let c = "client backend";
        assert!(!worth_reading(&[backend(
            "active",
            "UPDATE t SET a = 1",
            c
        )]));
        assert!(!worth_reading(&[backend(
            "idle in transaction",
            "create index i on t (a)",
            c
        )]));
        assert!(worth_reading(&[backend(
            "active",
            "create index concurrently i on t (a)",
            c
        )]));
        assert!(worth_reading(&[backend("active", "VACUUM t", c)]));
        assert!(worth_reading(&[backend("idle", "", "autovacuum worker")]));
    }

    #[test]
    fn the_query_reads_only_the_views_the_server_has() {
        let v12 = progress_sql(120000);
        assert!(!v12.contains("pg_stat_progress_analyze"));
        assert!(!v12.contains("pg_stat_progress_copy"));
        let v13 = progress_sql(130000);
        assert!(v13.contains("pg_stat_progress_analyze"));
        assert!(!v13.contains("pg_stat_progress_copy"));
        assert!(progress_sql(150000).contains("pg_stat_progress_copy"));
    }
}
