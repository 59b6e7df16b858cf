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
