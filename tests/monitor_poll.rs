//! Edge cases of the rewritten poll (issue 13, item 10): it reads `pg_locks`
//! only for backends that wait on a lock, one row per waiter, and only for
//! waits it has not seen; these are the waits that are not on a relation, a
//! poll with nobody waiting, and a second poll that knows the waits.

mod common;

use std::time::Duration;

use common::{Lab, column, connect, until_sql};
use pgpilot::monitor::{Monitor, NOT_LISTED};

async fn monitor(db: &str) -> Monitor {
    let (client, conn) = tokio_postgres::connect(
        &format!("{db} application_name=pgpilot-monitor"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("monitor connects");
    tokio::spawn(conn);
    Monitor::new(client, Duration::from_secs(0))
        .await
        .expect("monitor session")
}

async fn pid(c: &tokio_postgres::Client) -> i32 {
    column(c, "SELECT pg_backend_pid()").await[0]
        .parse()
        .expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_wait_and_an_advisory_lock_wait_are_in_the_tree() {
    let lab = Lab::new();
    let observer = lab.database("edges", &[]).await;
    observer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .expect("table");
    let db = lab.conninfo("edges");
    let m = monitor(&db).await;

    // Nobody waits: no pg_locks row is needed, and none is invented.
    let snap = m.poll().await.expect("poll");
    assert!(snap.tree.is_empty() && snap.blocking.is_empty(), "{snap:?}");

    // A row lock: the waiter waits for the holder's transaction id.
    let (a, b) = (connect(&db).await, connect(&db).await);
    let (pa, pb) = (pid(&a).await, pid(&b).await);
    a.batch_execute("BEGIN; UPDATE t SET id = 2 WHERE id = 1")
        .await
        .expect("row lock");
    let updating = tokio::spawn(async move {
        let r = b.batch_execute("UPDATE t SET id = 3 WHERE id = 1").await;
        (b, r)
    });
    // A session-level advisory lock, held by a session that is idle
    // (no transaction) while another waits for it.
    let (c, d) = (connect(&db).await, connect(&db).await);
    let (pc, pd) = (pid(&c).await, pid(&d).await);
    c.batch_execute("SELECT pg_advisory_lock(42)")
        .await
        .expect("advisory lock");
    let advising = tokio::spawn(async move {
        let r = d.batch_execute("SELECT pg_advisory_lock(42)").await;
        (d, r)
    });
    until_sql(
        &observer,
        "both waiters to wait",
        Duration::from_secs(10),
        "SELECT count(*) = 2 FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
    )
    .await;

    let snap = m.poll().await.expect("poll");
    let waiter = |p: i32| {
        snap.blocking
            .iter()
            .find(|w| w.pid == p)
            .unwrap_or_else(|| panic!("{p} not waiting in {snap:?}"))
    };
    let row = waiter(pb);
    assert_eq!(row.blocked_by, [pa]);
    assert_eq!(row.mode.as_deref(), Some("ShareLock"));
    assert_eq!(row.relation, None);
    assert_eq!(row.name.wait_event.as_deref(), Some("transactionid"));
    let advisory = waiter(pd);
    assert_eq!(advisory.blocked_by, [pc]);
    assert_eq!(advisory.mode.as_deref(), Some("ExclusiveLock"));
    assert_eq!(advisory.name.wait_event.as_deref(), Some("advisory"));
    let node = |p: i32| {
        snap.tree
            .iter()
            .find(|n| n.pid == p)
            .unwrap_or_else(|| panic!("{p} not in the tree {:?}", snap.tree))
    };
    assert_eq!(node(pa).state, "idle in transaction");
    // An idle session is not read by the poll (most sessions are idle):
    // the tree says so rather than showing nothing or a wrong state.
    assert_eq!(node(pc).state, NOT_LISTED);
    assert_eq!(node(pd).parent, Some(pc));
    assert_eq!(snap.summary.waiting, 2);

    // The next poll knows both waits and does not read pg_locks for them:
    // it shows the same locks, their waits older.
    assert!(
        !m.sql_as_run(true).contains("ARRAY[]"),
        "the waits are known: {}",
        m.sql_as_run(true)
    );
    let again = m.poll().await.expect("poll");
    for w in &snap.blocking {
        let same = again
            .blocking
            .iter()
            .find(|x| x.pid == w.pid)
            .unwrap_or_else(|| panic!("{} not waiting any more: {again:?}", w.pid));
        assert_eq!((&same.mode, &same.relation), (&w.mode, &w.relation));
        assert!(same.wait_s >= w.wait_s, "{same:?} after {w:?}");
    }

    a.batch_execute("ROLLBACK").await.expect("release row");
    c.batch_execute("SELECT pg_advisory_unlock(42)")
        .await
        .expect("release advisory");
    let (_b, r) = updating.await.expect("task");
    r.expect("the update ran");
    let (_d, r) = advising.await.expect("task");
    r.expect("the advisory lock was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_querys_workers_are_listed_but_not_counted_as_sessions() {
    let lab = Lab::new();
    let observer = lab.database("parallel", &[]).await;
    observer
        .batch_execute(
            "CREATE TABLE big AS SELECT g FROM generate_series(1, 100000) g; ANALYZE big",
        )
        .await
        .expect("table");
    let db = lab.conninfo("parallel");
    let runner = connect(&db).await;
    let runner_pid = pid(&runner).await;
    runner
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; \
             SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0",
        )
        .await
        .expect("parallel settings");
    let running = tokio::spawn(async move {
        let _ = runner
            .batch_execute("SELECT count(*) FROM big WHERE pg_sleep(0.001) IS NOT NULL")
            .await;
        runner
    });
    until_sql(
        &observer,
        "the query's parallel workers to start",
        Duration::from_secs(20),
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'parallel worker'",
    )
    .await;
    let m = monitor(&db).await;
    let snap = m.poll().await.expect("poll");
    let workers: Vec<_> = snap
        .backends
        .iter()
        .filter(|b| b.backend_type == "parallel worker")
        .collect();
    assert!(!workers.is_empty(), "{:?}", snap.backends);
    // The observer and the runner; the monitor's own session and the
    // workers are not client sessions of the database.
    assert_eq!(snap.summary.sessions, 2, "{:?}", snap.summary);
    column(
        &observer,
        &format!("SELECT pg_cancel_backend({runner_pid})"),
    )
    .await;
    let _ = running.await;
}
