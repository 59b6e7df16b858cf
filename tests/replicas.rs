//! Standbys from the primary's point of view, against a real streaming
//! replica: a paused replay shows a growing lag in `monitor --once`, a
//! step with `max_replica_lag` warns before it starts (output and audit),
//! a stopped standby's inactive slot counts as over the limit, and a
//! backfill waits between batches while a standby replays too far behind,
//! then goes on once it catches up.

mod common;

use std::time::Duration;

use common::standby::{self, replicas};
use common::{Lab, eventually, runbooks};
use pgpilot::audit::record::Action;

const RUNBOOK: &str = r#"
[runbook]
id = "lag-watched"
title = "A step that watches the standbys"

[settings]
max_replica_lag = "1s"

[[phase]]
id = "p"

  [[phase.step]]
  id = "add"
  kind = "change"
  sql = "CREATE TABLE watched (a int)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_standby_shows_growing_lag_and_a_step_warns_before_it_starts() {
    let lab = Lab::new();
    let Some(standby) = standby::start(&lab, "standby1") else {
        return;
    };
    let client = lab.database("lagged", &[]).await;
    client
        .batch_execute("CREATE TABLE w (a int)")
        .await
        .unwrap();
    standby::streams(&lab, "standby1").await;
    standby.pause_replay().expect("pause replay");
    standby::lags_past_a_second(&lab, &client, "standby1").await;

    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "watched.toml", RUNBOOK);
    let ran = lab.run_headless(&rb, "lagged");
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout.contains("[add] WARNING: standby1 replays"),
        "{ran}"
    );
    assert!(ran.stdout.contains("behind > 1s"), "{ran}");
    let recs = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit");
    let lag = recs
        .iter()
        .find(|r| r.action == Action::ReplicaLag)
        .expect("a replica_lag record");
    assert_eq!(lag.step.as_deref(), Some("add"));
    assert!(
        lag.message.as_deref().unwrap_or("").contains("standby1"),
        "{lag:?}"
    );
    standby.resume_replay().expect("resume replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_standby_leaves_its_slot_over_the_limit() {
    let lab = Lab::new();
    let Some(mut standby) = standby::start(&lab, "standby2") else {
        return;
    };
    let client = lab.database("gone", &[]).await;
    standby::streams(&lab, "standby2").await;
    standby.stop();
    eventually(
        "standby2's slot shows it disconnected",
        Duration::from_secs(30),
        || async {
            replicas(&lab).iter().any(|r| {
                r["slot"] == "standby2"
                    && r["state"] == "disconnected"
                    && r["why_over"]
                        .as_str()
                        .is_some_and(|w| w.contains("disconnected"))
            })
        },
    )
    .await;
    client.batch_execute("SELECT 1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "watched.toml", RUNBOOK);
    let ran = lab.run_headless(&rb, "gone");
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("[add] WARNING: standby2: its slot is inactive"),
        "{ran}"
    );
}

/// A backfill over the primary that `standby3` follows: 20,000 rows in
/// batches of 2,000, each adding 1 to `touched`.
const BACKFILL: &str = r#"
[runbook]
id = "lag-fill"
title = "A backfill that waits for its standby"

[settings]
max_replica_lag = "1s"

[[phase]]
id = "p"

  [[phase.step]]
  id = "fill"
  kind = "backfill"
  table = "t"
  key = "id"
  sql = "UPDATE t SET touched = touched + 1 WHERE id BETWEEN $1 AND $2"
  batch_size = 2000
  batch_pause = "100ms"
"#;

/// The 20,000 rows BACKFILL walks, in database `db`, with `name`'s replay
/// paused until its lag is past a second.
async fn lagging_walk(
    lab: &Lab,
    standby: &pgpilot::sandbox::Standby,
    db: &str,
    name: &str,
) -> tokio_postgres::Client {
    let client = lab.database(db, &[]).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 20000) g; ANALYZE t;
             CREATE TABLE w (a int)",
        )
        .await
        .unwrap();
    standby::streams(lab, name).await;
    standby.pause_replay().expect("pause replay");
    standby::lags_past_a_second(lab, &client, name).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_waits_while_its_standby_lags_and_finishes_once_it_catches_up() {
    use std::io::BufRead;
    use std::time::Instant;

    let lab = Lab::new();
    let Some(standby) = standby::start(&lab, "standby3") else {
        return;
    };
    let client = lagging_walk(&lab, &standby, "lagfill", "standby3").await;

    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "fill.toml", BACKFILL);
    let db = lab.conninfo("lagfill");
    let mut args = vec!["run", rb.as_str(), "--headless", "--db", db.as_str()];
    let confirms = common::confirms_for(&rb, false);
    args.extend(confirms.iter().map(String::as_str));
    let mut child = lab
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn pgpilot");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
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
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out
        .iter()
        .any(|l: &String| l.contains("[fill] WARNING: paused: standby3 replays"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => out.push(l),
            Err(_) => panic!(
                "the backfill never paused for standby3:\n{}",
                out.join("\n")
            ),
        }
    }
    let paused = out.last().cloned().unwrap_or_default();
    assert!(paused.contains(" s behind > 1s"), "{paused}");
    // Paused: no batch runs while the standby stays behind.
    let count = "SELECT count(*) FROM t WHERE touched > 0";
    let before = common::scalar(&client, count).await;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        common::scalar(&client, count).await,
        before,
        "rows moved while paused"
    );
    assert_ne!(before, "20000", "paused before the end");

    standby.resume_replay().expect("resume replay");
    let status = child.wait().expect("wait");
    out.extend(lines.try_iter());
    assert_eq!(status.code(), Some(0), "{}", out.join("\n"));
    assert!(
        out.iter()
            .any(|l| l.contains("resumed: every standby replays within max_replica_lag")),
        "{}",
        out.join("\n")
    );
    assert_eq!(
        common::column(
            &client,
            "SELECT touched || 'x' || count(*) FROM t GROUP BY touched ORDER BY touched"
        )
        .await,
        ["1x20000"]
    );
    let recs = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit");
    let said = |what: &str| {
        recs.iter().any(|r| {
            r.action == Action::Progress
                && r.step.as_deref() == Some("fill")
                && r.message.as_deref().is_some_and(|m| m.contains(what))
        })
    };
    assert!(said("paused: standby3 replays"), "{recs:?}");
    assert!(said("resumed: every standby"), "{recs:?}");
}

#[test]
fn the_tui_shows_each_standby_in_one_header_line_at_80_by_24() {
    use pgpilot::monitor::{Feed, Replica};
    use pgpilot::tui::app::{App, SessionKind};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "watched.toml", &RUNBOOK.replace("\"1s\"", "\"10s\""));
    let c = pgpilot::check::check_file(std::path::Path::new(&rb)).expect("a valid runbook");
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        None,
        "db".into(),
        pgpilot::tui::keys::defaults(),
    );
    let mut snap = pgpilot::monitor::build(Vec::new(), Duration::from_secs(300), None, 1, 0.5);
    let standby = |name: &str, lag: f64| Replica {
        name: name.into(),
        state: Some("streaming".into()),
        replay_lag_s: Some(lag),
        replay_lag_bytes: Some(0.0),
        slot: Some(name.into()),
        why_over: None,
    };
    snap.replicas = vec![standby("standby1", 0.2), standby("standby2", 12.0)];
    app.on_feed(Feed::Snapshot(Box::new(snap)));
    let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let screen = common::screen::drawn(&mut t, &app);
    assert!(
        screen[2].starts_with("replicas: standby1 0.2 s · standby2 12.0 s ⚠"),
        "{}",
        screen.join("\n")
    );
    assert!(
        screen.iter().any(|l| l.contains("Locks")),
        "{}",
        screen.join("\n")
    );
}

/// In the TUI the gauge of a walk that waits for a lagging standby says
/// so ("WAITING: standby lag"), as an operator's pause says PAUSED, and
/// the word goes once the standby caught up and the walk goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_gauge_says_a_backfill_waits_for_a_lagging_standby() {
    use common::tmux::Tmux;

    let lab = Lab::new();
    let Some(standby) = standby::start(&lab, "standby4") else {
        return;
    };
    let client = lagging_walk(&lab, &standby, "lagtui", "standby4").await;

    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "fill.toml", BACKFILL);
    let db = lab.conninfo("lagtui");
    let phrase = common::confirms_for(&rb, false)
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
    tui.wait_for("WAITING: standby lag");
    let count = "SELECT count(*) FROM t WHERE touched > 0";
    let before = common::scalar(&client, count).await;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(common::scalar(&client, count).await, before, "rows moved");

    standby.resume_replay().expect("resume replay");
    eventually(
        "the walk goes on and ends once the standby caught up",
        Duration::from_secs(60),
        || {
            let s = tui.screen();
            async move { s.contains("[fill] applied") && !s.contains("WAITING") }
        },
    )
    .await;
    tui.keys(&["q"]);
    eventually("pgpilot ends", Duration::from_secs(30), || {
        let done = exit_file.exists();
        async move { done }
    })
    .await;
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
}
