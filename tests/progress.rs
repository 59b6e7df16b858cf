//! Progress of long statements (issue 14, section 2) on a real server: a
//! CREATE INDEX CONCURRENTLY parked in "waiting for old snapshots" by a
//! REPEATABLE READ transaction whose snapshot is older than the build, seen
//! by `monitor --once` and by a headless run, which name that session; and
//! the policy when it stays past the step's lock_timeout.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{Lab, column, connect, until_sql};
use tokio_postgres::Client;

const HOLDER_APP: &str = "nightly-report";

/// A database with table `t` of some rows, and a session named
/// `nightly-report` holding a REPEATABLE READ snapshot open (what makes a
/// concurrent build wait at its end): the admin client, the holder and its pid.
async fn parked(lab: &Lab, name: &str) -> (Client, Client, i64) {
    let admin = lab.database(name, &[]).await;
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20000) g",
        )
        .await
        .expect("table");
    let holder = connect(&lab.conninfo(name)).await;
    let pid: i64 = column(&holder, "SELECT pg_backend_pid()").await[0]
        .parse()
        .expect("a pid");
    holder
        .batch_execute(&format!(
            "SET application_name = '{HOLDER_APP}';
             BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t"
        ))
        .await
        .expect("holder's snapshot");
    (admin, holder, pid)
}

const WAITING: &str = "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index \
                       WHERE phase = 'waiting for old snapshots')";

#[tokio::test(flavor = "multi_thread")]
async fn monitor_once_shows_a_concurrent_build_waiting_and_names_the_session_it_waits_for() {
    let lab = Lab::new();
    let (admin, holder, holder_pid) = parked(&lab, "progress_once").await;
    let builder = connect(&lab.conninfo("progress_once")).await;
    let builder_pid: i64 = column(&builder, "SELECT pg_backend_pid()").await[0]
        .parse()
        .expect("a pid");
    let build = tokio::spawn(async move {
        builder
            .batch_execute("CREATE INDEX CONCURRENTLY t_v_idx ON t (v)")
            .await
    });
    until_sql(
        &admin,
        "the build to wait for old snapshots",
        Duration::from_secs(30),
        WAITING,
    )
    .await;

    let db = lab.conninfo("progress_once");
    let ran = lab.run(&["monitor", "--db", &db, "--once", "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran}");
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON");
    let progress = json["progress"].as_array().expect("a progress list");
    let p = progress
        .iter()
        .find(|p| p["pid"] == builder_pid)
        .unwrap_or_else(|| panic!("the build's progress: {}", ran.stdout));
    assert_eq!(p["command"], "CREATE INDEX CONCURRENTLY", "{p}");
    assert_eq!(p["relation"], "t", "{p}");
    assert_eq!(p["phase"], "waiting for old snapshots", "{p}");
    assert!(p["eta_s"].is_null(), "no ETA while it waits: {p}");
    assert_eq!(p["locker"]["pid"], holder_pid, "{p}");
    assert_eq!(p["locker"]["application"], HOLDER_APP, "{p}");
    assert!(
        p["locker"]["query"]
            .as_str()
            .is_some_and(|q| q.contains("count(*) FROM t")),
        "{p}"
    );

    let text = lab.run(&["monitor", "--db", &db, "--once"]);
    assert!(
        text.stdout.contains(&format!(
            "progress: pid {builder_pid} CREATE INDEX CONCURRENTLY on t: waiting for old snapshots"
        )) && text
            .stdout
            .contains(&format!("waits for pid {holder_pid} ({HOLDER_APP}")),
        "{text}"
    );

    holder.batch_execute("COMMIT").await.expect("commit");
    build
        .await
        .expect("join")
        .expect("the build ends once the snapshot is gone");
}

const BUILD: &str = r#"
[runbook]
id = "progress-build"
title = "Index t.v concurrently"

[settings]
lock_timeout = "LOCK_TIMEOUT"
lock_retries = 0

[[phase]]
id = "p"

  [[phase.step]]
  id = "build"
  kind = "change"
  sql = "CREATE INDEX CONCURRENTLY t_v_idx ON t (v)"
  rollback = "DROP INDEX CONCURRENTLY IF EXISTS t_v_idx"
"#;

/// Starts `pgpilot run --headless` of [`BUILD`] with `lock_timeout`; its
/// stdout lines come on the receiver as they are printed.
fn start_run(
    lab: &Lab,
    db: &str,
    lock_timeout: &str,
) -> (
    std::process::Child,
    mpsc::Receiver<String>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("build.toml");
    std::fs::write(&rb, BUILD.replace("LOCK_TIMEOUT", lock_timeout)).expect("runbook");
    let mut child = lab
        .command(&["run", rb.to_str().expect("utf-8"), "--headless", "--db", db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgpilot");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx, dir)
}

/// Lines from `rx` until one satisfies `found` (returned with all before it).
fn until_line(
    rx: &mpsc::Receiver<String>,
    what: &str,
    found: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let hit = found(&line);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no line {what}; saw:\n{}", seen.join("\n")),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_headless_run_names_the_session_its_concurrent_build_waits_for() {
    let lab = Lab::new();
    let (admin, holder, holder_pid) = parked(&lab, "progress_headless").await;
    let db = lab.conninfo("progress_headless");
    let (mut child, rx, _dir) = start_run(&lab, &db, "5min");
    let seen = until_line(&rx, "naming the holder", |l| {
        l.contains("[build] progress:")
            && l.contains("waiting for old snapshots")
            && l.contains(&format!("waits for pid {holder_pid} ({HOLDER_APP}"))
    });
    assert!(
        !seen.iter().any(|l| l.contains('\x1b')),
        "no control characters: {seen:?}"
    );
    // The build finishes once the holder's transaction ends.
    holder.batch_execute("COMMIT").await.expect("commit");
    let rest: Vec<String> = rx.iter().collect();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{seen:?}\n{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("[build] applied")),
        "{rest:?}"
    );
    assert_eq!(
        column(
            &admin,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_v_idx'::regclass"
        )
        .await,
        ["true"]
    );
}

/// The policy (docs/safety-model.md, "Lock waits", concurrent builds): the
/// step's lock_timeout bounds the final waits too. When it runs out the
/// build fails; the operator was told which session it waited for; that
/// session is left alone (pgpilot never ends another session on its own);
/// and the cleanup of the INVALID index is bounded by the same timeout (the
/// holder read the table, so DROP INDEX CONCURRENTLY would wait for it as
/// well): the run ends, saying what to drop by hand, instead of hanging.
#[tokio::test(flavor = "multi_thread")]
async fn a_holder_past_lock_timeout_fails_the_build_without_hanging_after_being_named() {
    let lab = Lab::new();
    let (admin, holder, holder_pid) = parked(&lab, "progress_policy").await;
    let db = lab.conninfo("progress_policy");
    let (mut child, rx, _dir) = start_run(&lab, &db, "3s");
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "the run hangs after lock_timeout; saw:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "the build waits for pid {holder_pid} ({HOLDER_APP}"
        )) && l.contains("lock_timeout ends the build")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("[build] FAILED [55P03]")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("could not drop the invalid index")
                && l.contains("DROP INDEX CONCURRENTLY IF EXISTS")),
        "{lines:?}"
    );
    // The holder was not ended: its transaction is still open.
    assert_eq!(
        column(&holder, "SELECT count(*)::text FROM t").await,
        ["20000"]
    );
    holder.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        column(
            &admin,
            "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't_v_idx'::regclass"
        )
        .await,
        ["false"],
        "the INVALID index the notice names is there to drop"
    );
}

/// The TUI's gauge on the running step names the session a concurrent
/// build waits for, with the keys that end it, and logs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_gauge_names_the_session_a_concurrent_build_waits_for() {
    let lab = Lab::new();
    let (_admin, holder, holder_pid) = parked(&lab, "progress_tui").await;
    let db = lab.conninfo("progress_tui");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("build.toml");
    std::fs::write(&rb, BUILD.replace("LOCK_TIMEOUT", "5min")).expect("runbook");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run {rb} --db '{db}'; sleep 30",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        rb = rb.display(),
    );
    let tui = common::tmux::Tmux::start(&cmd);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    let s = tui.wait_for(&format!("waits for pid {holder_pid} ({HOLDER_APP}"));
    assert!(s.contains("waiting for old snapshots"), "{s}");
    holder.batch_execute("COMMIT").await.expect("commit");
    tui.wait_for("[build] applied");
    tui.keys(&["q"]);
}
