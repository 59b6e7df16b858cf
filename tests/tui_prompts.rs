//! The TUI's prompts as state: what the screen holds and what each key
//! answers after a failure, at the blockers, while waiting, and before a
//! multi-step rollback; driven by engine events and keys, without a terminal.

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pgpilot::check::check_file;
use pgpilot::engine::{Ask, EngineEvent, Reply, StepOutcome};
use pgpilot::monitor::Holder;
use pgpilot::tui::app::{App, DialogKind, SessionKind, StepState};
use pgpilot::tui::keys::defaults;
use pgpilot::tui::update::{Command, handle_key};
use pgpilot::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn app(kind: SessionKind) -> App {
    let c = check_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/users-high-risk-change.toml"
    )))
    .expect("sample runbook");
    App::new(
        &c.runbook,
        &c.analysis,
        kind,
        Some("staging".into()),
        "postgres@db1:5432/diagnosticpro".into(),
        defaults(),
    )
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

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

fn holder(pid: i32) -> Holder {
    Holder {
        pid,
        backend_type: "client backend".into(),
        user: Some("report".into()),
        application: "nightly-report".into(),
        client: "10.0.0.9".into(),
        state: "idle in transaction".into(),
        wait_event_type: Some("Client".into()),
        wait_event: Some("ClientRead".into()),
        mode: "AccessShareLock".into(),
        relation: "users".into(),
        xact_age_s: Some(40.0),
        query: "SELECT count(*) FROM users".into(),
    }
}

fn failed(app: &mut App, step: &str, rollback_available: bool) {
    app.on_engine(EngineEvent::StepFailed {
        step: step.into(),
        sqlstate: Some("55P03".into()),
        message: "canceling statement due to lock timeout".into(),
    });
    app.on_engine(EngineEvent::Asks(Ask::Failed {
        step: step.into(),
        message: "step failed [55P03]: canceling statement due to lock timeout".into(),
        rollback_available,
    }));
}

#[test]
fn after_a_failure_r_retries_and_the_prompt_closes() {
    let mut a = app(SessionKind::Run);
    failed(&mut a, "drop-legacy-id", false);
    assert_eq!(a.steps[a.selected].id, "drop-legacy-id");
    let s = screen(&a, 160, 45);
    assert!(
        s.contains("r retry · s skip (asks a reason) · q quit"),
        "{s}"
    );
    assert!(
        s.contains(" r  retry ") && s.contains(" b  roll back "),
        "{s}"
    );
    assert_eq!(
        handle_key(&mut a, key('r')),
        Some(Command::Reply(Reply::Run))
    );
    assert!(a.failed.is_none());
    // A second r answers nothing: no question is open.
    assert_eq!(handle_key(&mut a, key('r')), None);
}

#[test]
fn after_a_failure_s_asks_a_reason_and_esc_keeps_the_prompt() {
    let mut a = app(SessionKind::Run);
    failed(&mut a, "drop-legacy-id", false);
    assert_eq!(handle_key(&mut a, key('s')), None);
    assert!(matches!(
        a.dialog.as_ref().map(|d| &d.kind),
        Some(DialogKind::SkipReason { step }) if step == "drop-legacy-id"
    ));
    handle_key(&mut a, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(a.failed.is_some(), "Esc goes back to the failure prompt");
    handle_key(&mut a, key('s'));
    let typed: Vec<Command> = "done by hand"
        .chars()
        .filter_map(|c| handle_key(&mut a, key(c)))
        .collect();
    assert!(typed.is_empty());
    assert_eq!(
        handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        Some(Command::Reply(Reply::Skip("done by hand".into())))
    );
    assert!(a.failed.is_none());
}

#[test]
fn after_a_failure_b_needs_an_applied_step_selected_and_q_quits() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::StepDone {
        step: "backup-legacy-id".into(),
        outcome: StepOutcome::Applied,
        duration: std::time::Duration::from_millis(20),
        rows: None,
        captured: None,
    });
    failed(&mut a, "drop-legacy-id", true);
    // The failed step is selected: it is not applied, b says what to do.
    assert_eq!(handle_key(&mut a, key('b')), None);
    assert!(a.failed.is_some());
    assert!(
        a.log
            .last()
            .unwrap()
            .text
            .contains("select the applied step")
    );
    let backup = a
        .steps
        .iter()
        .position(|s| s.id == "backup-legacy-id")
        .unwrap();
    a.selected = backup;
    assert_eq!(a.steps[backup].state, StepState::Applied);
    assert_eq!(
        handle_key(&mut a, key('b')),
        Some(Command::Reply(Reply::RollbackThrough(
            "backup-legacy-id".into()
        )))
    );
    failed(&mut a, "drop-legacy-id", true);
    assert_eq!(
        handle_key(&mut a, key('q')),
        Some(Command::Reply(Reply::Quit))
    );
    assert!(a.quit);
}

#[test]
fn at_the_blockers_a_aborts_the_step_and_w_then_p_proceeds_while_waiting() {
    let mut a = app(SessionKind::Run);
    let ask = Ask::Blockers {
        step: "drop-legacy-id".into(),
        holders: vec![holder(123)],
    };
    a.on_engine(EngineEvent::Asks(ask.clone()));
    let s = screen(&a, 160, 45);
    assert!(s.contains("abort step (back to the list)"), "{s}");
    assert_eq!(
        handle_key(&mut a, key('a')),
        Some(Command::Reply(Reply::Quit))
    );
    assert!(a.dialog.is_none());

    a.on_engine(EngineEvent::Asks(ask));
    assert_eq!(
        handle_key(&mut a, key('w')),
        Some(Command::Reply(Reply::Wait))
    );
    let s = screen(&a, 160, 45);
    assert!(
        s.contains(
            "waiting for pid 123 (nightly-report) to finish — p proceeds, a aborts this step"
        ),
        "{s}"
    );
    assert!(
        s.contains(" p  proceed ") && s.contains(" a  abort step "),
        "{s}"
    );
    // The engine names who still holds the locks as that changes.
    a.on_engine(EngineEvent::WaitingForBlockers {
        step: "drop-legacy-id".into(),
        holders: vec![holder(456)],
    });
    assert!(screen(&a, 160, 45).contains("waiting for pid 456 (nightly-report)"));
    assert_eq!(
        handle_key(&mut a, key('p')),
        Some(Command::Reply(Reply::Run))
    );
    assert!(a.waiting.is_none());
    // Once the step starts the wait is over: p answers nothing.
    a.on_engine(EngineEvent::StepStarted {
        step: "drop-legacy-id".into(),
        attempt: 1,
        of: 1,
    });
    assert_eq!(handle_key(&mut a, key('p')), None);
}

#[test]
fn the_rollback_list_is_shown_with_each_phrase_and_answered_once() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::Asks(Ask::RollbackList {
        steps: vec!["drop-legacy-id".into(), "backup-legacy-id".into()],
    }));
    let s = screen(&a, 160, 45);
    assert!(
        s.contains("These 2 applied steps are rolled back, newest first:"),
        "{s}"
    );
    assert!(s.contains("• drop-legacy-id"), "{s}");
    assert!(s.contains("y roll them back · n keep them all"), "{s}");
    assert_eq!(
        handle_key(&mut a, key('n')),
        Some(Command::Reply(Reply::Quit))
    );
    a.on_engine(EngineEvent::Asks(Ask::RollbackList {
        steps: vec!["drop-legacy-id".into(), "backup-legacy-id".into()],
    }));
    // Typing is not how it is answered: other keys do nothing.
    assert_eq!(handle_key(&mut a, key('x')), None);
    assert_eq!(
        handle_key(&mut a, key('y')),
        Some(Command::Reply(Reply::Run))
    );
}

#[test]
fn the_rollback_screen_shows_what_the_rollback_restores() {
    let mut a = app(SessionKind::Rollback);
    a.selected = a
        .steps
        .iter()
        .position(|s| s.id == "drop-legacy-id")
        .unwrap();
    let s = screen(&a, 160, 45);
    assert!(s.contains("restores what drop-legacy-id changed"), "{s}");
    assert!(s.contains("undoes: "), "{s}");
    // The forward step's own phrase is not what a rollback asks.
    let forward = a.steps[a.selected].confirm.clone().unwrap();
    assert!(!s.contains(&format!("asks you to type: {forward}")), "{s}");
}
