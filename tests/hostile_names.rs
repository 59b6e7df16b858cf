//! An object name is whatever its creator chose, control characters and
//! bidi overrides included ("t\x1b[2J" is a valid quoted identifier). A
//! runbook that drops such a table must show the name to its reviewer as
//! visible escapes, on every line `plan` prints, never as the sequence.

mod common;

use common::run_bounded;
use std::process::Command;
use std::time::Duration;

/// A CSI screen clear, a C1 CSI and a right-to-left override.
const NAME: &str = "t\u{1b}[2J\u{9b}31m\u{202e}";

fn dangerous(text: &str) -> Option<char> {
    text.chars().find(|c| {
        (c.is_control() && !matches!(c, '\n' | '\t'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

#[test]
fn a_dropped_table_with_controls_in_its_name_is_shown_escaped_by_plan() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("drop.toml");
    // TOML's \u escapes: the file itself holds no control character.
    let quoted = NAME
        .chars()
        .map(|c| {
            if c.is_control() || c == '\u{202e}' {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect::<String>();
    std::fs::write(
        &rb,
        format!(
            r#"[runbook]
id = "drop-hostile-name"
title = "Drop a table named by someone else"

[[phase]]
id = "p"

  [[phase.step]]
  id = "drop"
  kind = "change"
  sql = "DROP TABLE \"{quoted}\""
  irreversible = "it was a scratch table"
"#
        ),
    )
    .unwrap();
    let rb = rb.display().to_string();
    for args in [vec!["plan", rb.as_str()], vec!["check", rb.as_str()]] {
        let ran = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_pgpilot"))
                .args(&args)
                .env("NO_COLOR", "1"),
            Duration::from_secs(60),
        );
        assert_eq!(ran.code, 0, "{}\n{ran}", args.join(" "));
        for (stream, text) in [("stdout", &ran.stdout), ("stderr", &ran.stderr)] {
            if let Some(c) = dangerous(text) {
                panic!(
                    "{} ({stream}) passes {c:?} to the terminal:\n{text}",
                    args[0]
                );
            }
        }
        if args[0] == "plan" {
            // The step's headline names the table, escaped, like its SQL.
            let headline = ran
                .stdout
                .lines()
                .find(|l| l.contains("HIGH risk"))
                .unwrap_or_else(|| panic!("no headline:\n{ran}"));
            assert!(
                headline.contains(r#"drop table "t\x1b[2J\x9b31m\u{202e}""#),
                "{headline}"
            );
        }
    }
}
