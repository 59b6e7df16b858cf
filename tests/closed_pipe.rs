//! A reader that stops early (`pgpilot status … | head`, `plan | less` quit
//! at once) ends pgpilot quietly, as it ends any Unix filter: no panic, no
//! backtrace on the terminal. A `run` whose reader is gone goes on to its
//! end with its audit whole: a closed pipe never stops a session between a
//! statement and its record.

mod common;

use std::process::{Command, Stdio};

/// Runs pgpilot with its stdout a pipe nobody reads any more: the read end
/// is closed before pgpilot starts, so its first write meets a closed pipe.
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run pgpilot");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn printing_commands_end_quietly_when_the_reader_is_gone() {
    for args in [
        &["plan", "runbooks/demo.toml"][..],
        &["plan", "runbooks/demo.toml", "--format", "json"],
        &["check", "runbooks/demo.toml", "--format", "json"],
    ] {
        let (status, stderr) = with_closed_stdout(args);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("BACKTRACE"),
            "pgpilot {args:?} into a closed pipe printed a panic:\n{stderr}"
        );
        assert_ne!(
            status.code(),
            Some(101),
            "pgpilot {args:?} into a closed pipe exited as a panic"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_run_whose_reader_is_gone_finishes_with_its_audit_whole() {
    let lab = common::Lab::new();
    let client = lab.database("closed_pipe", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("two.toml");
    std::fs::write(
        &rb,
        r#"
[runbook]
id = "closed-pipe"
title = "Two steps"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make"
  kind = "change"
  sql = "CREATE TABLE t (a int)"

  [[phase.step]]
  id = "fill"
  kind = "change"
  sql = "INSERT INTO t SELECT generate_series(1, 10)"
"#,
    )
    .expect("runbook");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let rb = rb.to_str().expect("utf-8");
    let db = lab.conninfo("closed_pipe");
    let out = lab
        .command(&["run", rb, "--headless", "--db", &db])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run pgpilot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        common::scalar(&client, "SELECT count(*) FROM t").await,
        "10"
    );
    let audit = std::fs::read_to_string(lab.audit_file()).expect("audit");
    assert_eq!(
        audit.matches("\"action\":\"step_success\"").count(),
        2,
        "{audit}"
    );
    assert!(audit.contains("\"action\":\"session_end\""), "{audit}");
}
