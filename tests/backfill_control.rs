//! Live control of a running backfill: in the TUI `p` pauses and resumes,
//! `+` doubles the batch size, `x` stops after the current batch; headless,
//! SIGUSR1 pauses and resumes, SIGUSR2 stops. A stop leaves the step
//! `in_progress` with its cursor; the next run resumes and every row ends
//! touched exactly once. Each order is audited.

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Lab, confirms_for, scalar};

/// 20,000 rows walked 500 at a time with a pause between batches: about
/// ten seconds, slow enough to catch the walk running.
fn runbook(dir: &std::path::Path) -> String {
    let text = r#"
[runbook]
id = "fill"
title = "Backfill t"

[[phase]]
id = "p"

  [[phase.step]]
  id = "fill"
  kind = "backfill"
  table = "t"
  key = "id"
  sql = "UPDATE t SET touched = touched + 1 WHERE id BETWEEN $1 AND $2"
  batch_size = 500
  batch_pause = "250ms"
"#;
    let path = dir.join("fill.toml");
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

const ROWS: &str = "CREATE TABLE t (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
     INSERT INTO t (id) SELECT g FROM generate_series(1, 20000) g; ANALYZE t";

async fn touched_rows(client: &tokio_postgres::Client) -> u64 {
    scalar(client, "SELECT count(*) FROM t WHERE touched > 0")
        .await
        .parse()
        .expect("a count")
}

async fn each_row_once(client: &tokio_postgres::Client) -> String {
    scalar(
        client,
        "SELECT string_agg(touched || 'x' || n, ',') FROM (SELECT touched, count(*) n FROM t GROUP BY touched ORDER BY touched) g",
    )
    .await
}

fn status(lab: &Lab, rb: &str, db: &str) -> serde_json::Value {
    let ran = lab.run(&["status", rb, "--db", db, "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran}");
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).expect("status json");
    doc["steps"][0].clone()
}

/// The audit's progress records of the operator's orders, by outcome.
fn orders(lab: &Lab) -> Vec<String> {
    let audit = std::fs::read_to_string(lab.audit_file()).expect("audit");
    audit
        .lines()
        .filter(|l| l.contains("\"action\":\"progress\""))
        .filter_map(|l| {
            ["paused", "resumed", "resized", "stopped"]
                .into_iter()
                .find(|o| l.contains(&format!("\"outcome\":\"{o}\"")))
                .map(String::from)
        })
        .collect()
}

/// Rows stay as they are while the walk is paused (checked twice, a
/// second apart, after the pause was seen).
async fn stays_paused(client: &tokio_postgres::Client) -> u64 {
    let before = touched_rows(client).await;
    std::thread::sleep(Duration::from_secs(1));
    let after = touched_rows(client).await;
    assert_eq!(before, after, "rows were touched while paused");
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_sigusr1_pauses_and_resumes_sigusr2_stops_resumably() {
    let lab = Lab::new();
    let client = lab.database("bfc_headless", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path());
    let db = lab.conninfo("bfc_headless");
    let confirms = confirms_for(&rb, false);
    let mut args = vec!["run", rb.as_str(), "--headless", "--db", db.as_str()];
    args.extend(confirms.iter().map(String::as_str));
    let mut child = lab
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgpilot");
    let pid = child.id() as libc::pid_t;
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_line = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(what);
                    seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("never saw {what:?}:\n{}", seen.join("\n")),
            }
        }
    };
    let signal = |sig| {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
    };
    wait_line("[fill] progress ");
    signal(libc::SIGUSR1);
    wait_line("paused by the operator");
    let at_pause = stays_paused(&client).await;
    assert!(at_pause > 0 && at_pause < 20000, "{at_pause}");
    signal(libc::SIGUSR1);
    wait_line("resumed by the operator");
    let deadline = Instant::now() + Duration::from_secs(30);
    while touched_rows(&client).await == at_pause {
        assert!(Instant::now() < deadline, "the walk did not resume");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(libc::SIGUSR2);
    wait_line("stop asked by the operator");
    let code = child.wait().expect("wait").code();
    assert_eq!(code, Some(130), "a stopped run is interrupted");
    let done = touched_rows(&client).await;
    assert!(done < 20000, "stopped before the end: {done}");
    let st = status(&lab, &rb, &db);
    assert_eq!(st["status"], "in_progress", "{st}");
    assert_eq!(st["rows_done"], done, "{st}");
    assert_eq!(orders(&lab), ["paused", "resumed", "stopped"]);

    // The next run resumes after the last batch: each row exactly once.
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(each_row_once(&client).await, "1x20000");
    assert_eq!(status(&lab, &rb, &db)["status"], "applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_tui_p_pauses_plus_doubles_and_x_stops_resumably() {
    let lab = Lab::new();
    let client = lab.database("bfc_tui", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path());
    let db = lab.conninfo("bfc_tui");
    let phrase = confirms_for(&rb, false)
        .into_iter()
        .find_map(|c| c.strip_prefix("--confirm=fill=").map(String::from))
        .expect("the backfill asks a phrase");
    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run {rb} --db '{db}'; echo $? > {exit}; sleep 30",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        exit = exit_file.display(),
    );
    let tui = Tmux::start(&cmd);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for(&format!("Type {phrase} to run it."));
    tui.text(&phrase);
    tui.keys(&["Enter"]);
    // The footer offers the backfill's keys while it runs.
    let s = tui.wait_for(", batch 500");
    assert!(
        s.contains("p  pause/resume") && s.contains("x  stop after batch"),
        "{s}"
    );
    tui.keys(&["p"]);
    tui.wait_for("PAUSED");
    let at_pause = stays_paused(&client).await;
    assert!(at_pause < 20000, "{at_pause}");
    tui.keys(&["+"]);
    tui.wait_for(", batch 1000 PAUSED");
    tui.keys(&["p"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while touched_rows(&client).await == at_pause {
        assert!(
            Instant::now() < deadline,
            "the walk did not resume:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tui.keys(&["x"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exit_file.exists() {
        if tui.screen().contains("stopped by the operator") {
            tui.keys(&["q"]);
        }
        assert!(
            Instant::now() < deadline,
            "pgpilot did not end:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "130");
    let done = touched_rows(&client).await;
    assert!(done > at_pause && done < 20000, "{done}");
    let st = status(&lab, &rb, &db);
    assert_eq!(st["status"], "in_progress", "{st}");
    assert_eq!(st["rows_done"], done, "{st}");
    assert_eq!(orders(&lab), ["paused", "resized", "resumed", "stopped"]);

    let confirms = confirms_for(&rb, false);
    let mut args = vec!["run", rb.as_str(), "--headless", "--db", db.as_str()];
    args.extend(confirms.iter().map(String::as_str));
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(each_row_once(&client).await, "1x20000");
}
