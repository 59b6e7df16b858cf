//! Recovering in place in the TUI, driven through tmux like a person would,
//! against a real server with a real blocker: a step that failed on its lock
//! is retried without leaving; `a` at the blockers returns to the step list
//! and `w` says whom it waits for; a multi-step `b` lists what it will undo
//! before any phrase; the rollback screen shows what the rollback runs.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Lab, column, connect, scalar};

/// A check, then two changes whose ACCESS EXCLUSIVE waits 200 ms, retried once.
const RUNBOOK: &str = r#"
[runbook]
id = "recover-in-place"
title = "Recover in place"
change_type = "minor"

[settings]
lock_timeout = "200ms"
lock_retries = 1
retry_backoff = "10ms"

[[phase]]
id = "p"

  [[phase.step]]
  id = "count"
  kind = "check"
  sql = "SELECT count(*) FROM users"

  [[phase.step]]
  id = "add-note"
  kind = "change"
  sql = "ALTER TABLE users ADD COLUMN note text"
  rollback = "ALTER TABLE users DROP COLUMN IF EXISTS note"

  [[phase.step]]
  id = "add-flag"
  kind = "change"
  sql = "ALTER TABLE users ADD COLUMN flag boolean"
  rollback = "ALTER TABLE users DROP COLUMN IF EXISTS flag"
"#;

/// A lab with the diagnosticpro database and the runbook above on disk.
async fn setup() -> (Lab, tokio_postgres::Client, PathBuf) {
    let lab = Lab::new();
    let client = lab.database("diagnosticpro", &["diagnosticpro.sql"]).await;
    // An autovacuum worker's lock on users would fail a 200 ms lock_timeout
    // the test expects to be met.
    client
        .batch_execute("ALTER TABLE users SET (autovacuum_enabled = off)")
        .await
        .unwrap();
    // A worker that started before is not stopped by that: wait for it.
    common::until_sql(
        &client,
        "no autovacuum worker in this database",
        Duration::from_secs(60),
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = current_database())",
    )
    .await;
    let runbook = lab.data_dir.path().join("recover.toml");
    std::fs::write(&runbook, RUNBOOK).unwrap();
    (lab, client, runbook)
}

/// pgpilot `args` in tmux; its exit code lands in the returned file.
fn start(lab: &Lab, args: &str) -> (Tmux, PathBuf) {
    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} {args} --db '{db}'; echo $? > {exit}; sleep 30",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        db = lab.conninfo("diagnosticpro"),
        exit = exit_file.display(),
    );
    (Tmux::start(&cmd), exit_file)
}

/// The exit code once pgpilot has ended (10 s at most).
fn exit_code(tui: &Tmux, exit_file: &PathBuf) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "pgpilot did not exit:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(exit_file)
        .unwrap()
        .trim()
        .to_string()
}

async fn states(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT step_id || '=' || status FROM pgpilot.step_state WHERE runbook_id = 'recover-in-place' ORDER BY step_id",
    )
    .await
}

/// A session in a transaction that has read users: it holds ACCESS SHARE.
async fn reader(lab: &Lab) -> (tokio_postgres::Client, String) {
    let holder = connect(&lab.conninfo("diagnosticpro")).await;
    holder
        .batch_execute("SET application_name = 'nightly-report'; BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    let pid = scalar(&holder, "SELECT pg_backend_pid()").await;
    (holder, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_failed_on_its_lock_is_retried_in_place_and_the_session_ends_0() {
    let (lab, client, runbook) = setup().await;
    let (holder, _pid) = reader(&lab).await;
    let (tui, exit_file) = start(&lab, &format!("run {}", runbook.display()));
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for("[count] passed");
    tui.keys(&["r"]);
    tui.wait_for("hold locks add-note needs");
    tui.keys(&["p"]);
    // Both attempts time out on the lock: the session stays, and says what now.
    let s = tui.wait_for("r retry · s skip (asks a reason)");
    assert!(s.contains("attempt 1/2"), "{s}");
    assert!(s.contains("[add-note] FAILED"), "{s}");
    assert!(s.contains("q quit"), "{s}");
    assert!(
        s.contains(" r  retry ") && s.contains(" s  skip ") && s.contains(" q  quit "),
        "the footer offers the failure prompt's keys:\n{s}"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    tui.keys(&["r"]);
    tui.wait_for("[add-note] applied");
    tui.keys(&["r"]);
    tui.wait_for("every step is done");
    tui.keys(&["q"]);
    assert_eq!(exit_code(&tui, &exit_file), "0", "{}", tui.screen());
    assert_eq!(
        states(&client).await,
        ["add-flag=applied", "add-note=applied", "count=passed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_at_the_blockers_keeps_the_step_pending_and_waiting_names_the_blocker() {
    let (lab, client, runbook) = setup().await;
    let (holder, pid) = reader(&lab).await;
    let (tui, exit_file) = start(&lab, &format!("run {}", runbook.display()));
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for("[count] passed");
    tui.keys(&["r"]);
    tui.wait_for("hold locks add-note needs");
    tui.keys(&["a"]);
    // Back at the step list: nothing of add-note ran, and r asks for it again.
    let s = tui.wait_for("aborted at the blockers");
    assert!(s.contains("r  run next"), "{s}");
    assert!(s.contains("add-note") && s.contains("pending"), "{s}");
    assert!(!s.contains("refused"), "{s}");
    tui.keys(&["r"]);
    tui.wait_for("hold locks add-note needs");
    tui.keys(&["w"]);
    let s = tui.wait_for(&format!(
        "waiting for pid {pid} (nightly-report) to finish — p proceeds, a aborts this step"
    ));
    assert!(s.contains(" p  proceed "), "{s}");
    // p while waiting: it runs now, and lock_timeout bounds it.
    tui.keys(&["p"]);
    tui.wait_for("r retry · s skip (asks a reason)");
    holder.batch_execute("COMMIT").await.unwrap();
    tui.keys(&["r"]);
    tui.wait_for("[add-note] applied");
    tui.keys(&["r"]);
    tui.wait_for("every step is done");
    tui.keys(&["q"]);
    assert_eq!(exit_code(&tui, &exit_file), "0", "{}", tui.screen());
    assert_eq!(
        states(&client).await,
        ["add-flag=applied", "add-note=applied", "count=passed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_step_b_lists_what_it_undoes_before_any_phrase() {
    let (lab, client, runbook) = setup().await;
    let (tui, exit_file) = start(&lab, &format!("run {}", runbook.display()));
    tui.wait_for("r  run next");
    for step in ["count] passed", "add-note] applied", "add-flag] applied"] {
        tui.keys(&["r"]);
        tui.wait_for(step);
    }
    tui.wait_for("every step is done");
    // add-flag ran last and is selected; up one to add-note, then b.
    tui.keys(&["k"]);
    tui.keys(&["b"]);
    let s = tui.wait_for("These 2 applied steps are rolled back, newest first:");
    assert!(
        s.contains("add-flag — asks you to type rollback drop column users.flag"),
        "{s}"
    );
    assert!(
        s.contains("add-note — asks you to type rollback drop column users.note"),
        "{s}"
    );
    assert!(
        !s.contains("to run it."),
        "no phrase is asked before the list:\n{s}"
    );
    tui.keys(&["y"]);
    tui.wait_for("Type rollback drop column users.flag to run it.");
    tui.text("rollback drop column users.flag");
    tui.keys(&["Enter"]);
    tui.wait_for("Type rollback drop column users.note to run it.");
    tui.text("rollback drop column users.note");
    tui.keys(&["Enter"]);
    tui.wait_for("[add-note] rolled back");
    tui.keys(&["q"]);
    assert_eq!(exit_code(&tui, &exit_file), "0", "{}", tui.screen());
    assert_eq!(
        states(&client).await,
        [
            "add-flag=rolled_back",
            "add-note=rolled_back",
            "count=passed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_screen_shows_what_the_rollback_runs_and_restores() {
    let (lab, client, runbook) = setup().await;
    let runbook = runbook.to_str().unwrap();
    let ran = lab.run(&[
        "run",
        runbook,
        "--headless",
        "--db",
        &lab.conninfo("diagnosticpro"),
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    let (tui, exit_file) = start(&lab, &format!("rollback {runbook}"));
    // The command is the list; the TUI still shows it once before anything runs.
    tui.wait_for("These 2 applied steps are rolled back, newest first:");
    tui.keys(&["y"]);
    let s = tui.wait_for("restores what add-flag changed");
    assert!(
        s.contains("ALTER TABLE users DROP COLUMN IF EXISTS flag"),
        "{s}"
    );
    assert!(
        s.contains("asks you to type: rollback drop column users.flag"),
        "{s}"
    );
    assert!(s.contains("ACCESS EXCLUSIVE on users"), "{s}");
    assert!(
        s.contains("undoes: ALTER TABLE users ADD COLUMN flag boolean"),
        "{s}"
    );
    tui.keys(&["r"]);
    tui.wait_for("Type rollback drop column users.flag to run it.");
    tui.text("rollback drop column users.flag");
    tui.keys(&["Enter"]);
    tui.wait_for("restores what add-note changed");
    tui.keys(&["r"]);
    tui.wait_for("Type rollback drop column users.note to run it.");
    tui.text("rollback drop column users.note");
    tui.keys(&["Enter"]);
    tui.wait_for("press q to leave");
    tui.keys(&["q"]);
    assert_eq!(exit_code(&tui, &exit_file), "0", "{}", tui.screen());
    assert_eq!(
        states(&client).await,
        [
            "add-flag=rolled_back",
            "add-note=rolled_back",
            "count=passed"
        ]
    );
}
