//! docs/safety-model.md, "Typed confirmations", in the TUI, end to end
//! through tmux against a real server: after a wrong phrase nothing runs and
//! the dialog reopens saying "that does not match", each attempt audited
//! `wrong`; `Esc` declines, which stops the run: refused, exit 3, audited
//! `declined`, nothing of the step run.

mod common;

use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Lab, runbooks, scalar};
use pgpilot::audit::record::Action;

const DROP: &str = r#"
[runbook]
id = "drop-b"
title = "Drop t.b"

[[phase]]
id = "p"

  [[phase.step]]
  id = "drop"
  kind = "change"
  sql = "ALTER TABLE t DROP COLUMN b"
  rollback = "ALTER TABLE t ADD COLUMN IF NOT EXISTS b int"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_phrase_reopens_the_dialog_and_esc_declines_with_exit_3() {
    let lab = Lab::new();
    let client = lab.database("tui_phrase", &[]).await;
    client
        .batch_execute("CREATE TABLE t (a int, b int)")
        .await
        .expect("table t");
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "drop.toml", DROP);
    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run {rb} --db '{db}'; echo $? > {exit}; sleep 30",
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        db = lab.conninfo("tui_phrase"),
        exit = exit_file.display(),
    );
    let tui = Tmux::start(&cmd);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for("Type drop column t.b to run it.");
    for wrong in ["DROP COLUMN T.B", "drop column t"] {
        tui.text(wrong);
        tui.keys(&["Enter"]);
        let s = tui.wait_for("that does not match");
        assert!(s.contains("Type drop column t.b to run it."), "{s}");
    }
    tui.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "pgpilot did not end after Esc then q:\n{}",
            tui.screen()
        );
        // Once the run has stopped, `q` leaves (it answers nothing else).
        if tui.screen().contains("refused") {
            tui.keys(&["q"]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "3");
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*)::text FROM information_schema.columns WHERE table_name = 't' AND column_name = 'b'",
        )
        .await,
        "1",
        "the column was dropped"
    );
    let recs = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit log");
    let answers: Vec<&str> = recs
        .iter()
        .filter(|r| r.action == Action::Confirmation)
        .filter_map(|r| r.outcome.as_deref())
        .collect();
    assert_eq!(answers, ["wrong", "wrong", "declined"], "{recs:?}");
    assert!(
        !recs
            .iter()
            .any(|r| r.action == Action::StepStart && r.step.as_deref() == Some("drop")),
        "the step started"
    );
}

const PAUSED: &str = r#"
[runbook]
id = "paused"
title = "A pause before a change"

[[phase]]
id = "p"

  [[phase.step]]
  id = "wait"
  kind = "pause"
  instructions = "Post in the on-call channel that the change starts"

  [[phase.step]]
  id = "make"
  kind = "change"
  sql = "CREATE TABLE made (a int)"
"#;

/// docs/safety-model.md, "A wrong phrase": in the TUI a pause takes only
/// `done`; anything else runs nothing, is audited as a wrong answer and the
/// dialog stays open ("that does not match"); `done` then acknowledges it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_tui_a_pause_takes_only_done_and_a_wrong_answer_is_asked_again() {
    let lab = Lab::new();
    let client = lab.database("tui_pause", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "paused.toml", PAUSED);
    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run {rb} --db '{db}'; echo $? > {exit}; sleep 30",
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        db = lab.conninfo("tui_pause"),
        exit = exit_file.display(),
    );
    let made = || async {
        scalar(&client, "SELECT (to_regclass('made') IS NOT NULL)::text").await == "true"
    };
    let tui = Tmux::start(&cmd);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for("when it is done.");
    tui.text("Done");
    tui.keys(&["Enter"]);
    let s = tui.wait_for("that does not match");
    assert!(s.contains("Pause at wait"), "{s}");
    assert!(!made().await, "the step after the pause ran");
    let recs = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit log");
    assert!(
        !recs.iter().any(|r| r.action == Action::PauseAcknowledged),
        "acknowledged on a wrong answer: {recs:?}"
    );
    tui.text("done");
    tui.keys(&["Enter"]);
    tui.wait_for("✓ wait");
    tui.keys(&["r"]);
    tui.wait_for("every step is done");
    tui.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "pgpilot did not end:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
    assert!(made().await);
    let recs = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit log");
    let answers: Vec<&str> = recs
        .iter()
        .filter(|r| r.action == Action::Confirmation && r.step.as_deref() == Some("wait"))
        .filter_map(|r| r.outcome.as_deref())
        .collect();
    assert_eq!(answers, ["wrong", "accepted"], "{recs:?}");
    assert_eq!(
        recs.iter()
            .filter(|r| r.action == Action::PauseAcknowledged)
            .count(),
        1
    );
}
