//! Sessions named wherever the monitor shows them (issue 13, item 5): the
//! JSON and text of `monitor --once`, the pre-step guard's headless lines,
//! and the audit of a cancel or terminate; with the client-session count
//! and a poll time rounded to 0.1 ms (item 8).

mod common;

use std::time::Duration;

use common::{Lab, column, connect, eventually, until_sql};
use pgpilot::audit::record::Context;
use pgpilot::monitor::{Signal, SignalAudit, Watcher, send_audited};
use pgpilot::pg::ConnSpec;
use tokio_postgres::Client;

/// An application_name that tries to hide a password in the panels.
const SNEAKY_APP: &str = "etl password=hunter2";

async fn pid_of(c: &Client) -> i64 {
    column(c, "SELECT pg_backend_pid()").await[0]
        .parse()
        .expect("a pid")
}

/// A session of `db` named `application`.
async fn named(db: &str, application: &str) -> Client {
    let c = connect(db).await;
    c.batch_execute(&format!(
        "SET application_name = '{}'",
        application.replace('\'', "''")
    ))
    .await
    .expect("set application_name");
    c
}

/// `holder` (nightly-report) idle in a transaction that read `t`, and
/// `waiter` (the sneaky name) waiting to ALTER it: their pids, and the
/// sessions, kept open until the test ends.
async fn chain(lab: &Lab, name: &str) -> (i64, i64, Client, tokio::task::JoinHandle<()>) {
    let observer = lab.database(name, &[]).await;
    observer
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .expect("table");
    let db = lab.conninfo(name);
    let holder = named(&db, "nightly-report").await;
    let waiter = named(&db, SNEAKY_APP).await;
    let (ph, pw) = (pid_of(&holder).await, pid_of(&waiter).await);
    // A raw escape sequence in the holder's query text: it must reach no
    // output as a control character.
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM t /* \x1b[2J cleared */")
        .await
        .expect("holder");
    let waiting = tokio::spawn(async move {
        let _ = waiter.batch_execute("ALTER TABLE t ADD COLUMN x int").await;
        drop(holder);
    });
    until_sql(
        &observer,
        "the ALTER to wait",
        Duration::from_secs(10),
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
    )
    .await;
    (ph, pw, observer, waiting)
}

fn no_controls(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c == '\x1b' || c == '\u{9b}'),
        "{what} carries a raw escape:\n{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "{what} shows the password:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_once_names_every_session_in_its_tree_and_blocking_list() {
    let lab = Lab::new();
    let (ph, pw, _observer, keep) = chain(&lab, "names").await;
    let db = lab.conninfo("names");

    let ran = lab.run(&["monitor", "--db", &db, "--once", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran}");
    no_controls("monitor --once --format json", &ran.stdout);
    let snap: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    let node = |pid: i64| {
        snap["tree"]
            .as_array()
            .expect("tree")
            .iter()
            .find(|n| n["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} not in the tree: {snap}"))
            .clone()
    };
    let holder = node(ph);
    assert_eq!(holder["application"], "nightly-report");
    assert_eq!(holder["user"], "postgres");
    assert!(holder["client"].is_string(), "{holder}");
    assert_eq!(holder["backend_type"], "client backend");
    assert_eq!(holder["state"], "idle in transaction");
    assert_eq!(holder["wait_event_type"], "Client");
    assert_eq!(holder["wait_event"], "ClientRead");
    let query = holder["query"].as_str().expect("query");
    assert!(
        query.starts_with("BEGIN; SELECT count(*) FROM t /* "),
        "{query}"
    );
    no_controls("the holder's query", query);
    let waiter = node(pw);
    assert_eq!(waiter["application"], "etl password=***");
    assert_eq!(waiter["wait_event_type"], "Lock");
    assert_eq!(waiter["wait_event"], "relation");
    let blocked = &snap["blocking"][0];
    assert_eq!(blocked["pid"], pw);
    assert_eq!(blocked["application"], "etl password=***");
    assert_eq!(blocked["user"], "postgres");
    assert_eq!(blocked["wait_event_type"], "Lock");
    assert_eq!(blocked["wait_event"], "relation");
    assert_eq!(blocked["state"], "active");

    let text = lab.run(&["monitor", "--db", &db, "--once"]);
    assert_eq!(text.code, 0, "{text}");
    no_controls("monitor --once", &text.stdout);
    assert!(
        text.stdout
            .contains(&format!("  {ph} idle in transaction "))
            && text.stdout.contains("(nightly-report, postgres@")
            && text.stdout.contains("; wait Client:ClientRead)"),
        "{text}"
    );
    assert!(
        text.stdout.contains(&format!("    {pw} waits "))
            && text.stdout.contains("(etl password=***, postgres@"),
        "{text}"
    );
    drop(keep);
}

const GUARDED: &str = r#"
[runbook]
id = "named-guard"
title = "The guard names who holds the lock"

[settings]
lock_timeout = "200ms"
lock_retries = 0
on_blockers = "proceed"

[[phase]]
id = "p"

  [[phase.step]]
  id = "alter-busy"
  kind = "change"
  sql = "ALTER TABLE busy ADD COLUMN x int"
  rollback = "ALTER TABLE busy DROP COLUMN x"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_line_names_the_holder_by_application_user_client_and_wait() {
    let lab = Lab::new();
    let admin = lab.database("guardnames", &[]).await;
    admin
        .batch_execute("CREATE TABLE busy (id int)")
        .await
        .expect("table");
    let db = lab.conninfo("guardnames");
    let reader = named(&db, "nightly-report").await;
    let sneaky = named(&db, SNEAKY_APP).await;
    let (pr, ps) = (pid_of(&reader).await, pid_of(&sneaky).await);
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM busy /* \x1b]0;owned\x07 */")
        .await
        .expect("reader");
    sneaky
        .batch_execute("BEGIN; SELECT count(*) FROM busy")
        .await
        .expect("sneaky");

    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("guarded.toml");
    std::fs::write(&rb, GUARDED).expect("runbook");
    let ran = lab.run(&[
        "run",
        rb.to_str().expect("utf-8"),
        "--headless",
        "--db",
        &db,
    ]);
    assert_eq!(ran.code, 1, "{ran}");
    no_controls("the headless run", &ran.stdout);
    let line = |pid: i64| {
        ran.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("pid {pid} ")))
            .unwrap_or_else(|| panic!("no guard line for {pid}:\n{ran}"))
            .to_string()
    };
    let r = line(pr);
    assert!(
        r.contains(&format!("pid {pr} (nightly-report, postgres@"))
            && r.contains("; wait Client:ClientRead) idle in transaction")
            && r.contains("holds AccessShareLock on busy"),
        "{r}"
    );
    let s = line(ps);
    // (The line's own redaction takes the comma after a masked value too.)
    assert!(s.contains(&format!("pid {ps} (etl password=***")), "{s}");
    // The audit record of the guard names them the same way, password masked.
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap_or_default();
    let record = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON record"))
        .find(|r| r["action"] == "blockers")
        .unwrap_or_else(|| panic!("no blockers record:\n{audit}"));
    let message = record["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("pid {pr} (nightly-report, postgres@")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    no_controls("the blockers record", message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_counts_client_sessions_and_poll_ms_is_a_tenth_of_a_ms() {
    let lab = Lab::new();
    let admin = lab.database("counted", &[]).await;
    let db = lab.conninfo("counted");
    // Seven idle sessions and one in a transaction, besides `admin`.
    let mut idle = Vec::new();
    for _ in 0..7 {
        idle.push(connect(&db).await);
    }
    let busy = connect(&db).await;
    busy.batch_execute("BEGIN; SELECT 1").await.expect("busy");
    let clients: usize = column(
        &admin,
        "SELECT count(*) FROM pg_stat_activity \
          WHERE backend_type = 'client backend' AND datname = current_database()",
    )
    .await[0]
        .parse()
        .expect("a count");
    assert_eq!(clients, 9);

    let ran = lab.run(&["monitor", "--db", &db, "--once", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran}");
    let snap: serde_json::Value = serde_json::from_str(&ran.stdout).expect("json");
    // The monitor's own session is not one of them.
    assert_eq!(snap["summary"]["sessions"], 9, "{}", ran.stdout);
    assert_eq!(snap["summary"]["idle_in_transaction"], 1);
    let poll_ms = snap["poll_ms"].as_f64().expect("poll_ms");
    let tenths = poll_ms * 10.0;
    assert!(
        (tenths - tenths.round()).abs() < 1e-9,
        "poll_ms {poll_ms} is not rounded to 0.1 ms"
    );
    let raw = ran
        .stdout
        .lines()
        .find(|l| l.contains("\"poll_ms\""))
        .expect("a poll_ms line");
    let digits = raw.rsplit('.').next().unwrap_or("");
    assert!(
        digits.trim_end_matches([',', ' ']).len() <= 1,
        "poll_ms is printed with more than one decimal: {raw}"
    );

    let text = lab.run(&["monitor", "--db", &db, "--once"]);
    assert!(text.stdout.contains("  sessions 9  "), "{text}");
    drop(idle);
}

/// The local log's records of `action`: (outcome, message).
fn records(dir: &std::path::Path, action: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON record"))
        .filter(|r| r["action"] == action)
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("").to_string(),
                r["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_and_a_terminate_are_different_actions_naming_pid_application_and_user() {
    let lab = Lab::new();
    let admin = lab.database("named_signals", &[]).await;
    let db = lab.conninfo("named_signals");
    let victim = named(&db, "nightly-report").await;
    let pid = pid_of(&victim).await as i32;
    let sleeping = tokio::spawn(async move {
        let r = victim.batch_execute("SELECT pg_sleep(60)").await;
        (victim, r)
    });
    until_sql(
        &admin,
        "the victim to sleep",
        Duration::from_secs(10),
        &format!("SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = {pid}"),
    )
    .await;
    let spec = ConnSpec::resolve(Some(&db)).expect("resolve");
    let watcher = Watcher::connect(&spec, Duration::from_secs(300), Duration::from_secs(1))
        .await
        .expect("monitor connects");
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = Context {
        session: "named".into(),
        operator: "tester".into(),
        ..Default::default()
    };
    let mut audit = SignalAudit::in_dir(dir.path(), ctx);

    let report = send_audited(&watcher, &mut audit, pid, Signal::Cancel).await;
    assert!(!report.is_bad(), "{report}");
    let (victim, r) = sleeping.await.expect("victim task");
    assert!(r.is_err(), "the sleep was cancelled");
    let report = send_audited(&watcher, &mut audit, pid, Signal::Terminate).await;
    assert!(!report.is_bad(), "{report}");
    eventually(
        "the terminated victim's connection to close",
        Duration::from_secs(10),
        || async { victim.is_closed() },
    )
    .await;

    let who = format!("pid {pid} (nightly-report, postgres@");
    for action in ["cancel", "terminate"] {
        let recs = records(dir.path(), action);
        let outcomes: Vec<&str> = recs.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(outcomes, ["requested", "done"], "{action}: {recs:?}");
        for (_, message) in &recs {
            assert!(message.starts_with(&who), "{action}: {message}");
        }
    }
    // The database copies say the same.
    let copied = column(
        &admin,
        "SELECT action || ' ' || outcome FROM pgpilot.audit_log \
          WHERE session = 'named' ORDER BY seq",
    )
    .await;
    assert_eq!(
        copied,
        [
            "cancel requested",
            "cancel done",
            "terminate requested",
            "terminate done"
        ]
    );
}
