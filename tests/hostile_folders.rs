//! A migration folder under review is someone else's work: its file names
//! and the files it holds (a sqitch.conf naming its plan anywhere, a FIFO
//! where a configuration file belongs) must not reach a terminal as control
//! sequences, nor make `check` hang, read without end or read outside the
//! folder.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Ran, run_bounded};

fn pgpilot(dir: &Path, args: &[&str]) -> Ran {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_pgpilot"))
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1"),
        Duration::from_secs(30),
    )
}

fn dangerous(text: &str) -> Option<char> {
    text.chars().find(|c| {
        (c.is_control() && !matches!(c, '\n' | '\t'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn import_writes_hostile_file_names_as_toml_escapes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V1__init.sql"),
        "CREATE TABLE a (id int);\n",
    )
    .unwrap();
    // DEL, a C1 CSI and a right-to-left override in a Flyway file name.
    let evil = "V2__del\u{7f}x\u{9b}31m\u{202e}txt.sql";
    std::fs::write(dir.path().join(evil), "SELECT 1;\n").unwrap();

    let import = pgpilot(dir.path(), &["import", "."]);
    assert_eq!(import.code, 0, "{import}");
    if let Some(c) = dangerous(&import.stdout) {
        panic!("import passes {c:?} to the terminal:\n{}", import.stdout);
    }
    // The runbook written is valid TOML naming the very file.
    let rb = dir.path().join("imported.toml");
    let written = pgpilot(dir.path(), &["import", ".", "-o", "imported.toml"]);
    assert_eq!(written.code, 0, "{written}");
    let text = std::fs::read_to_string(&rb).unwrap();
    assert!(dangerous(&text).is_none(), "{text}");
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let files: Vec<String> = doc["phase"].as_array().unwrap()[0]["step"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap().to_string())
        .collect();
    assert!(files.iter().any(|f| f == evil), "{files:?}");
    // And the folder, run through its runbook on the fly, checks.
    let check = pgpilot(dir.path(), &["check", "."]);
    assert_eq!(check.code, 0, "{check}");
    let check = pgpilot(dir.path(), &["check", "imported.toml"]);
    assert_eq!(check.code, 0, "{check}");
}

fn sqitch_project(dir: &Path, conf_extra: &str) {
    std::fs::create_dir_all(dir.join("deploy")).unwrap();
    std::fs::write(
        dir.join("sqitch.conf"),
        format!("[core]\n  engine = pg\n{conf_extra}"),
    )
    .unwrap();
    std::fs::write(dir.join("deploy/c1.sql"), "CREATE TABLE c1 (id int);\n").unwrap();
}

const PLAN: &str =
    "%syntax-version=1.0.0\n%project=p\n\nc1 2026-01-01T00:00:00Z A <a@example.com> # first\n";

#[test]
fn a_sqitch_plan_is_read_only_from_the_project_folder() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("sqitch.plan"), PLAN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // plan_file naming a file outside the folder, absolute or by `..`.
    let absolute = outside.path().join("sqitch.plan");
    for plan_file in [absolute.display().to_string(), "../x/sqitch.plan".into()] {
        let project = dir.path().join("p");
        let _ = std::fs::remove_dir_all(&project);
        sqitch_project(&project, &format!("  plan_file = {plan_file}\n"));
        if plan_file.starts_with("..") {
            std::os::unix::fs::symlink(outside.path(), dir.path().join("x")).unwrap();
        }
        let ran = pgpilot(dir.path(), &["check", "p"]);
        assert_eq!(ran.code, 1, "plan_file = {plan_file}\n{ran}");
        assert!(
            ran.stderr.contains("sqitch.conf")
                && ran.stderr.contains("outside the project's folder"),
            "plan_file = {plan_file}\n{ran}"
        );
    }
    // A plan linked from elsewhere is outside too.
    let project = dir.path().join("linked");
    sqitch_project(&project, "");
    std::os::unix::fs::symlink(absolute, project.join("sqitch.plan")).unwrap();
    let ran = pgpilot(dir.path(), &["check", "linked"]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("outside the project's folder"), "{ran}");
}

#[test]
fn fifos_and_devices_in_a_folder_fail_check_at_once() {
    // A sqitch plan that is a FIFO, and one that is /dev/zero.
    let dir = tempfile::tempdir().unwrap();
    let fifo_plan = dir.path().join("fifo");
    sqitch_project(&fifo_plan, "");
    mkfifo(&fifo_plan.join("sqitch.plan"));
    let zero_plan = dir.path().join("zero");
    sqitch_project(&zero_plan, "  plan_file = zero.plan\n");
    std::os::unix::fs::symlink("/dev/zero", zero_plan.join("zero.plan")).unwrap();
    // A sqitch.conf that is a FIFO beside a real plan.
    let fifo_conf = dir.path().join("conf");
    sqitch_project(&fifo_conf, "");
    std::fs::remove_file(fifo_conf.join("sqitch.conf")).unwrap();
    std::fs::write(fifo_conf.join("sqitch.plan"), PLAN).unwrap();
    mkfifo(&fifo_conf.join("sqitch.conf"));
    // Flyway: a per-script configuration and the folder's id file.
    let flyway_conf = dir.path().join("flyway-conf");
    std::fs::create_dir(&flyway_conf).unwrap();
    std::fs::write(flyway_conf.join("V1__a.sql"), "SELECT 1;\n").unwrap();
    mkfifo(&flyway_conf.join("V1__a.sql.conf"));
    let flyway_id = dir.path().join("flyway-id");
    std::fs::create_dir(&flyway_id).unwrap();
    std::fs::write(flyway_id.join("V1__a.sql"), "SELECT 1;\n").unwrap();
    mkfifo(&flyway_id.join(".pgpilot-id"));

    for (folder, culprit) in [
        ("fifo", "sqitch.plan"),
        ("zero", "zero.plan"),
        ("conf", "sqitch.conf"),
        ("flyway-conf", "V1__a.sql.conf"),
        ("flyway-id", ".pgpilot-id"),
    ] {
        // run_bounded fails the test if pgpilot hangs or reads without end.
        let ran = pgpilot(dir.path(), &["check", folder]);
        assert_eq!(ran.code, 1, "{folder}\n{ran}");
        // /dev/zero, reached by a link, is outside the folder before it is
        // anything else.
        let why = if folder == "zero" {
            "outside the project's folder"
        } else {
            "not a regular file"
        };
        assert!(
            ran.stderr.contains(culprit) && ran.stderr.contains(why),
            "{folder}: the error names {culprit}\n{ran}"
        );
    }
}
