//! Leaving the TUI tells what happened: after `q` the terminal keeps a
//! summary of the session. And the demo's blocker prompt leads on whatever
//! the operator answers. Driven through tmux against a real server.

mod common;

use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Lab, column, connect};

const RUNBOOK: &str = r#"
[runbook]
id = "leave-summary"
title = "Leaving tells what happened"

[settings]
lock_timeout = "300ms"
lock_retries = 30
retry_backoff = "100ms"

[[phase]]
id = "only"
title = "The only phase"

  [[phase.step]]
  id = "count-before"
  kind = "check"
  sql = "SELECT count(*) FROM parts"

  [[phase.step]]
  id = "add-note"
  kind = "change"
  sql = "ALTER TABLE parts ADD COLUMN note text"
  rollback = "ALTER TABLE parts DROP COLUMN IF EXISTS note"

  [[phase.step]]
  id = "note-exists"
  kind = "verify"
  sql = "SELECT 1 FROM information_schema.columns WHERE table_name = 'parts' AND column_name = 'note'"
  expect = { rows = 1 }
"#;

/// Waits until `file` exists (pgpilot wrote its exit code), failing with the screen.
fn wait_for_exit(tui: &Tmux, file: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "pgpilot did not exit:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_q_the_terminal_keeps_a_summary_of_the_session() {
    let lab = Lab::new();
    let client = lab.database("leave", &[]).await;
    client
        .batch_execute("CREATE TABLE parts (id int PRIMARY KEY); INSERT INTO parts VALUES (1), (2)")
        .await
        .unwrap();
    let db = lab.conninfo("leave");
    let runbook = lab.data_dir.path().join("leave.toml");
    std::fs::write(&runbook, RUNBOOK).unwrap();
    // An earlier session made pgpilot's schema: this one's DDL on it says
    // "already exists", which is pgpilot's own and no step's output.
    let warm = lab.data_dir.path().join("warm.toml");
    std::fs::write(
        &warm,
        RUNBOOK
            .replace("leave-summary", "warm-up")
            .split("[[phase.step]]\n  id = \"add-note\"")
            .next()
            .unwrap(),
    )
    .unwrap();
    let ran = lab.run(&["run", warm.to_str().unwrap(), "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");

    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run {runbook} --db '{db}'; echo $? > {exit}; sleep 30",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        runbook = runbook.display(),
        exit = exit_file.display(),
    );
    let tui = Tmux::sized(&cmd, 80, 24);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    let s = tui.wait_for("[count-before] passed");
    assert!(!s.contains("already exists"), "{s}");

    // A reader holds the table: the ALTER waits out its lock_timeout and retries.
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM parts")
        .await
        .unwrap();
    tui.keys(&["r"]);
    tui.wait_for("hold locks add-note needs");
    tui.keys(&["p"]);
    tui.wait_for("[add-note] attempt 1/31");
    holder.batch_execute("COMMIT").await.unwrap();
    tui.wait_for("[add-note] applied");
    tui.keys(&["r"]);
    tui.wait_for("every step is done");
    tui.keys(&["q"]);
    assert_eq!(wait_for_exit(&tui, &exit_file), "0");

    let s = tui.wait_for("audit log:");
    assert!(
        !s.contains("┌ Runbook"),
        "the TUI left its screen behind:\n{s}"
    );
    assert!(
        s.contains("pgpilot run of leave-summary: done (exit 0)"),
        "{s}"
    );
    let line = |id: &str| {
        s.lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_else(|| panic!("no line for {id}:\n{s}"))
            .to_string()
    };
    assert!(line("count-before").contains("passed"), "{s}");
    let add = line("add-note");
    assert!(
        add.contains("applied") && (add.contains(" s ") || add.contains(" ms ")),
        "{add}"
    );
    let retries = lab_retries(&lab);
    assert!(retries >= 1, "the audit has no retry");
    let said = if retries == 1 {
        "1 retry".to_string()
    } else {
        format!("{retries} retries")
    };
    assert!(add.contains(&said), "{add} (audit: {said})");
    assert!(line("note-exists").contains("passed"), "{s}");
    assert!(
        s.contains(&format!(
            "steps: 1 applied, 2 passed\nlock-timeout retries: {retries}"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!("audit log: {}", lab.audit_file().display())),
        "{s}"
    );
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(!audit.contains("already exists"), "{audit}");
    assert_eq!(
        column(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'parts' AND column_name = 'note'"
        )
        .await,
        ["1"]
    );
}

/// Retries of add-note the audit recorded.
fn lab_retries(lab: &Lab) -> usize {
    std::fs::read_to_string(lab.audit_file())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"action\":\"retry\"") && l.contains("\"step\":\"add-note\""))
        .count()
}

#[test]
fn w_at_the_demos_blocker_prompt_leads_on() {
    let data = tempfile::tempdir().unwrap();
    let exit_file = data.path().join("exit");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} demo; echo $? > {exit}; sleep 30",
        root = common::ROOT,
        data = data.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        exit = exit_file.display(),
    );
    let tui = Tmux::start(&cmd);
    // The demo starts a primary and a streaming standby first: under a
    // loaded test run that can take longer than one wait_for.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !tui.screen().contains("r  run next") {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never opened:\n{}",
            tui.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for step in ["no-long-transactions", "tables-exist", "no-orphan-readings"] {
        tui.wait_for("r  run next");
        tui.keys(&["r"]);
        tui.wait_for(&format!("[{step}] passed"));
    }
    tui.keys(&["r"]);
    tui.wait_for("hold locks add-battery-column needs");
    tui.keys(&["w"]);
    // The staged report gives way to an operator who waits for it.
    tui.wait_for("the blockers are gone");
    tui.wait_for("[add-battery-column] applied");
    tui.keys(&["q"]);
    let code = wait_for_exit(&tui, &exit_file);
    // Quitting before the last step is a refusal (exit 3), not a hang.
    assert!(["0", "3"].contains(&code.as_str()), "exit {code}");
}
