//! The standbys a primary streams to, from `pg_stat_replication` and
//! `pg_replication_slots`: a second query, run only when asked (a runbook
//! with `max_replica_lag`, `monitor --once`), never by the plain poll.
//!
//! A standby that disconnected vanishes from pg_stat_replication; its
//! physical slot stays, inactive, its `restart_lsn` falling behind. A role
//! without pg_read_all_stats sees only the pid of each WAL sender (state
//! and lags NULL). Both count as over any limit: fail closed, saying why.

use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

/// One standby as the primary sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replica {
    /// application_name of its WAL receiver, or the slot's name.
    pub name: String,
    /// `streaming`, `catchup`, …; `disconnected` for an inactive slot.
    pub state: Option<String>,
    /// `replay_lag` in seconds (NULL once a caught-up standby is idle).
    pub replay_lag_s: Option<f64>,
    /// WAL bytes between the primary's current position and the standby's
    /// replay (or an inactive slot's restart_lsn).
    pub replay_lag_bytes: Option<f64>,
    pub slot: Option<String>,
    /// Why its lag cannot be known: it counts as over any limit.
    pub why_over: Option<String>,
}

const SQL: &str = "\
SELECT r.application_name AS name, r.state::text AS state, \
       extract(epoch FROM r.replay_lag)::float8 AS lag_s, \
       CASE WHEN pg_is_in_recovery() OR r.replay_lsn IS NULL THEN NULL \
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::float8 END AS lag_bytes, \
       s.slot_name::text AS slot \
  FROM pg_stat_replication r \
  LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid \
UNION ALL \
SELECT s.slot_name::text, 'disconnected', NULL, \
       CASE WHEN pg_is_in_recovery() OR s.restart_lsn IS NULL THEN NULL \
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::float8 END, \
       s.slot_name::text \
  FROM pg_replication_slots s \
 WHERE s.slot_type = 'physical' AND NOT s.active";

/// Every standby the primary streams to, and every inactive physical slot.
pub async fn replicas(client: &Client) -> Result<Vec<Replica>, tokio_postgres::Error> {
    let rows = client.query(SQL, &[]).await?;
    let mut out = Vec::new();
    for r in rows {
        let state: Option<String> = r.try_get("state")?;
        let slot: Option<String> = r.try_get("slot")?;
        let name: Option<String> = r.try_get("name")?;
        let name = name
            .filter(|n| !n.is_empty())
            .or_else(|| slot.clone())
            .unwrap_or_else(|| "(unnamed standby)".into());
        let why_over = match state.as_deref() {
            None => Some("its lag cannot be read: the role lacks pg_read_all_stats".to_string()),
            Some("disconnected") => {
                Some("its slot is inactive: the standby is disconnected".to_string())
            }
            Some(_) => None,
        };
        out.push(Replica {
            name: shown(&name),
            state: state.as_deref().map(shown),
            replay_lag_s: r.try_get("lag_s")?,
            replay_lag_bytes: r.try_get("lag_bytes")?,
            slot: slot.as_deref().map(shown),
            why_over,
        });
    }
    Ok(out)
}

fn shown(text: &str) -> String {
    crate::text::one_line(&crate::text::for_terminal(text)).to_string()
}

impl Replica {
    /// Why this standby is over `limit`, in words for the operator
    /// ("standby1 replays 12.0 s behind > 10 s"), or `None` within it.
    pub fn over(&self, limit: Duration) -> Option<String> {
        if let Some(why) = &self.why_over {
            return Some(format!("{}: {why}", self.name));
        }
        let lag = self.replay_lag_s?;
        (lag > limit.as_secs_f64()).then(|| {
            format!(
                "{} replays {lag:.1} s behind > {}",
                self.name,
                crate::runbook::format_duration(limit)
            )
        })
    }

    /// "standby1 0.2 s", "standby2 12.0 s ⚠" for the one-line panel.
    pub fn brief(&self, limit: Option<Duration>) -> String {
        let lag = match (&self.why_over, self.replay_lag_s) {
            (Some(_), _) => self.state.clone().unwrap_or_else(|| "lag unknown".into()),
            (None, Some(s)) => format!("{s:.1} s"),
            (None, None) => "0 s".into(),
        };
        let warn = match limit {
            Some(l) => self.over(l).is_some(),
            None => self.why_over.is_some(),
        };
        if warn {
            format!("{} {lag} ⚠", self.name)
        } else {
            format!("{} {lag}", self.name)
        }
    }
}

/// Between a backfill's batches and before a step: the first standby over
/// `limit`, said as the operator should read it; `None` when all are within.
pub async fn replica_lag_over(
    client: &Client,
    limit: Duration,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(replicas(client).await?.iter().find_map(|r| r.over(limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(lag: Option<f64>, why: Option<&str>) -> Replica {
        Replica {
            name: "standby1".into(),
            state: Some("streaming".into()),
            replay_lag_s: lag,
            replay_lag_bytes: Some(0.0),
            slot: None,
            why_over: why.map(str::to_string),
        }
    }

    #[test]
    fn over_the_limit_names_the_standby_and_both_figures() {
        let r = replica(Some(12.0), None);
        assert_eq!(
            r.over(Duration::from_secs(10)).as_deref(),
            Some("standby1 replays 12.0 s behind > 10s")
        );
        assert_eq!(r.over(Duration::from_secs(20)), None);
        assert!(r.brief(Some(Duration::from_secs(10))).ends_with('⚠'));
    }

    #[test]
    fn an_unknown_lag_is_over_any_limit() {
        let r = replica(
            None,
            Some("its slot is inactive: the standby is disconnected"),
        );
        assert!(r.over(Duration::from_secs(3600)).is_some());
        assert_eq!(replica(None, None).over(Duration::from_secs(1)), None);
    }
}
