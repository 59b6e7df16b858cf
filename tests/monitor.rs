//! The monitor against a real server: a blocking chain as a tree, long
//! transactions, many backends, the pre-step blocker guard, cancel/terminate.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, column, connect, eventually, until_sql};
use pgpilot::monitor::{Feed, Monitor, News, Signal, Watcher, signal_backend};
use pgpilot::pg::ConnSpec;
use pgpilot::sandbox::{Sandbox, SandboxOptions};

async fn backend_pid(c: &tokio_postgres::Client) -> i64 {
    column(c, "SELECT pg_backend_pid()").await[0]
        .parse()
        .unwrap()
}

async fn wait_until_waiting(observer: &tokio_postgres::Client, n: usize) {
    until_sql(
        observer,
        &format!("{n} session(s) waiting for a lock"),
        Duration::from_secs(10),
        &format!("SELECT count(*) >= {n} FROM pg_stat_activity WHERE wait_event_type = 'Lock'"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_session_chain_is_a_tree_and_the_holder_a_long_transaction() {
    let lab = Lab::new();
    let observer = lab.database("chain", &[]).await;
    observer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let db = lab.conninfo("chain");
    let a = connect(&db).await;
    let b = connect(&db).await;
    let c = connect(&db).await;
    let (pa, pb, pc) = (
        backend_pid(&a).await,
        backend_pid(&b).await,
        backend_pid(&c).await,
    );
    a.batch_execute("BEGIN; SELECT * FROM t").await.unwrap();
    let b_task =
        tokio::spawn(async move { b.batch_execute("ALTER TABLE t ADD COLUMN x int").await });
    wait_until_waiting(&observer, 1).await;
    let c_task = tokio::spawn(async move { c.batch_execute("SELECT * FROM t").await });
    wait_until_waiting(&observer, 2).await;
    // The snapshot below must see the holder's transaction older than the
    // 1 s threshold and b's wait over 0.5 s, as the server measures them.
    until_sql(
        &observer,
        "the holder's transaction past 1 s and b's wait past 0.5 s",
        Duration::from_secs(10),
        &format!(
            "SELECT (SELECT clock_timestamp() - xact_start > interval '1.1 s' \
                       FROM pg_stat_activity WHERE pid = {pa}) \
                AND (SELECT clock_timestamp() - coalesce(l.waitstart, a.state_change) > interval '0.6 s' \
                       FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted \
                      WHERE a.pid = {pb} LIMIT 1)"
        ),
    )
    .await;

    let ran = lab.run(&[
        "monitor",
        "--db",
        &db,
        "--once",
        "--format",
        "json",
        "--long-transaction",
        "1s",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    let snap: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    assert!(snap["at"].is_string());
    let blocking = snap["blocking"].as_array().unwrap();
    let by_pid = |p: i64| {
        blocking
            .iter()
            .find(|w| w["pid"] == p)
            .unwrap_or_else(|| panic!("{p} not in {blocking:?}"))
    };
    assert_eq!(by_pid(pb)["blocked_by"], serde_json::json!([pa]));
    assert_eq!(by_pid(pb)["mode"], "AccessExclusiveLock");
    assert_eq!(by_pid(pb)["relation"], "t");
    assert!(by_pid(pb)["wait_s"].as_f64().unwrap() > 0.5);
    assert_eq!(by_pid(pc)["blocked_by"], serde_json::json!([pb]));
    assert_eq!(by_pid(pc)["mode"], "AccessShareLock");
    let tree: Vec<(i64, u64, u64)> = snap["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["pid"].as_i64().unwrap(),
                n["depth"].as_u64().unwrap(),
                n["queued_behind"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tree, [(pa, 0, 2), (pb, 1, 1), (pc, 2, 0)]);
    let long = snap["long_transactions"].as_array().unwrap();
    let holder = long
        .iter()
        .find(|t| t["pid"] == pa)
        .expect("the holder is a long transaction");
    assert_eq!(holder["state"], "idle in transaction");
    assert!(holder["xact_age_s"].as_f64().unwrap() >= 1.0);
    let me = snap["monitor_pid"].as_i64().unwrap();
    assert!(
        !ran.stdout.contains(&format!("\"pid\": {me},")),
        "the monitor lists itself"
    );

    a.batch_execute("COMMIT").await.unwrap();
    b_task.await.unwrap().unwrap();
    c_task.await.unwrap().unwrap();

    let text = lab.run(&["monitor", "--db", &db, "--once"]);
    assert!(
        text.stdout.contains("no session waits for a lock"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_of_200_backends_stays_within_its_statement_timeout() {
    let sb = Sandbox::start_with(SandboxOptions::default().max_connections(260)).expect("sandbox");
    let conninfo = sb.conninfo("postgres");
    let setup = connect(&conninfo).await;
    setup
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..200 {
        let c = connect(&conninfo).await;
        if i % 4 == 0 {
            c.batch_execute("BEGIN; SELECT * FROM t").await.unwrap();
        }
        clients.push(c);
    }
    let (client, conn) = tokio_postgres::connect(
        &format!("{conninfo} application_name=pgpilot-monitor"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let monitor = Monitor::new(client, Duration::from_secs(0)).await.unwrap();
    for _ in 0..5 {
        // The session's statement_timeout is 500 ms: a poll that returns made it.
        let snap = monitor.poll().await.expect("poll within statement_timeout");
        assert!(snap.summary.sessions >= 50, "{:?}", snap.summary);
        assert_eq!(snap.summary.idle_in_transaction, 50);
    }
}

const GUARDED: &str = r#"
[runbook]
id = "guarded"
title = "Pre-step guard"

[settings]
lock_timeout = "300ms"
lock_retries = 0
on_blockers = "proceed"

[[phase]]
id = "p"

  [[phase.step]]
  id = "alter-quiet"
  kind = "change"
  sql = "ALTER TABLE quiet ADD COLUMN x int"
  rollback = "ALTER TABLE quiet DROP COLUMN x"

  [[phase.step]]
  id = "alter-busy"
  kind = "change"
  sql = "ALTER TABLE busy ADD COLUMN x int"
  rollback = "ALTER TABLE busy DROP COLUMN x"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_step_guard_names_the_holder_of_a_table_the_step_locks_and_only_that() {
    let lab = Lab::new();
    let client = lab.database("guard", &[]).await;
    client
        .batch_execute("CREATE TABLE quiet (id int); CREATE TABLE busy (id int)")
        .await
        .unwrap();
    let db = lab.conninfo("guard");
    let reader = connect(&db).await;
    let reader_pid = column(&reader, "SELECT pg_backend_pid()").await[0].clone();
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM busy")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("guarded.toml");
    std::fs::write(&rb, GUARDED).unwrap();
    let ran = lab.run(&["run", rb.to_str().unwrap(), "--headless", "--db", &db]);
    // proceed: the step tries, waits at most lock_timeout, and fails without retries.
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stdout.contains("[alter-quiet] applied"), "{ran}");
    assert!(
        !ran.stdout.contains("[alter-quiet] 1 session(s) hold locks"),
        "{ran}"
    );
    assert!(
        ran.stdout
            .contains("[alter-busy] 1 session(s) hold locks this step needs:"),
        "{ran}"
    );
    assert!(
        ran.stdout.contains(&format!("pid {reader_pid} (postgres@"))
            && ran.stdout.contains("AccessShareLock on busy"),
        "{ran}"
    );
    assert!(ran.stdout.contains("55P03"), "{ran}");
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"action\":\"blockers\"") && l.contains("\"outcome\":\"proceed\"")), "{audit}");

    // wait: the step waits for the holder to go, then applies.
    std::fs::write(
        &rb,
        GUARDED.replace("on_blockers = \"proceed\"", "on_blockers = \"wait\""),
    )
    .unwrap();
    // The holder goes only once pgpilot has found it and decided to wait
    // (its audit record, written locally before anything else).
    let audit = lab.audit_file();
    let release = tokio::spawn(async move {
        eventually(
            "pgpilot to record that it waits for the holder",
            Duration::from_secs(30),
            || async {
                std::fs::read_to_string(&audit).is_ok_and(|text| {
                    text.lines().any(|l| {
                        l.contains("\"action\":\"blockers\"") && l.contains("\"outcome\":\"wait\"")
                    })
                })
            },
        )
        .await;
        reader.batch_execute("COMMIT").await.unwrap();
    });
    let ran = lab.run(&["run", rb.to_str().unwrap(), "--headless", "--db", &db]);
    release.await.unwrap();
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout.contains("the blockers are gone") && ran.stdout.contains("[alter-busy] applied"),
        "{ran}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_terminate_reach_other_backends_but_never_pgpilots_own() {
    let lab = Lab::new();
    let admin = lab.database("signals", &[]).await;
    let db = lab.conninfo("signals");
    let victim = connect(&db).await;
    let victim_pid: i32 = column(&victim, "SELECT pg_backend_pid()").await[0]
        .parse()
        .unwrap();
    let sleeper = tokio::spawn(async move {
        let r = victim.batch_execute("SELECT pg_sleep(30)").await;
        (victim, r)
    });
    until_sql(
        &admin,
        "the victim to be in pg_sleep",
        Duration::from_secs(10),
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
              WHERE pid = {victim_pid} AND state = 'active' AND query LIKE 'SELECT pg_sleep%')"
        ),
    )
    .await;
    assert_eq!(
        signal_backend(&admin, victim_pid, Signal::Cancel, &[]).await,
        Ok(true)
    );
    let (victim, r) = sleeper.await.unwrap();
    assert_eq!(
        r.unwrap_err().code().map(|c| c.code().to_string()),
        Some("57014".into())
    );
    assert_eq!(
        signal_backend(&admin, victim_pid, Signal::Terminate, &[]).await,
        Ok(true)
    );
    eventually(
        "the terminated victim's connection to close",
        Duration::from_secs(10),
        || async { victim.is_closed() },
    )
    .await;
    let own: i32 = column(&admin, "SELECT pg_backend_pid()").await[0]
        .parse()
        .unwrap();
    assert!(
        signal_backend(&admin, own, Signal::Terminate, &[own])
            .await
            .is_err()
    );
}

/// A child process's stdout and stderr, collected by reader threads as they
/// arrive, so the test can poll them with a deadline.
struct Watched {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watched {
    fn spawn(mut command: std::process::Command) -> Watched {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgpilot");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut t = sink.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Watched {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls stdout until `found` says yes (given stdout), for up to `limit`.
    async fn wait_for(&self, what: &str, limit: Duration, found: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if found(&self.stdout()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_reconnects_after_its_backend_is_terminated_and_says_so_once() {
    let lab = Lab::new();
    let observer = lab.database("reconnect", &[]).await;
    observer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let db = lab.conninfo("reconnect");
    let admin = connect(&lab.conninfo("postgres")).await;
    let holder = connect(&db).await;
    let waiter = connect(&db).await;
    let holder_pid = backend_pid(&holder).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM t")
        .await
        .unwrap();
    let waiting =
        tokio::spawn(async move { waiter.batch_execute("ALTER TABLE t ADD COLUMN x int").await });
    wait_until_waiting(&observer, 1).await;

    let monitor = Watched::spawn(lab.command(&["monitor", "--db", &db, "--interval", "250ms"]));
    let chain_line = format!("  {holder_pid} idle in transaction");
    monitor
        .wait_for("the blocking chain", Duration::from_secs(20), |out| {
            out.contains(&chain_line)
        })
        .await;

    // No new connection to the database may succeed for now: the monitor
    // must go on trying, with backoff, and say so on every line it prints.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            lab.db_ident("reconnect")
        ))
        .await
        .unwrap();
    let killed = column(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE application_name = 'pgpilot-monitor' AND datname = '{}'",
            lab.db_name("reconnect")
        ),
    )
    .await;
    assert_eq!(killed, ["t"], "one monitor backend to terminate");
    monitor
        .wait_for("the disconnected line", Duration::from_secs(20), |out| {
            out.contains("monitor disconnected — reconnecting (attempt 1)")
        })
        .await;
    monitor
        .wait_for("a third attempt", Duration::from_secs(20), |out| {
            out.contains("monitor disconnected — reconnecting (attempt 3)")
        })
        .await;
    let lost = |err: &str| err.matches("monitor lost its connection").count();
    assert_eq!(lost(&monitor.stderr()), 1, "{}", monitor.stderr());
    assert!(
        !monitor.stderr().contains("poll failed"),
        "{}",
        monitor.stderr()
    );

    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            lab.db_ident("reconnect")
        ))
        .await
        .unwrap();
    let disconnected_at = monitor
        .stdout()
        .rfind("monitor disconnected")
        .expect("printed above");
    monitor
        .wait_for(
            "the chain again, after reconnecting",
            Duration::from_secs(20),
            |out| out[disconnected_at..].contains(&chain_line),
        )
        .await;
    let err = monitor.stderr();
    assert_eq!(lost(&err), 1, "the disconnect is logged once:\n{err}");
    assert_eq!(
        err.matches("monitor reconnected").count(),
        1,
        "the reconnect is logged once:\n{err}"
    );
    let monitors = column(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE application_name = 'pgpilot-monitor' AND datname = '{}'",
            lab.db_name("reconnect")
        ),
    )
    .await;
    assert_eq!(monitors, ["1"]);

    drop(monitor);
    holder.batch_execute("COMMIT").await.unwrap();
    waiting.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_the_executor_is_still_marked_and_signals_still_guard_it() {
    let lab = Lab::new();
    let observer = lab.database("remark", &[]).await;
    observer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let db = lab.conninfo("remark");
    let holder = connect(&db).await;
    let executor = connect(&db).await;
    let holder_pid = backend_pid(&holder).await as i32;
    let executor_pid = backend_pid(&executor).await as i32;
    holder
        .batch_execute("BEGIN; SELECT * FROM t")
        .await
        .unwrap();
    let altering = tokio::spawn(async move {
        executor
            .batch_execute("ALTER TABLE t ADD COLUMN x int")
            .await
    });
    wait_until_waiting(&observer, 1).await;

    let spec = ConnSpec::resolve(Some(&db)).expect("resolve");
    let mut watcher = Watcher::connect(&spec, Duration::from_secs(300), Duration::from_millis(250))
        .await
        .expect("monitor connects");
    watcher.set_executor(Some(executor_pid));
    let first_pid = watcher.pid().expect("connected");
    let killed = column(
        &observer,
        &format!("SELECT pg_terminate_backend({first_pid})"),
    )
    .await;
    assert_eq!(killed, ["t"]);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut news = Vec::new();
    let snapshot = loop {
        assert!(Instant::now() < deadline, "no reconnect: {seen:?} {news:?}");
        tokio::time::sleep_until(watcher.due()).await;
        let (feed, n) = watcher.next().await;
        news.extend(n);
        match feed {
            Feed::Snapshot(s) if seen.contains(&"disconnected") => break s,
            Feed::Snapshot(_) => seen.push("snapshot"),
            Feed::Disconnected { attempt, .. } => {
                assert_eq!(attempt, 1, "the first attempt succeeds");
                seen.push("disconnected")
            }
            Feed::PollFailed { error, .. } => panic!("poll failed on a live connection: {error}"),
        }
    };
    assert!(
        matches!(
            news.as_slice(),
            [News::Lost { .. }, News::Reconnected { attempts: 1, .. }]
        ),
        "{news:?}"
    );
    let new_pid = watcher.pid().expect("reconnected");
    assert_ne!(new_pid, first_pid);
    assert_eq!(snapshot.monitor_pid, new_pid);
    let marked = snapshot.executor.as_ref().expect("the executor is marked");
    assert_eq!(marked.pid, executor_pid);
    assert_eq!(marked.blocked_by, [holder_pid]);
    assert!(marked.waiting_for.is_some());

    // The signal path runs on the new connection, and still refuses
    // pgpilot's own sessions, the new monitor pid included.
    for own in [executor_pid, new_pid] {
        let refused = watcher.signal(own, Signal::Terminate).await;
        assert!(refused.is_err(), "{own}: {refused:?}");
    }
    assert_eq!(
        watcher.signal(holder_pid, Signal::Terminate).await,
        Ok(true)
    );
    altering
        .await
        .unwrap()
        .expect("the ALTER runs once the holder is gone");
}

/// The signal records (`cancel`, `terminate`) of the local log in `dir`:
/// (action, outcome, sql).
fn signal_records(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON record"))
        .filter(|r| r["action"] == "terminate" || r["action"] == "cancel")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_string(),
                r["outcome"].as_str().unwrap_or("").to_string(),
                r["sql"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_is_sent_only_after_its_audit_record_is_written() {
    use pgpilot::audit::record::Context;
    use pgpilot::monitor::{SignalAudit, SignalOutcome, SignalReport, send_audited};

    let lab = Lab::new();
    let admin = lab.database("audited_signals", &[]).await;
    let db = lab.conninfo("audited_signals");
    let victim = connect(&db).await;
    let victim_pid = backend_pid(&victim).await as i32;
    let spec = ConnSpec::resolve(Some(&db)).expect("resolve");
    let watcher = Watcher::connect(&spec, Duration::from_secs(300), Duration::from_secs(1))
        .await
        .expect("monitor connects");
    let ctx = Context {
        session: "signals".into(),
        operator: "tester".into(),
        ..Default::default()
    };

    // A link planted at the log's path: O_NOFOLLOW refuses it, so the
    // request cannot be recorded, and nothing is sent.
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::NamedTempFile::new().expect("link target");
    let log = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(elsewhere.path(), &log).expect("plant the link");
    let mut audit = SignalAudit::in_dir(dir.path(), ctx);
    let report = send_audited(&watcher, &mut audit, victim_pid, Signal::Terminate).await;
    let SignalReport::NotSent { reason, .. } = &report else {
        panic!("sent without an audit record: {report:?}");
    };
    assert!(
        reason.contains("audit.jsonl") && reason.contains("symbolic link"),
        "the reason names the file and the remedy: {reason}"
    );
    assert!(report.is_bad());
    assert!(
        report.to_string().starts_with(&format!(
            "pg_terminate_backend({victim_pid}) not sent: its audit record cannot be written"
        )),
        "{report}"
    );
    // The backend survived: its session still answers, and is still listed.
    assert_eq!(column(&victim, "SELECT 1").await, ["1"]);
    assert_eq!(
        column(
            &admin,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {victim_pid}")
        )
        .await,
        ["1"]
    );
    assert_eq!(
        std::fs::read(elsewhere.path()).expect("link target").len(),
        0,
        "nothing was written through the link"
    );

    // The link removed, the same audit opens the log at the next signal:
    // the request is recorded, then sent, then its outcome recorded.
    std::fs::remove_file(&log).expect("remove the link");
    let report = send_audited(&watcher, &mut audit, victim_pid, Signal::Terminate).await;
    assert_eq!(
        report,
        SignalReport::Tried {
            pid: victim_pid,
            signal: Signal::Terminate,
            outcome: SignalOutcome::Sent,
            unrecorded: None,
        }
    );
    eventually(
        "the terminated victim's connection to close",
        Duration::from_secs(10),
        || async { victim.is_closed() },
    )
    .await;
    // Gone now: the same words as the run screen records.
    let report = send_audited(&watcher, &mut audit, victim_pid, Signal::Cancel).await;
    assert!(
        matches!(
            &report,
            SignalReport::Tried {
                outcome: SignalOutcome::NoSuchBackend,
                unrecorded: None,
                ..
            }
        ),
        "{report:?}"
    );
    let terminate = format!("SELECT pg_terminate_backend({victim_pid})");
    let cancel = format!("SELECT pg_cancel_backend({victim_pid})");
    let t = || "terminate".to_string();
    let c = || "cancel".to_string();
    let expected = vec![
        (t(), "requested".to_string(), terminate.clone()),
        (t(), "done".to_string(), terminate),
        (c(), "requested".to_string(), cancel.clone()),
        (c(), "no such backend".to_string(), cancel),
    ];
    assert_eq!(signal_records(dir.path()), expected);
    // The database copies went out on the monitor's connection.
    let copied = column(
        &admin,
        "SELECT action || ' ' || outcome || ' ' || sql FROM pgpilot.audit_log \
          WHERE action IN ('terminate', 'cancel') ORDER BY seq",
    )
    .await;
    let expected: Vec<String> = expected
        .iter()
        .map(|(a, o, s)| format!("{a} {o} {s}"))
        .collect();
    assert_eq!(copied, expected);
}
