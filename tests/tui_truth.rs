//! The truth on screen, end to end against a real server: a rehearsal that
//! changes nothing outside itself (its `b` included) and ends itself when
//! others queue behind it, the states the target holds shown as a session
//! opens, and a kept captured value never compared silently.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Lab, column, confirms_for, connect, scalar};

/// A runbook file in the lab's data directory.
fn runbook(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.data_dir.path().join(name);
    std::fs::write(&path, text).expect("write runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

/// `pgpilot ARGS` in a tmux terminal; its exit code lands in `exit`.
fn tui(lab: &Lab, args: &str, exit: &Path) -> Tmux {
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} {args}; echo $? > {exit}; sleep 60",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        exit = exit.display(),
    );
    Tmux::start(&cmd)
}

fn exit_code(tui: &Tmux, exit: &PathBuf, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while !exit.exists() {
        assert!(
            Instant::now() < deadline,
            "pgpilot did not exit:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(exit)
        .expect("exit code")
        .trim()
        .to_string()
}

fn audit_lines(lab: &Lab) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.audit_file())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const TWO_TABLES: &str = r#"
[runbook]
id = "truth-rehearse"
title = "Rehearse over a real change"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make-a"
  kind = "change"
  sql = "CREATE TABLE a (id int)"
  rollback = "DROP TABLE a"
"#;

const SECOND_TABLE: &str = r#"
  [[phase.step]]
  id = "make-b"
  kind = "change"
  sql = "CREATE TABLE b (id int)"
  rollback = "DROP TABLE b"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_in_a_rehearsal_never_touches_a_step_applied_for_real() {
    let lab = Lab::new();
    let client = lab.database("truthrehearse", &[]).await;
    let db = lab.conninfo("truthrehearse");
    // make-a is applied for real by an earlier run.
    let first = runbook(&lab, "first.toml", TWO_TABLES);
    let ran = lab.run(&["run", &first, "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    let both = runbook(&lab, "both.toml", &format!("{TWO_TABLES}{SECOND_TABLE}"));

    let exit = lab.data_dir.path().join("exit");
    let t = tui(&lab, &format!("run {both} --db '{db}' --rehearse"), &exit);
    // CREATE TABLE locks no table there is: said so before it starts.
    t.wait_for("this rehearsal will lock no existing table");
    t.wait_for("r  run next");
    t.keys(&["r"]);
    t.wait_for("every step is done");
    // b on the step applied for real: refused with the reason.
    t.keys(&["k", "b"]);
    let s = t.wait_for("make-a is not rolled back in this rehearsal");
    assert!(s.contains("applied for real on an earlier run"), "{s}");
    // Asked again at the end (the footer offers b once more).
    t.wait_for("roll back selected");
    // b on the step this rehearsal made: rehearsed inside it.
    t.keys(&["j", "b"]);
    // Its rollback phrase, as in a real run.
    t.wait_for("Type rollback drop table b to run it.");
    t.text("rollback drop table b");
    t.keys(&["Enter"]);
    t.wait_for("[make-b] rolled back");
    t.wait_for("roll back selected");
    t.keys(&["q"]);
    assert_eq!(exit_code(&t, &exit, Duration::from_secs(15)), "0");

    assert_eq!(
        scalar(&client, "SELECT to_regclass('a') IS NOT NULL").await,
        "t"
    );
    assert_eq!(
        scalar(&client, "SELECT to_regclass('b') IS NULL").await,
        "t"
    );
    assert_eq!(
        column(
            &client,
            "SELECT step_id || '=' || status FROM pgpilot.step_state ORDER BY step_id"
        )
        .await,
        ["make-a=applied"]
    );
    // The audit tells the truth: no rollback of make-a succeeded; the
    // refusal and the rehearsed rollback are rehearsal records.
    let audit = audit_lines(&lab);
    let of = |step: &str, action: &str| -> Vec<&serde_json::Value> {
        audit
            .iter()
            .filter(|r| r["step"] == step && r["action"] == action)
            .collect()
    };
    assert!(of("make-a", "rollback_success").is_empty(), "{audit:#?}");
    assert!(of("make-a", "rollback_start").is_empty(), "{audit:#?}");
    let refused = of("make-a", "rollback_failure");
    assert_eq!(refused.len(), 1, "{audit:#?}");
    assert_eq!(refused[0]["rehearsal"], true);
    let rehearsed = of("make-b", "rollback_success");
    assert_eq!(rehearsed.len(), 1, "{audit:#?}");
    assert_eq!(rehearsed[0]["rehearsal"], true);
    assert_eq!(rehearsed[0]["outcome"], "rehearsed");
}

const QUEUE: &str = r#"
[runbook]
id = "truth-queue"
title = "A rehearsal that makes others wait"

[settings]
rehearsal_max_queue = "3s"

[[phase]]
id = "p"

  [[phase.step]]
  id = "add-c"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c int"
  rollback = "ALTER TABLE t DROP COLUMN IF EXISTS c"

  [[phase.step]]
  id = "look"
  kind = "check"
  sql = "SELECT 1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_that_makes_others_queue_too_long_ends_itself() {
    let lab = Lab::new();
    let client = lab.database("truthqueue", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("table");
    let db = lab.conninfo("truthqueue");
    let rb = runbook(&lab, "queue.toml", QUEUE);
    let exit = lab.data_dir.path().join("exit");
    let t = tui(&lab, &format!("run {rb} --db '{db}' --rehearse"), &exit);
    let s = t.wait_for("this rehearsal will lock");
    assert!(s.contains("t (ACCESS EXCLUSIVE)"), "{s}");
    t.wait_for("r  run next");
    t.keys(&["r"]);
    t.wait_for("[add-c] rehearsed");

    // The application writes to t: it queues behind the rehearsal's lock.
    let writer = connect(&db).await;
    writer
        .batch_execute("SET application_name = 'orders-api'")
        .await
        .expect("name");
    let insert = tokio::spawn(async move {
        let started = Instant::now();
        writer
            .batch_execute("INSERT INTO t VALUES (1)")
            .await
            .map(|()| started.elapsed())
    });
    let s = t.wait_for("queued behind the rehearsal");
    assert!(s.contains("orders-api"), "{s}");
    let s = t.wait_for("rehearsal ended:");
    assert!(s.contains("rehearsal_max_queue"), "{s}");
    t.wait_for("refused: rehearsal ended");
    t.keys(&["q"]);
    let waited = tokio::time::timeout(Duration::from_secs(15), insert)
        .await
        .expect("the insert completes once the rehearsal ends")
        .expect("task")
        .expect("insert");
    assert!(waited < Duration::from_secs(12), "{waited:?}");
    assert_eq!(exit_code(&t, &exit, Duration::from_secs(15)), "3");
    // Nothing of the rehearsal stayed; the application's row did.
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'"
        )
        .await,
        "0"
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM t").await, "1");
    let audit = audit_lines(&lab);
    assert!(
        audit.iter().any(|r| r["action"] == "guard"
            && r["outcome"] == "fail"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("rehearsal_max_queue: rehearsal ended"))),
        "{audit:#?}"
    );
}

/// A pause after the change: headless, with a terminal, the engine waits
/// there for "done" while holding the rehearsal's locks.
const QUEUE_PAUSE: &str = r#"
  [[phase.step]]
  id = "read-the-screen"
  kind = "pause"
  instructions = "Read the screen."
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_rehearsal_waiting_at_a_terminal_ends_itself_too() {
    let lab = Lab::new();
    let client = lab.database("truthqueueheadless", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .expect("table");
    let db = lab.conninfo("truthqueueheadless");
    let rb = runbook(&lab, "queue-pause.toml", &format!("{QUEUE}{QUEUE_PAUSE}"));
    let exit = lab.data_dir.path().join("exit");
    let t = tui(
        &lab,
        &format!("run {rb} --db '{db}' --rehearse --headless"),
        &exit,
    );
    let s = t.wait_for("type \"done\" when it is done");
    assert!(
        s.contains("pgpilot: INFO: this rehearsal will lock t (ACCESS EXCLUSIVE)"),
        "{s}"
    );
    let writer = connect(&db).await;
    let insert =
        tokio::spawn(async move { writer.batch_execute("INSERT INTO t VALUES (1)").await });
    // Nobody types: the rehearsal ends itself, the insert goes through, and
    // pgpilot exits refused without waiting for the line.
    t.wait_for("rehearsal ended: 1 session(s) waited");
    tokio::time::timeout(Duration::from_secs(15), insert)
        .await
        .expect("the insert completes once the rehearsal ends")
        .expect("task")
        .expect("insert");
    assert_eq!(exit_code(&t, &exit, Duration::from_secs(15)), "3");
    assert_eq!(scalar(&client, "SELECT count(*) FROM t").await, "1");
}

const STATES: &str = r#"
[runbook]
id = "truth-states"
title = "States from the target"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make-x"
  kind = "change"
  sql = "CREATE TABLE x (id int)"
  rollback = "DROP TABLE x"

  [[phase.step]]
  id = "make-y"
  kind = "change"
  sql = "CREATE TABLE y (id int)"
  rollback = "DROP TABLE y"

  [[phase.step]]
  id = "x-has-rows"
  kind = "verify"
  sql = "SELECT count(*) FROM x"
  expect = { scalar = "1" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opens_with_the_states_the_target_holds() {
    let lab = Lab::new();
    let _client = lab.database("truthstates", &[]).await;
    let db = lab.conninfo("truthstates");
    let rb = runbook(&lab, "states.toml", STATES);
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 1, "{ran}");
    let status = lab.run(&["status", &rb, "--db", &db]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("x-has-rows") && l.contains("failed")),
        "{status}"
    );

    // A run: the failed step says so before anything runs.
    let exit = lab.data_dir.path().join("exit-run");
    let t = tui(&lab, &format!("run {rb} --db '{db}'"), &exit);
    let s = t.wait_for("✗ x-has-rows");
    assert!(s.contains("✓ make-x"), "{s}");
    assert!(s.contains("✓ make-y"), "{s}");
    let s = t.wait_for("failed on an earlier run");
    assert!(s.contains("r  run next"), "{s}");
    t.keys(&["q"]);
    exit_code(&t, &exit, Duration::from_secs(15));
    drop(t);

    // A rollback: every applied step shows applied, not pending, before
    // the newest is offered.
    let exit = lab.data_dir.path().join("exit-rollback");
    let t = tui(&lab, &format!("rollback {rb} --db '{db}'"), &exit);
    let s = t.wait_for("✗ x-has-rows");
    assert!(s.contains("on this target:"), "{s}");
    assert!(s.contains("✓ make-x"), "{s}");
    assert!(s.contains("✓ make-y"), "{s}");
    assert!(s.contains("✗ x-has-rows"), "{s}");
    // The list of what it would undo comes first; keep them all, then leave.
    t.wait_for("keep them all");
    t.keys(&["n"]);
    t.keys(&["q"]);
    exit_code(&t, &exit, Duration::from_secs(15));
}

const VERIFIED: &str = r#"
[runbook]
id = "truth-stale"
title = "A verify and what it verified"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make-x"
  kind = "change"
  sql = "CREATE TABLE x (id int)"
  rollback = "DROP TABLE x"

  [[phase.step]]
  id = "x-exists"
  kind = "verify"
  sql = "SELECT to_regclass('x') IS NOT NULL"
  expect = { scalar = "t" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_marks_a_verify_stale_once_what_it_verified_is_rolled_back() {
    let lab = Lab::new();
    let _client = lab.database("truthstale", &[]).await;
    let db = lab.conninfo("truthstale");
    let rb = runbook(&lab, "stale.toml", VERIFIED);
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    let status = lab.run(&["status", &rb, "--db", &db]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("x-exists") && l.contains("passed") && !l.contains("stale")),
        "{status}"
    );
    let mut args: Vec<String> = ["rollback", &rb, "--headless", "--db", &db]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(confirms_for(&rb, true));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    let status = lab.run(&["status", &rb, "--db", &db]);
    assert!(
        status.stdout.lines().any(|l| l.contains("x-exists")
            && l.contains("stale")
            && l.contains("(passed before make-x was rolled back)")),
        "{status}"
    );
    let json = lab.run(&["status", &rb, "--db", &db, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("status json");
    let verify = &doc["steps"][1];
    assert_eq!(verify["status"], "passed", "{verify}");
    assert_eq!(verify["stale_after"], "make-x", "{verify}");
}

const CAPTURE: &str = r#"
[runbook]
id = "truth-capture"
title = "A kept value and a new one"

[[phase]]
id = "p"

  [[phase.step]]
  id = "max-before"
  kind = "check"
  sql = "SELECT max(id) FROM t"
  capture = "max_id"

  [[phase.step]]
  id = "add-note"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN note text"
  rollback = "ALTER TABLE t DROP COLUMN IF EXISTS note"

  [[phase.step]]
  id = "analyze-t"
  kind = "change"
  sql = "ANALYZE t"

  [[phase.step]]
  id = "same-max"
  kind = "verify"
  sql = "SELECT max(id) FROM t"
  expect = { scalar = "{{max_id}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_capture_is_never_compared_silently_and_rollbacks_are_counted() {
    let lab = Lab::new();
    let client = lab.database("truthcapture", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 200273)")
        .await
        .expect("table");
    let db = lab.conninfo("truthcapture");
    let rb = runbook(&lab, "capture.toml", CAPTURE);
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    // Traffic goes on; the runbook is run again.
    client
        .batch_execute("INSERT INTO t VALUES (200301)")
        .await
        .expect("insert");
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stdout.contains(
            "[max-before] {{max_id}}: this run captured \"200301\", but later steps use \"200273\", captured on an earlier run: add-note was applied with it"
        ),
        "{ran}"
    );
    assert!(
        ran.stdout.contains(
            "expected \"200273\", got \"200301\" ({{max_id}} is \"200273\", the value kept from an earlier run for the steps applied since; this run captured \"200301\")"
        ),
        "{ran}"
    );

    // The rollback: a step with nothing to undo is rolled back, as the log
    // and the audit say, and the summary counts both.
    let mut args: Vec<String> = ["rollback", &rb, "--headless", "--db", &db]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(confirms_for(&rb, true));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.contains("[analyze-t] rolled back"), "{ran}");
    assert!(!ran.stdout.contains("[analyze-t] skipped"), "{ran}");
    assert!(
        ran.stdout
            .contains("pgpilot: done (0 applied, 0 checks passed, 2 rolled back)"),
        "{ran}"
    );
}
