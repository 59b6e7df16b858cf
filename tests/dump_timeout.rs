//! A dump that cannot finish: pg_dump waits on a table another session
//! holds ACCESS EXCLUSIVE. With `dump.timeout` it is killed when the time
//! is up, and with Ctrl-C (SIGINT, headless) at once; either way no file is
//! left, its session is gone from the server, the audit says why, and a
//! later run takes a fresh dump.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Lab, Ran, connect, eventually, scalar};

fn runbook(dir: &std::path::Path, id: &str, timeout: &str) -> String {
    let text = format!(
        r#"
[runbook]
id = "{id}"
title = "Dump users"

[[phase]]
id = "p"

  [[phase.step]]
  id = "backup-users"
  kind = "backup"
  dump = {{ tables = ["users"], timeout = "{timeout}" }}
"#
    );
    let path: PathBuf = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn backups(lab: &Lab, runbook: &str) -> Vec<PathBuf> {
    let dir = lab.data_dir.path().join("backups").join(runbook);
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

/// The step's failure record in the local audit log.
fn failure_message(lab: &Lab) -> String {
    let log = std::fs::read_to_string(lab.audit_file()).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["action"] == "step_failure" && r["step"] == "backup-users")
        .map(|r| r["message"].as_str().unwrap_or_default().to_string())
        .next_back()
        .unwrap_or_default()
}

async fn dump_sessions(client: &tokio_postgres::Client) -> String {
    scalar(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgpilot-backup%'",
    )
    .await
}

/// A database whose `users` table (of `rows` rows) another session holds
/// ACCESS EXCLUSIVE, so that pg_dump waits on it, and the runbook `id`
/// that dumps the table within `timeout`.
struct BlockedDump {
    lab: Lab,
    client: tokio_postgres::Client,
    /// The session holding the lock, in its open transaction.
    holder: tokio_postgres::Client,
    db: String,
    _dir: tempfile::TempDir,
    rb: String,
}

async fn blocked_dump(name: &str, rows: i32, id: &str, timeout: &str) -> BlockedDump {
    let lab = Lab::new();
    let client = lab.database(name, &[]).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id int PRIMARY KEY);
             INSERT INTO users SELECT generate_series(1, {rows});"
        ))
        .await
        .unwrap();
    let db = lab.conninfo(name);
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = runbook(dir.path(), id, timeout);
    BlockedDump {
        lab,
        client,
        holder,
        db,
        _dir: dir,
        rb,
    }
}

impl BlockedDump {
    /// `pgpilot run RUNBOOK --headless` against the database.
    fn run_args(&self) -> [&str; 5] {
        ["run", &self.rb, "--headless", "--db", &self.db]
    }
}

/// What a stopped dump must leave: no file of runbook `id`, a failure
/// record that says `why`, and no pg_dump session on the server.
async fn assert_dump_left_nothing(d: &BlockedDump, id: &str, why: &str) {
    assert!(backups(&d.lab, id).is_empty(), "{:?}", backups(&d.lab, id));
    assert!(
        failure_message(&d.lab).contains(why),
        "{}",
        failure_message(&d.lab)
    );
    // pg_dump is gone, and with it its session waiting on the lock.
    eventually(
        "pg_dump's session ends",
        Duration::from_secs(10),
        || async { dump_sessions(&d.client).await == "0" },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_blocked_on_a_lock_times_out_leaves_no_file_and_a_rerun_dumps_afresh() {
    let d = blocked_dump("dump_to", 100, "dump-to", "2s").await;

    let started = std::time::Instant::now();
    let ran = d.lab.run(&d.run_args());
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(all.contains("pg_dump did not finish within 2s"), "{ran}");
    assert_dump_left_nothing(&d, "dump-to", "did not finish within 2s").await;

    d.holder.batch_execute("COMMIT").await.unwrap();
    let again = d.lab.run(&d.run_args());
    assert_eq!(again.code, 0, "{again}");
    let files = backups(&d.lab, "dump-to");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].extension().is_some_and(|e| e == "dump"),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_blocked_dump_kills_it_and_leaves_no_file() {
    let d = blocked_dump("dump_int", 0, "dump-int", "1h").await;
    let child = d
        .lab
        .command(&d.run_args())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // pg_dump waits on the lock.
    eventually("pg_dump waits on the lock", Duration::from_secs(30), || async {
        scalar(
            &d.client,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgpilot-backup%' AND wait_event_type = 'Lock'",
        )
        .await
            == "1"
    })
    .await;
    // SAFETY: a signal to the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let ran = Ran::from(child.wait_with_output().unwrap());
    assert_eq!(ran.code, 130, "{ran}");
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(all.contains("cancelled by the operator"), "{ran}");
    assert_dump_left_nothing(&d, "dump-int", "pg_dump was killed").await;
    d.holder.batch_execute("COMMIT").await.unwrap();
}
