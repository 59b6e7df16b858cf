//! `[[health]]` gates: checked before each step; a breach stops before the
//! next step (headless without a terminal: exit 3), audited with the value
//! seen; a gate whose query fails blocks too; check refuses a gate that is
//! not one read-only SELECT.

mod common;

use common::{Lab, runbooks, scalar};
use pgpilot::audit::AuditRecord;
use pgpilot::audit::record::Action;

fn runbook(gate_sql: &str) -> String {
    format!(
        r#"
[runbook]
id = "gated"
title = "Two steps behind a health gate"

[[health]]
name = "rows in t"
sql = "{gate_sql}"
max = 0

[[phase]]
id = "p"

  [[phase.step]]
  id = "fill"
  kind = "change"
  sql = "INSERT INTO t SELECT g FROM generate_series(1, 3) g"
  rollback = "DELETE FROM t"

  [[phase.step]]
  id = "after"
  kind = "change"
  sql = "CREATE TABLE after_gate (a int)"
"#
    )
}

/// The gated runbook with `gate_sql` as its gate, written to `dir`.
fn write(dir: &tempfile::TempDir, gate_sql: &str) -> String {
    runbooks::write(dir, "gated.toml", &runbook(gate_sql))
}

/// A database the test calls `db` with an empty table t.
async fn with_t(lab: &Lab, db: &str) -> tokio_postgres::Client {
    let client = lab.database(db, &[]).await;
    client
        .batch_execute("CREATE TABLE t (a int)")
        .await
        .unwrap();
    client
}

fn records(lab: &Lab) -> Vec<AuditRecord> {
    pgpilot::audit::query::read_records(&lab.audit_file()).expect("local audit log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_stops_before_the_next_step_with_the_value_in_output_and_audit() {
    let lab = Lab::new();
    let client = with_t(&lab, "health_breach").await;
    let dir = tempfile::tempdir().unwrap();
    let rb = write(&dir, "SELECT count(*) FROM t");
    let ran = lab.run_headless(&rb, "health_breach");
    assert_eq!(ran.code, 3, "{ran}");
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        all.contains("health gate \"rows in t\" breached: 3 (limit: max 0)"),
        "{ran}"
    );
    // The first step ran, the second did not.
    assert_eq!(scalar(&client, "SELECT count(*)::text FROM t").await, "3");
    assert_eq!(
        scalar(&client, "SELECT (to_regclass('after_gate') IS NULL)::text").await,
        "true"
    );
    let recs = records(&lab);
    let breach = recs
        .iter()
        .find(|r| r.action == Action::Health)
        .expect("a health record");
    assert_eq!(breach.step.as_deref(), Some("after"));
    assert_eq!(breach.outcome.as_deref(), Some("stop"));
    assert!(
        breach.message.as_deref().unwrap_or("").contains(": 3 "),
        "{breach:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_whose_query_fails_blocks_the_first_step() {
    let lab = Lab::new();
    let client = with_t(&lab, "health_fails").await;
    let dir = tempfile::tempdir().unwrap();
    let rb = write(&dir, "SELECT count(*) FROM no_such_table");
    let ran = lab.run_headless(&rb, "health_fails");
    assert_eq!(ran.code, 3, "{ran}");
    assert!(ran.stdout.contains("its query failed"), "{ran}");
    assert!(ran.stdout.contains("no_such_table"), "{ran}");
    assert_eq!(scalar(&client, "SELECT count(*)::text FROM t").await, "0");
}

#[test]
fn check_refuses_a_gate_that_changes_data() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    for sql in [
        "DELETE FROM t",
        "WITH d AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM d",
        "SELECT 1; SELECT 2",
    ] {
        let rb = write(&dir, sql);
        let ran = lab.run(&["check", &rb]);
        assert_eq!(ran.code, 1, "{sql}: {ran}");
        let all = format!("{}{}", ran.stdout, ran.stderr);
        assert!(
            all.contains("gated.toml:8:") && all.contains("health gate \"rows in t\""),
            "{sql}: {ran}"
        );
    }
    let rb = write(&dir, "SELECT count(*) FROM t");
    let ran = lab.run(&["check", &rb]);
    assert_eq!(ran.code, 0, "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_tui_a_breach_offers_continue_roll_back_stop_and_x_stops() {
    let lab = Lab::new();
    let client = with_t(&lab, "health_tui").await;
    let dir = tempfile::tempdir().unwrap();
    let rb = write(&dir, "SELECT count(*) FROM t");
    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run {rb} --db '{db}'; echo $? > {exit}; sleep 30",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        db = lab.conninfo("health_tui"),
        exit = exit_file.display(),
    );
    let tui = common::tmux::Tmux::sized(&cmd, 80, 24);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for("[fill] applied");
    tui.keys(&["r"]);
    let s = tui.wait_for("c continue · b roll back the applied steps · x stop");
    assert!(s.contains("value 3 (limit: max 0)"), "{s}");
    tui.keys(&["x"]);
    tui.wait_for("refused: health gate");
    tui.keys(&["q"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !exit_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "pgpilot did not exit:\n{}",
            tui.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let code = std::fs::read_to_string(&exit_file).unwrap();
    assert_eq!(code.trim(), "3", "{}", tui.screen());
    assert_eq!(
        scalar(&client, "SELECT (to_regclass('after_gate') IS NULL)::text").await,
        "true"
    );
    let recs = records(&lab);
    assert!(
        recs.iter()
            .any(|r| r.action == Action::Health && r.outcome.as_deref() == Some("stop")),
        "{recs:?}"
    );
}

#[test]
fn plan_shows_the_gates_checked_before_each_step() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let rb = write(&dir, "SELECT count(*) FROM t");
    let ran = lab.run(&["plan", &rb]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("health gate rows in t (max 0), before each step: SELECT count(*) FROM t"),
        "{ran}"
    );
    let ran = lab.run(&["plan", &rb, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(v["health"][0]["name"], "rows in t");
    assert_eq!(v["health"][0]["max"], 0.0);
}
