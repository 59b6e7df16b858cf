//! The TUI's step panel shows what the analysis says of a step (its locks,
//! its findings, the phrase it asks) with the names of the objects it
//! touches. ratatui drops a bidi override silently, so a table named
//! "t\u{202e}x" would read as "tx" there, while the SQL line shows it
//! escaped: every line must show the name as the SQL line does.

use std::path::Path;

use pgpilot::check::check_file;
use pgpilot::tui::app::{App, SessionKind};
use pgpilot::tui::keys::defaults;
use pgpilot::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| draw(f, app)).expect("draw");
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn the_step_panel_shows_a_hostile_name_as_its_sql_line_does() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("bidi.toml");
    std::fs::write(
        &rb,
        r#"[runbook]
id = "bidi-name"
title = "Drop a table with a bidi override in its name"

[[phase]]
id = "p"

  [[phase.step]]
  id = "drop"
  kind = "change"
  sql = "DROP TABLE \"t\u202ex\""
  irreversible = "scratch"
"#,
    )
    .unwrap();
    let c = check_file(Path::new(&rb)).expect("the runbook checks");
    let app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        Some("staging".into()),
        "postgres@db1:5432/app".into(),
        defaults(),
    );
    let shown = screen(&app, 160, 45);
    let escaped = r#""t\u{202e}x""#;
    assert!(shown.contains(&format!("DROP TABLE {escaped}")), "{shown}");
    for line in shown.lines() {
        assert!(
            !line.contains(r#""tx""#),
            "a line shows the name without its override: {line}\n{shown}"
        );
    }
    assert!(
        shown.contains(&format!("asks you to type: drop table {escaped}")),
        "{shown}"
    );
}
