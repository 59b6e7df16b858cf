//! The one query per poll. `pg_blocking_pids()` takes every lock-manager
//! partition lock, so it is called only for backends that wait on a heavyweight
//! lock (wait_event_type = 'Lock'), never for every row.

/// Columns, read by name: pid, user_name, application, client, state,
/// wait_event_type, wait_event, xact_age_s, query_age_s, state_age_s, query,
/// blocked_by, wait_mode, wait_locktype, wait_relation, wait_s, database.
pub fn poll_sql(server_version_num: i32) -> String {
    // pg_locks.waitstart exists from PostgreSQL 14; before it, the time since
    // the backend's last state change is the best estimate of its wait.
    let wait_age = if server_version_num >= 140000 {
        "extract(epoch FROM now() - coalesce(w.waitstart, a.state_change))::float8"
    } else {
        "extract(epoch FROM now() - a.state_change)::float8"
    };
    format!(
        "WITH act AS (
    SELECT pid, usename, application_name, client_addr, state, wait_event_type, wait_event,
           xact_start, query_start, state_change, query, datname
      FROM pg_stat_activity
     WHERE pid <> pg_backend_pid()
       AND backend_type = 'client backend'
       AND datname = current_database()
       AND (state IS DISTINCT FROM 'idle' OR xact_start IS NOT NULL)
), blocked AS (
    SELECT pid, pg_blocking_pids(pid) AS blocked_by FROM act WHERE wait_event_type = 'Lock'
)
SELECT a.pid AS pid,
       a.usename::text AS user_name,
       a.application_name AS application,
       coalesce(host(a.client_addr), 'local') AS client,
       coalesce(a.state, '') AS state,
       a.wait_event_type AS wait_event_type,
       a.wait_event AS wait_event,
       extract(epoch FROM now() - a.xact_start)::float8 AS xact_age_s,
       extract(epoch FROM now() - a.query_start)::float8 AS query_age_s,
       extract(epoch FROM now() - a.state_change)::float8 AS state_age_s,
       left(a.query, 2000) AS query,
       coalesce(b.blocked_by, '{{}}'::int[]) AS blocked_by,
       w.mode AS wait_mode,
       w.locktype AS wait_locktype,
       w.relation::regclass::text AS wait_relation,
       CASE WHEN w.pid IS NOT NULL THEN {wait_age} END AS wait_s,
       a.datname::text AS database
  FROM act a
  LEFT JOIN blocked b ON b.pid = a.pid
  LEFT JOIN LATERAL (
       SELECT l.* FROM pg_locks l
        WHERE l.pid = a.pid AND NOT l.granted AND b.pid IS NOT NULL
        ORDER BY l.locktype = 'relation' DESC
        LIMIT 1
  ) w ON true"
    )
}

/// Sessions holding locks on `$1` (a relation name in SQL form, read by
/// to_regclass as a statement would name it) that conflict with `$2`, with
/// their transaction's age: what the pre-step guard reports.
pub const HOLDERS_SQL: &str = "
SELECT DISTINCT ON (a.pid)
       a.pid AS pid,
       a.usename::text AS user_name,
       coalesce(a.application_name, '') AS application,
       coalesce(host(a.client_addr), 'local') AS client,
       coalesce(a.state, '') AS state,
       l.mode AS mode,
       extract(epoch FROM now() - a.xact_start)::float8 AS xact_age_s,
       left(a.query, 2000) AS query
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = to_regclass($1)
   AND l.mode = ANY($2)
   AND l.pid <> pg_backend_pid()
 ORDER BY a.pid";
