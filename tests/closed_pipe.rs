//! A reader that stops early (`pgpilot status … | head`, `plan | less` quit
//! at once) ends pgpilot quietly, as it ends any Unix filter: no panic, no
//! backtrace on the terminal.

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
