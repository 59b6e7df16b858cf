//! The one query per poll, prepared once per connection.
//!
//! What it costs the server, measured (docs/benchmarks.md, issue 13):
//! `pg_stat_get_activity()` builds a row per backend whatever is selected,
//! and `pg_lock_status()` (the `pg_locks` view) walks the whole lock table
//! and every backend's fast-path slots, sized by `max_connections`, not by
//! the locks held. So the poll calls each at most once, never per row:
//!
//! - `pg_stat_activity`'s function is read directly, without the view's
//!   joins to `pg_database` and `pg_authid` for every backend of the server
//!   (the user name is looked up only for the rows kept);
//! - `pg_blocking_pids()` takes the lock manager's partition locks, so it is
//!   called only for backends that wait on a heavyweight lock
//!   (`wait_event_type = 'Lock'`);
//! - `pg_locks` is read into a materialized CTE that only the row of a
//!   waiting backend whose wait is new scans: with nobody waiting, or every
//!   wait already known (`$1`, see [`super::waits`]), it is never read. A
//!   backend waits for one lock at a time, so each waiter has exactly one
//!   row there that is not granted (Monitoring Database Activity,
//!   `pg_locks`).
//! - ages are `date_part` (float8); `extract` returns numeric since
//!   PostgreSQL 14, which is slower to compute and to send.
//!
//! Idle client sessions are not returned (most of a busy server's sessions
//! are idle); `db_backends` counts every backend of the database from the
//! same snapshot of the server's backend table, and every backend of it
//! that is not a client session is returned, idle or not, so that the
//! summary counts client sessions exactly.

/// The poll's one parameter: the keys of the waits already known.
pub const KNOWN_WAITS: &str = "$1::text[]";

/// Columns, read by name: db_backends, now_s, pid, backend_type, user_name,
/// application, client_addr, state, wait_event_type, wait_event, xact_age_s,
/// query_age_s, state_age_s, query, blocked_by, wait_key, wait_mode,
/// wait_locktype, wait_relation, wait_start_s, wait_s. A wait's key is the
/// waiter's pid, the start of its statement and the lock type it waits on.
pub fn poll_sql(server_version_num: i32) -> String {
    // pg_locks.waitstart exists from PostgreSQL 14; before it, the time since
    // the backend's last state change is the best estimate of its wait.
    let wait_start = if server_version_num >= 140000 {
        "coalesce(w.waitstart, s.state_change)"
    } else {
        "s.state_change"
    };
    let waitstart_column = if server_version_num >= 140000 {
        ", waitstart"
    } else {
        ""
    };
    let waitstart_inner = if server_version_num >= 140000 {
        ", w.waitstart"
    } else {
        ""
    };
    let known = KNOWN_WAITS;
    format!(
        "WITH waits AS MATERIALIZED (
    SELECT pid, mode, locktype, relation{waitstart_column} FROM pg_locks WHERE NOT granted
), db AS MATERIALIZED (
    SELECT oid FROM pg_database WHERE datname = current_database()
)
SELECT (SELECT pg_stat_get_db_numbackends(oid) FROM db)::int4 AS db_backends,
       date_part('epoch', now()) AS now_s,
       s.pid AS pid,
       s.backend_type AS backend_type,
       pg_get_userbyid(s.usesysid)::text AS user_name,
       s.application_name AS application,
       s.client_addr AS client_addr,
       coalesce(s.state, '') AS state,
       s.wait_event_type AS wait_event_type,
       s.wait_event AS wait_event,
       date_part('epoch', now() - s.xact_start) AS xact_age_s,
       date_part('epoch', now() - s.query_start) AS query_age_s,
       date_part('epoch', now() - s.state_change) AS state_age_s,
       left(s.query, 2000) AS query,
       CASE WHEN s.wait_event_type = 'Lock' THEN pg_blocking_pids(s.pid) END AS blocked_by,
       k.wait_key AS wait_key,
       w.mode AS wait_mode,
       w.locktype AS wait_locktype,
       w.relation::regclass::text AS wait_relation,
       CASE WHEN w.mode IS NOT NULL THEN date_part('epoch', {wait_start}) END AS wait_start_s,
       CASE WHEN w.mode IS NOT NULL THEN date_part('epoch', now() - {wait_start}) END AS wait_s
  FROM pg_stat_get_activity(NULL) s
 CROSS JOIN LATERAL (
       SELECT CASE WHEN s.wait_event_type = 'Lock'
                   THEN s.pid::text || '/' || coalesce(s.query_start::text, '') || '/'
                        || coalesce(s.wait_event, '') END AS wait_key
  ) k
  LEFT JOIN LATERAL (
       SELECT w.mode, w.locktype, w.relation{waitstart_inner} FROM waits w
        WHERE s.wait_event_type = 'Lock' AND NOT (k.wait_key = ANY ({known}))
          AND w.pid = s.pid
        LIMIT 1
  ) w ON true
 WHERE s.datid = (SELECT oid FROM db)
   AND s.pid <> pg_backend_pid()
   AND (s.state IS DISTINCT FROM 'idle' OR s.xact_start IS NOT NULL
        OR s.backend_type IS DISTINCT FROM 'client backend')"
    )
}

/// Sessions holding locks on `$1` (a relation name in SQL form, read by
/// to_regclass as a statement would name it) that conflict with `$2`, with
/// their transaction's age: what the pre-step guard reports.
pub const HOLDERS_SQL: &str = "
SELECT DISTINCT ON (a.pid)
       a.pid AS pid,
       a.backend_type AS backend_type,
       a.usename::text AS user_name,
       coalesce(a.application_name, '') AS application,
       coalesce(host(a.client_addr), 'local') AS client,
       coalesce(a.state, '') AS state,
       a.wait_event_type AS wait_event_type,
       a.wait_event AS wait_event,
       l.mode AS mode,
       date_part('epoch', now() - a.xact_start) AS xact_age_s,
       left(a.query, 2000) AS query
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = to_regclass($1)
   AND l.mode = ANY($2)
   AND l.pid <> pg_backend_pid()
 ORDER BY a.pid";

/// Who backend `$1` is: the audit record of a signal names its target.
pub const TARGET_SQL: &str = "
SELECT usename::text AS user_name,
       nullif(application_name, '') AS application,
       coalesce(host(client_addr), 'local') AS client,
       backend_type AS backend_type
  FROM pg_stat_activity
 WHERE pid = $1";
