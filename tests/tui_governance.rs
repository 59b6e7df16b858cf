//! The TUI header during a governed run: the approvals counted, the change
//! window's time left, and an emergency's banner (TestBackend).

use std::path::Path;
use std::time::Duration;

use pgpilot::check::check_file;
use pgpilot::engine::EngineEvent;
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
fn the_header_shows_the_approvals_the_window_left_and_an_emergency() {
    let c = check_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/users-high-risk-change.toml"
    )))
    .expect("sample runbook");
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        Some("production".into()),
        "postgres@db1:5432/diagnosticpro".into(),
        defaults(),
    );
    app.emergency = Some("checkout down: INC-9".into());
    app.on_engine(EngineEvent::Guard {
        name: "approvals".into(),
        passed: true,
        detail: "approved: owner by bob 3 min ago".into(),
    });
    app.on_engine(EngineEvent::WindowOpen {
        window: "Sat 02:00-04:00 Europe/Berlin".into(),
        closes_in: Duration::from_secs(90 * 60),
    });
    let s = screen(&app, 160, 40);
    let header: Vec<&str> = s.lines().take(3).collect();
    assert!(
        header[0].contains("EMERGENCY — checkout down: INC-9"),
        "{s}"
    );
    assert!(
        header[2].contains("window Sat 02:00-04:00 Europe/Berlin: 1 h 29 min left"),
        "{s}"
    );
    assert!(
        header[2].contains("approved: owner by bob 3 min ago"),
        "{s}"
    );
}

#[test]
fn a_step_that_may_outlast_the_window_asks_continue_or_stop() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use pgpilot::engine::{Ask, Reply};
    use pgpilot::tui::update::{Command, handle_key};

    let c = check_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/users-high-risk-change.toml"
    )))
    .expect("sample runbook");
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        Some("production".into()),
        "postgres@db1:5432/diagnosticpro".into(),
        defaults(),
    );
    let ask = Ask::PastWindow {
        step: "drop-legacy-id".into(),
        expected: "5min".into(),
        source: "forecast".into(),
        left: "2min".into(),
    };
    let key = |c: char| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    app.on_engine(EngineEvent::Asks(ask.clone()));
    let s = screen(&app, 160, 40);
    // The dialog wraps its first line.
    assert!(
        s.contains("drop-legacy-id may take 5min (forecast): the change window closes in"),
        "{s}"
    );
    assert!(s.contains("│2min."), "{s}");
    assert!(
        s.contains("c continue anyway · x stop before the step"),
        "{s}"
    );
    // Typing is not answering: only the prompt's keys do.
    assert_eq!(handle_key(&mut app, key('q')), None);
    assert_eq!(
        handle_key(&mut app, key('c')),
        Some(Command::Reply(Reply::Run))
    );
    assert!(app.dialog.is_none());
    app.on_engine(EngineEvent::Asks(ask));
    assert_eq!(
        handle_key(&mut app, key('x')),
        Some(Command::Reply(Reply::Quit))
    );
}
