//! Streaming standbys of the lab's sandbox, seen from the primary as
//! `pgpilot monitor --once` reports them.

use std::time::Duration;

use pgpilot::sandbox::Standby;
use tokio_postgres::Client;

use super::{Lab, eventually};

/// A standby called `name` of the lab's own server, started; `None` (the
/// test says it skips) on `DATABASE_URL`'s server, which has no sandbox.
pub fn start(lab: &Lab, name: &str) -> Option<Standby> {
    let Some(primary) = lab.server.sandbox() else {
        eprintln!("skipped: DATABASE_URL's server has no sandbox standby");
        return None;
    };
    Some(primary.start_standby(name).expect("a standby"))
}

/// The `replicas` list of `monitor --once --format json`.
pub fn replicas(lab: &Lab) -> Vec<serde_json::Value> {
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

/// The replay lag, in seconds, `list` shows for the standby `name`.
pub fn lag_of(list: &[serde_json::Value], name: &str) -> Option<f64> {
    list.iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["replay_lag_s"].as_f64())
}

/// Waits until the primary sees the standby `name` streaming.
pub async fn streams(lab: &Lab, name: &str) {
    eventually(
        &format!("{name} streams"),
        Duration::from_secs(30),
        || async {
            replicas(lab)
                .iter()
                .any(|r| r["name"] == name && r["state"] == "streaming")
        },
    )
    .await;
}

/// With the standby `name`'s replay paused, writes a row into `w` through
/// `writer` until the standby's lag has grown past a second.
pub async fn lags_past_a_second(lab: &Lab, writer: &Client, name: &str) {
    // WAL keeps arriving while replay is paused: replay_lag grows.
    let first = std::cell::Cell::new(None::<f64>);
    let first = &first;
    eventually(
        &format!("{name}'s lag grows past 1 s"),
        Duration::from_secs(60),
        || async move {
            writer
                .batch_execute("INSERT INTO w VALUES (1)")
                .await
                .unwrap();
            let lag = lag_of(&replicas(lab), name);
            if first.get().is_none() {
                first.set(lag);
            }
            lag.is_some_and(|l| l > 1.0 && first.get().is_some_and(|f| l > f))
        },
    )
    .await;
}
