//! Standbys from the primary's point of view, against a real streaming
//! replica: a paused replay shows a growing lag in `monitor --once`, a
//! step with `max_replica_lag` warns before it starts (output and audit),
//! and a stopped standby's inactive slot counts as over the limit.

mod common;

use std::time::Duration;

use common::{Lab, eventually};
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

fn replicas(lab: &Lab) -> Vec<serde_json::Value> {
    let ran = lab.run(&[
        "monitor",
        "--db",
        &lab.conninfo("postgres"),
        "--once",
        "--format",
        "json",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON");
    v["replicas"].as_array().cloned().expect("a replicas list")
}

fn lag_of(list: &[serde_json::Value], name: &str) -> Option<f64> {
    list.iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["replay_lag_s"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_standby_shows_growing_lag_and_a_step_warns_before_it_starts() {
    let lab = Lab::new();
    let Some(primary) = lab.server.sandbox() else {
        eprintln!("skipped: DATABASE_URL's server has no sandbox standby");
        return;
    };
    let standby = primary.start_standby("standby1").expect("a standby");
    let client = lab.database("lagged", &[]).await;
    client
        .batch_execute("CREATE TABLE w (a int)")
        .await
        .unwrap();
    eventually("standby1 streams", Duration::from_secs(30), || async {
        replicas(&lab)
            .iter()
            .any(|r| r["name"] == "standby1" && r["state"] == "streaming")
    })
    .await;
    standby.pause_replay().expect("pause replay");
    // WAL keeps arriving while replay is paused: replay_lag grows.
    let first = std::cell::Cell::new(None::<f64>);
    let (first, writer, seen) = (&first, &client, &lab);
    eventually(
        "standby1's lag grows past 1 s",
        Duration::from_secs(60),
        || async move {
            writer
                .batch_execute("INSERT INTO w VALUES (1)")
                .await
                .unwrap();
            let lag = lag_of(&replicas(seen), "standby1");
            if first.get().is_none() {
                first.set(lag);
            }
            lag.is_some_and(|l| l > 1.0 && first.get().is_some_and(|f| l > f))
        },
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("watched.toml");
    std::fs::write(&rb, RUNBOOK).unwrap();
    let ran = lab.run(&[
        "run",
        rb.to_str().unwrap(),
        "--headless",
        "--db",
        &lab.conninfo("lagged"),
    ]);
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
    let Some(primary) = lab.server.sandbox() else {
        eprintln!("skipped: DATABASE_URL's server has no sandbox standby");
        return;
    };
    let mut standby = primary.start_standby("standby2").expect("a standby");
    let client = lab.database("gone", &[]).await;
    eventually("standby2 streams", Duration::from_secs(30), || async {
        replicas(&lab)
            .iter()
            .any(|r| r["name"] == "standby2" && r["state"] == "streaming")
    })
    .await;
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
    let rb = dir.path().join("watched.toml");
    std::fs::write(&rb, RUNBOOK).unwrap();
    let ran = lab.run(&[
        "run",
        rb.to_str().unwrap(),
        "--headless",
        "--db",
        &lab.conninfo("gone"),
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("[add] WARNING: standby2: its slot is inactive"),
        "{ran}"
    );
}

#[test]
fn the_tui_shows_each_standby_in_one_header_line_at_80_by_24() {
    use pgpilot::monitor::{Feed, Replica};
    use pgpilot::tui::app::{App, SessionKind};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("watched.toml");
    std::fs::write(&rb, RUNBOOK.replace("\"1s\"", "\"10s\"")).unwrap();
    let c = pgpilot::check::check_file(&rb).expect("a valid runbook");
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
    t.draw(|f| pgpilot::tui::views::draw(f, &app)).unwrap();
    let buf = t.backend().buffer().clone();
    let screen: Vec<String> = (0..24)
        .map(|y| (0..80).map(|x| buf[(x, y)].symbol().to_string()).collect())
        .collect();
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
