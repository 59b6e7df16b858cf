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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_blocked_on_a_lock_times_out_leaves_no_file_and_a_rerun_dumps_afresh() {
    let lab = Lab::new();
    let client = lab.database("dump_to", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY);
             INSERT INTO users SELECT generate_series(1, 100);",
        )
        .await
        .unwrap();
    let db = lab.conninfo("dump_to");
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = runbook(dir.path(), "dump-to", "2s");

    let started = std::time::Instant::now();
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(all.contains("pg_dump did not finish within 2s"), "{ran}");
    assert!(
        backups(&lab, "dump-to").is_empty(),
        "{:?}",
        backups(&lab, "dump-to")
    );
    assert!(
        failure_message(&lab).contains("did not finish within 2s"),
        "{}",
        failure_message(&lab)
    );
    // pg_dump is gone, and with it its session waiting on the lock.
    eventually(
        "pg_dump's session ends",
        Duration::from_secs(10),
        || async { dump_sessions(&client).await == "0" },
    )
    .await;

    holder.batch_execute("COMMIT").await.unwrap();
    let again = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(again.code, 0, "{again}");
    let files = backups(&lab, "dump-to");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].extension().is_some_and(|e| e == "dump"),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_blocked_dump_kills_it_and_leaves_no_file() {
    let lab = Lab::new();
    let client = lab.database("dump_int", &[]).await;
    client
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY)")
        .await
        .unwrap();
    let db = lab.conninfo("dump_int");
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = runbook(dir.path(), "dump-int", "1h");
    let child = lab
        .command(&["run", &rb, "--headless", "--db", &db])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // pg_dump waits on the lock.
    eventually("pg_dump waits on the lock", Duration::from_secs(30), || async {
        scalar(
            &client,
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
    assert!(
        backups(&lab, "dump-int").is_empty(),
        "{:?}",
        backups(&lab, "dump-int")
    );
    assert!(
        failure_message(&lab).contains("pg_dump was killed"),
        "{}",
        failure_message(&lab)
    );
    eventually(
        "pg_dump's session ends",
        Duration::from_secs(10),
        || async { dump_sessions(&client).await == "0" },
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
}
