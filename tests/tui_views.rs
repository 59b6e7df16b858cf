//! The TUI's screens as a user sees them (TestBackend + insta snapshots at
//! 80×24 and 160×45), and its state machine driven by keys, without a terminal.

use std::path::Path;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pgpilot::check::check_file;
use pgpilot::engine::{Ask, Control, EngineEvent, Reply, StepOutcome, TargetInfo};
use pgpilot::monitor::{Backend, Feed, LockWait, build};
use pgpilot::tui::app::{App, DialogKind, Panel, SessionKind, StepState};
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
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        kind,
        Some("staging".into()),
        "postgres@db1:5432/diagnosticpro".into(),
        defaults(),
    );
    app.on_engine(EngineEvent::Connected(TargetInfo {
        host: "db1".into(),
        port: 5432,
        database: "diagnosticpro".into(),
        role: "dba".into(),
        server_version: "15.18".into(),
        primary: true,
        pid: 4300,
    }));
    app
}

fn backend(
    pid: i32,
    state: &str,
    blocked_by: &[i32],
    wait: Option<(&str, &str, f64)>,
    xact: Option<f64>,
    query: &str,
) -> Backend {
    Backend {
        pid,
        backend_type: "client backend".into(),
        user: Some("app".into()),
        application: Some("web".into()),
        client: "10.0.0.7".into(),
        state: state.into(),
        wait_event_type: wait.map(|_| "Lock".into()),
        wait_event: wait.map(|_| "relation".into()),
        xact_age_s: xact,
        query_age_s: xact,
        state_age_s: xact,
        query: query.into(),
        blocked_by: blocked_by.to_vec(),
        waiting_for: wait.map(|(mode, rel, s)| LockWait {
            mode: mode.into(),
            locktype: "relation".into(),
            relation: Some(rel.into()),
            wait_s: Some(s),
        }),
    }
}

/// A holder idle in transaction for 6m12s, pgpilot's ALTER waiting on it, and
/// a reader queued behind pgpilot.
fn three_level_chain(app: &mut App) {
    let backends = vec![
        backend(
            4242,
            "idle in transaction",
            &[],
            None,
            Some(372.0),
            "SELECT * FROM users WHERE id = 7",
        ),
        backend(
            4300,
            "active",
            &[4242],
            Some(("AccessExclusiveLock", "users", 2.4)),
            Some(2.5),
            "ALTER TABLE users DROP COLUMN legacy_id",
        ),
        backend(
            5151,
            "active",
            &[4300],
            Some(("AccessShareLock", "users", 1.1)),
            Some(1.2),
            "SELECT email FROM users WHERE id = $1",
        ),
    ];
    app.on_snapshot(build(
        backends,
        Duration::from_secs(300),
        Some(4300),
        9999,
        3.0,
    ));
}

fn progress(app: &mut App) {
    for (id, outcome) in [
        ("no-long-transactions", StepOutcome::Passed),
        ("no-lock-queue", StepOutcome::Passed),
        ("column-exists", StepOutcome::Passed),
    ] {
        app.on_engine(EngineEvent::StepStarted {
            step: id.into(),
            attempt: 1,
            of: 6,
        });
        app.on_engine(EngineEvent::StepDone {
            step: id.into(),
            outcome,
            duration: Duration::from_millis(12),
            rows: Some(0),
            captured: None,
        });
    }
    app.on_engine(EngineEvent::StepStarted {
        step: "drop-legacy-id".into(),
        attempt: 2,
        of: 11,
    });
    app.on_engine(EngineEvent::Retrying {
        step: "drop-legacy-id".into(),
        attempt: 1,
        of: 11,
        wait: Duration::from_secs(1),
        message: "waited 1s for a lock (canceling statement due to lock timeout); retrying in 1.0s"
            .into(),
        yielded: false,
    });
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

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn type_text(app: &mut App, text: &str) -> Vec<Command> {
    text.chars()
        .filter_map(|c| handle_key(app, key(c)))
        .collect()
}

#[test]
fn main_screen_at_80x24_and_160x45() {
    let mut a = app(SessionKind::Run);
    progress(&mut a);
    three_level_chain(&mut a);
    insta::assert_snapshot!("main_80x24", screen(&a, 80, 24));
    insta::assert_snapshot!("main_160x45", screen(&a, 160, 45));
}

/// The engine waits for `r` at drop-legacy-id, with the lock chain in view.
fn waiting_at_drop(a: &mut App) {
    progress(a);
    a.on_engine(EngineEvent::StepFailed {
        step: "drop-legacy-id".into(),
        sqlstate: Some("55P03".into()),
        message: "canceling statement due to lock timeout".into(),
    });
    a.on_engine(EngineEvent::Asks(Ask::Next {
        step: "drop-legacy-id".into(),
    }));
    three_level_chain(a);
}

#[test]
fn small_terminals_keep_help_and_quit_in_the_footer_and_the_panels_in_view() {
    let mut a = app(SessionKind::Run);
    waiting_at_drop(&mut a);
    for (w, h) in [(80, 24), (100, 30)] {
        let s = screen(&a, w, h);
        let footer = s.lines().last().unwrap_or_default();
        assert!(
            footer.contains(" ?  help") && footer.contains(" q  quit"),
            "{w}x{h}: {footer}"
        );
        assert!(footer.contains(" r  run next"), "{w}x{h}: {footer}");
    }
    // The lock panel's keys come first when it has the focus; help and quit stay.
    handle_key(&mut a, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    let s = screen(&a, 80, 24);
    let footer = s.lines().last().unwrap_or_default();
    assert!(
        footer.contains(" ?  help") && footer.contains(" q  quit"),
        "{footer}"
    );
    handle_key(&mut a, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    handle_key(&mut a, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));

    // Narrower, the lock tree's title counts them.
    let s = screen(&a, 80, 24);
    assert!(
        s.contains("Locks — 2 waiting · 1 long transaction(s), longest 6m12s"),
        "{s}"
    );
    // From 100 columns on, the long transactions keep their panel, and the
    // sparkline says what it shows.
    let s = screen(&a, 100, 30);
    assert!(s.contains("Long transactions"), "{s}");
    assert!(s.contains("4242 6m12s idle in transaction"), "{s}");
    assert!(s.contains("waiting sessions, last 1s (max 2):"), "{s}");
    insta::assert_snapshot!("main_waiting_80x24", screen(&a, 80, 24));
    insta::assert_snapshot!("main_waiting_100x30", s);
}

#[test]
fn the_step_list_scrolls_with_a_cue_for_what_is_hidden() {
    let mut a = app(SessionKind::Run);
    let s = screen(&a, 80, 24);
    assert!(s.contains("↓ 10 more"), "{s}");
    assert!(!s.contains("↑"), "{s}");
    // At the last step: the first ones are hidden above, nothing below.
    a.selected = a.steps.len() - 1;
    let s = screen(&a, 80, 24);
    assert!(s.contains("↑ 11 more"), "{s}");
    assert!(!s.contains("↓"), "{s}");
    assert!(s.contains("auth-smoke-test"), "{s}");
    // Everything fits on a tall terminal: no cue.
    let s = screen(&a, 160, 45);
    assert!(!s.contains(" more"), "{s}");
}

#[test]
fn the_pause_dialog_reflows_over_the_steps_and_leaves_the_locks_in_view() {
    let mut a = app(SessionKind::Run);
    three_level_chain(&mut a);
    a.on_engine(EngineEvent::Asks(Ask::Acknowledge {
        step: "approval".into(),
        instructions: a
            .steps
            .iter()
            .find(|s| s.id == "approval")
            .and_then(|s| s.instructions.clone())
            .unwrap_or_default(),
    }));
    for (w, h) in [(80, 24), (100, 30)] {
        let s = screen(&a, w, h);
        // The lock panel the pause refers to is whole.
        assert!(s.contains("┌ Locks — 2 waiting"), "{w}x{h}:\n{s}");
        assert!(
            s.contains("4242 idle in transaction 6m12s"),
            "{w}x{h}:\n{s}"
        );
        // The text is reflowed into the dialog: a sentence broken for a wider
        // screen runs on, the list items keep their lines, nothing is cut.
        assert!(
            s.contains("High-risk change to user data. Before continuing confirm:"),
            "{w}x{h}:\n{s}"
        );
        assert!(
            s.contains("- CHG-2231 is approved by the data owner"),
            "{w}x{h}:\n{s}"
        );
        assert!(s.contains("restore was tested."), "{w}x{h}:\n{s}");
        assert!(s.contains("Type done when it is done."), "{w}x{h}:\n{s}");
        assert!(s.contains("Enter submits"), "{w}x{h}:\n{s}");
    }
    insta::assert_snapshot!("pause_80x24", screen(&a, 80, 24));
    insta::assert_snapshot!("pause_100x30", screen(&a, 100, 30));
}

#[test]
fn a_pause_step_shows_no_lock_settings() {
    let mut a = app(SessionKind::Run);
    a.selected = a.steps.iter().position(|s| s.id == "approval").unwrap();
    let s = screen(&a, 160, 45);
    assert!(s.contains("approval · pause"), "{s}");
    assert!(!s.contains("lock_timeout"), "{s}");
    // A SQL step still does.
    a.selected = a
        .steps
        .iter()
        .position(|s| s.id == "drop-legacy-id")
        .unwrap();
    assert!(screen(&a, 160, 45).contains("lock_timeout"));
}

#[test]
fn a_high_risk_step_that_destroys_nothing_says_why_no_phrase_is_asked() {
    let c = check_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/add-not-null-via-check.toml"
    )))
    .expect("sample runbook");
    let mut a = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        None,
        "db1:5432/weatherinsight".into(),
        defaults(),
    );
    a.selected = a.steps.iter().position(|s| s.id == "set-not-null").unwrap();
    let s = screen(&a, 160, 45);
    assert!(s.contains("HIGH risk: breaking for running clients"), "{s}");
    assert!(
        s.contains("no phrase is asked: it breaks running clients but destroys no data"),
        "{s}"
    );
    assert!(!s.contains("asks you to type"), "{s}");
}

#[test]
fn the_summary_after_q_says_what_each_step_did() {
    use pgpilot::engine::Outcome;
    let mut a = app(SessionKind::Run);
    // Found applied on the target: an earlier run's work, not this session's.
    a.on_engine(EngineEvent::States(vec![
        pgpilot::engine::truth::KnownState {
            step: "no-dependent-objects".into(),
            status: pgpilot::engine::state::Status::Passed,
            stale_after: None,
            captured: Vec::new(),
            at: "2026-11-28 10:00:00".into(),
            operator: "alice".into(),
        },
    ]));
    progress(&mut a);
    let hostile = "lock timeout \u{1b}[2J password=Sekr3t";
    a.on_engine(EngineEvent::StepFailed {
        step: "drop-legacy-id".into(),
        sqlstate: Some("55P03".into()),
        message: hostile.into(),
    });
    a.on_engine(EngineEvent::StepSkipped {
        step: "rows-before".into(),
        reason: "counted by hand".into(),
    });
    let text = pgpilot::tui::summary::summary(
        &a,
        Some(&Outcome::Failed(format!("step drop-legacy-id: {hostile}"))),
        1,
        Path::new("/home/dba/.local/share/pgpilot/audit.jsonl"),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(
            "pgpilot run of users-drop-legacy-id: failed: step drop-legacy-id: lock timeout"
        ),
        "{text}"
    );
    assert!(lines[0].ends_with("(exit 1)"), "{text}");
    assert_eq!(
        lines[1], "  no-long-transactions  passed      12 ms",
        "{text}"
    );
    assert!(!text.contains("no-dependent-objects"), "{text}");
    let drop = lines
        .iter()
        .find(|l| l.starts_with("  drop-legacy-id"))
        .expect("the failed step");
    assert!(
        drop.contains("FAILED") && drop.contains("1 retry"),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains("rows-before")
            && l.contains("skipped")
            && l.contains("(counted by hand)")),
        "{text}"
    );
    assert!(
        text.contains(
            "steps: 3 passed, 1 failed, 1 skipped, 11 not run in this session\nlock-timeout retries: 1\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("audit log: /home/dba/.local/share/pgpilot/audit.jsonl\n"),
        "{text}"
    );
    // What the server said reaches the terminal as visible escapes, no password.
    assert!(
        !text.contains('\u{1b}') && !text.contains("Sekr3t"),
        "{text}"
    );
    assert!(text.contains("\\x1b"), "{text}");
}

/// Yields of the lock queue are said as yields, never counted as
/// lock-timeout retries: the operator reads the summary to learn whether
/// the table was held (lock_timeout) or busy (sessions queued behind).
#[test]
fn the_summary_tells_yields_from_lock_timeout_retries() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::StepStarted {
        step: "drop-legacy-id".into(),
        attempt: 1,
        of: 11,
    });
    for attempt in 1..=2 {
        a.on_engine(EngineEvent::Retrying {
            step: "drop-legacy-id".into(),
            attempt,
            of: 11,
            wait: Duration::from_millis(500),
            message: "yielded: 2 sessions waited 214ms behind us".into(),
            yielded: true,
        });
    }
    a.on_engine(EngineEvent::StepDone {
        step: "drop-legacy-id".into(),
        outcome: StepOutcome::Applied,
        duration: Duration::from_millis(900),
        rows: None,
        captured: None,
    });
    let text = pgpilot::tui::summary::summary(
        &a,
        Some(&pgpilot::engine::Outcome::Done),
        0,
        Path::new("/tmp/audit.jsonl"),
    );
    let drop = text
        .lines()
        .find(|l| l.starts_with("  drop-legacy-id"))
        .expect("the step's line");
    assert!(
        drop.contains("2 yields") && !drop.contains("retr"),
        "{text}"
    );
    assert!(
        text.contains("lock-timeout retries: 0\nqueue yields (max_queue_stall): 2\n"),
        "{text}"
    );
}

#[test]
fn dialogs_and_help_at_100x30() {
    let mut a = app(SessionKind::Run);
    three_level_chain(&mut a);
    a.on_engine(EngineEvent::Asks(Ask::Confirm {
        step: "drop-legacy-id".into(),
        phrase: "DROP users.legacy_id".into(),
        what: "drop column users.legacy_id".into(),
    }));
    insta::assert_snapshot!("confirm_100x30", screen(&a, 100, 30));
    handle_key(&mut a, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    handle_key(&mut a, key('?'));
    for (w, h) in [(80, 24), (100, 30)] {
        let s = screen(&a, w, h);
        // Keys of one action share a line; the way out is always on screen.
        assert!(s.contains("↑/k  move up"), "{s}");
        assert!(s.contains("? or Esc closes this help"), "{s}");
    }
    insta::assert_snapshot!("help_100x30", screen(&a, 100, 30));
    // Shorter still: the notes give way, every key and the way out stay.
    let s = screen(&a, 80, 16);
    assert!(s.contains("quit (asks when something runs)"), "{s}");
    assert!(s.contains("? or Esc closes this help"), "{s}");
    assert!(!s.contains("Rebind keys"), "{s}");
}

#[test]
fn the_monitor_screen_at_80x24_and_100x30_answers_help() {
    let mut m = monitor_with_chain(defaults());
    for (w, h) in [(80, 24), (100, 30)] {
        let s = monitor_screen(&m, w, h);
        let footer = s.lines().last().unwrap_or_default();
        assert!(
            footer.contains(" ?  help") && footer.contains(" q  quit"),
            "{w}x{h}: {footer}"
        );
        assert!(s.contains("waiting sessions, last 1s (max 2):"), "{s}");
    }
    insta::assert_snapshot!("monitor_80x24", monitor_screen(&m, 80, 24));
    insta::assert_snapshot!("monitor_100x30", monitor_screen(&m, 100, 30));
    monitor_key(&mut m, key('?'));
    let s = monitor_screen(&m, 80, 24);
    assert!(s.contains("terminate the selected backend"), "{s}");
    insta::assert_snapshot!("monitor_help_80x24", s);
}

#[test]
fn lock_panel_shows_a_three_level_chain_with_pgpilot_marked() {
    let mut a = app(SessionKind::Run);
    three_level_chain(&mut a);
    let s = screen(&a, 160, 45);
    assert!(
        s.contains("pgpilot is waiting for AccessExclusiveLock on users"),
        "{s}"
    );
    assert!(
        s.contains("blocked by 4242 (idle in transaction 6m12s), 1 session(s) queued behind"),
        "{s}"
    );
    assert!(
        s.contains("4242 idle in transaction 6m12s (web, app@10.0.0.7) [2 queued]"),
        "{s}"
    );
    assert!(
        s.contains("  4300 (pgpilot) waits 2s for AccessExclusiveLock on users"),
        "{s}"
    );
    assert!(
        s.contains("    5151 waits 1s for AccessShareLock on users"),
        "{s}"
    );
    insta::assert_snapshot!("lock_chain_160x45", s);
}

#[test]
fn confirmation_dialog_names_what_is_destroyed_and_the_phrase() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::Asks(Ask::Confirm {
        step: "drop-legacy-id".into(),
        phrase: "DROP users.legacy_id".into(),
        what: "drop column users.legacy_id".into(),
    }));
    type_text(&mut a, "DROP users");
    let s = screen(&a, 80, 24);
    assert!(
        s.contains("This destroys: drop column users.legacy_id"),
        "{s}"
    );
    assert!(s.contains("Type DROP users.legacy_id to run it."), "{s}");
    assert!(s.contains("> DROP users"), "{s}");
    insta::assert_snapshot!("confirm_80x24", s);
}

#[test]
fn help_overlay_lists_every_key_with_its_description() {
    let mut a = app(SessionKind::Run);
    handle_key(&mut a, key('?'));
    let s = screen(&a, 80, 24);
    for d in [
        "run the next pending step",
        "cancel the running statement",
        "terminate the selected backend",
        "quit (asks when something runs)",
    ] {
        assert!(s.contains(d), "{d} missing:\n{s}");
    }
    insta::assert_snapshot!("help_80x24", s);
    handle_key(&mut a, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert!(!a.show_help);
}

#[test]
fn rehearsal_and_rollback_are_announced_loudly() {
    let s = screen(&app(SessionKind::Rehearsal), 160, 45);
    assert!(
        s.contains("REHEARSAL — everything is rolled back at the end"),
        "{s}"
    );
    insta::assert_snapshot!(
        "rehearsal_banner_160x45",
        s.lines().take(2).collect::<Vec<_>>().join("\n")
    );
    let s = screen(&app(SessionKind::Rollback), 80, 24);
    assert!(s.contains("ROLLBACK"), "{s}");
    insta::assert_snapshot!(
        "rollback_banner_80x24",
        s.lines().take(2).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn r_runs_only_when_the_engine_waits_and_a_phrase_goes_to_the_engine() {
    let mut a = app(SessionKind::Run);
    assert_eq!(handle_key(&mut a, key('r')), None, "nothing to run yet");
    a.on_engine(EngineEvent::Asks(Ask::Next {
        step: "no-long-transactions".into(),
    }));
    assert_eq!(
        handle_key(&mut a, key('r')),
        Some(Command::Reply(Reply::Run))
    );
    assert_eq!(handle_key(&mut a, key('r')), None, "one r, one step");

    let ask = Ask::Confirm {
        step: "drop-legacy-id".into(),
        phrase: "DROP users.legacy_id".into(),
        what: "drop column users.legacy_id".into(),
    };
    a.on_engine(EngineEvent::Asks(ask.clone()));
    assert!(
        type_text(&mut a, "drop it").is_empty(),
        "typing sends nothing"
    );
    let sent = handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(sent, Some(Command::Reply(Reply::Typed("drop it".into()))));
    // The engine found it wrong and asks again: the dialog reopens with an error.
    a.on_engine(EngineEvent::Asks(ask));
    let d = a.dialog.as_ref().expect("dialog reopened");
    assert!(d.error.as_deref().unwrap_or("").contains("does not match"));
    // Esc declines: the run stops, which the engine audits.
    assert_eq!(
        handle_key(&mut a, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
        Some(Command::Reply(Reply::Quit))
    );
}

#[test]
fn skip_needs_a_reason_and_c_cancels_only_what_runs() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::Asks(Ask::Next {
        step: "emails-unique".into(),
    }));
    handle_key(&mut a, key('s'));
    assert!(matches!(
        a.dialog.as_ref().map(|d| &d.kind),
        Some(DialogKind::SkipReason { .. })
    ));
    assert_eq!(
        handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        None,
        "an empty reason is refused"
    );
    type_text(&mut a, "checked by hand");
    assert_eq!(
        handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        Some(Command::Reply(Reply::Skip("checked by hand".into())))
    );

    assert_eq!(handle_key(&mut a, key('c')), None, "nothing runs");
    a.on_engine(EngineEvent::StepStarted {
        step: "rows-before".into(),
        attempt: 1,
        of: 6,
    });
    assert_eq!(
        handle_key(&mut a, key('c')),
        Some(Command::Control(Control::Cancel))
    );
}

#[test]
fn q_asks_while_a_statement_runs_and_terminate_asks_for_the_pid() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::StepStarted {
        step: "drop-legacy-id".into(),
        attempt: 1,
        of: 11,
    });
    assert_eq!(handle_key(&mut a, key('q')), None);
    assert!(matches!(
        a.dialog.as_ref().map(|d| &d.kind),
        Some(DialogKind::Quit)
    ));
    assert_eq!(handle_key(&mut a, key('n')), None);
    assert!(!a.quit && a.dialog.is_none());

    three_level_chain(&mut a);
    handle_key(&mut a, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    assert_eq!(a.focus, Panel::Locks);
    // The first row is the root blocker 4242.
    handle_key(&mut a, key('K'));
    assert!(matches!(
        a.dialog.as_ref().map(|d| &d.kind),
        Some(DialogKind::Signal {
            pid: 4242,
            terminate: true
        })
    ));
    type_text(&mut a, "4243");
    assert_eq!(
        handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        None,
        "a wrong pid does nothing"
    );
    handle_key(
        &mut a,
        KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE),
    );
    handle_key(&mut a, key('2'));
    assert_eq!(
        handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        Some(Command::Signal {
            pid: 4242,
            signal: pgpilot::monitor::Signal::Terminate
        })
    );
    // pgpilot's own pid is refused before any dialog.
    handle_key(&mut a, key('j'));
    handle_key(&mut a, key('K'));
    assert!(a.dialog.is_none());
}

#[test]
fn b_rolls_back_the_selected_applied_step_when_the_engine_waits() {
    let mut a = app(SessionKind::Run);
    a.on_engine(EngineEvent::StepStarted {
        step: "backup-legacy-id".into(),
        attempt: 1,
        of: 6,
    });
    a.on_engine(EngineEvent::StepDone {
        step: "backup-legacy-id".into(),
        outcome: StepOutcome::Applied,
        duration: Duration::from_millis(11),
        rows: Some(2000),
        captured: None,
    });
    a.on_engine(EngineEvent::Asks(Ask::Next {
        step: "verify-backup".into(),
    }));
    let i = a
        .steps
        .iter()
        .position(|s| s.id == "backup-legacy-id")
        .unwrap();
    a.selected = i;
    assert_eq!(a.steps[i].state, StepState::Applied);
    assert_eq!(
        handle_key(&mut a, key('b')),
        Some(Command::Reply(Reply::RollbackThrough(
            "backup-legacy-id".into()
        )))
    );
    a.selected = i + 1;
    assert_eq!(
        handle_key(&mut a, key('b')),
        None,
        "not applied: nothing to roll back"
    );
}

#[test]
fn an_ignored_password_file_is_a_warning_in_the_log() {
    let mut a = app(SessionKind::Run);
    a.connection_warnings(&[
        "password file /home/dba/.pgpass has group or world access and was ignored; \
         permissions should be u=rw (0600) or less: chmod 0600 /home/dba/.pgpass"
            .into(),
    ]);
    let s = screen(&a, 160, 45);
    assert!(
        s.contains("warning: password file /home/dba/.pgpass has group or world access"),
        "{s}"
    );
}

/// The monitor's connection lost at 09:14:07 UTC, third reconnect attempt next.
fn disconnected() -> Feed {
    Feed::Disconnected {
        attempt: 3,
        since: chrono::DateTime::parse_from_rfc3339("2026-11-23T09:14:07Z")
            .expect("time")
            .with_timezone(&chrono::Utc),
        error: "connection closed (terminating connection due to administrator command [57P01])"
            .into(),
    }
}

#[test]
fn a_disconnected_monitor_says_so_instead_of_a_stale_lock_panel() {
    let mut a = app(SessionKind::Run);
    three_level_chain(&mut a);
    a.on_feed(disconnected());
    let s = screen(&a, 160, 45);
    assert!(s.contains("Locks — monitor disconnected"), "{s}");
    assert!(
        s.contains("monitor disconnected — reconnecting (attempt 3)"),
        "{s}"
    );
    assert!(
        s.contains("lost at 09:14:07 UTC: connection closed (terminating connection"),
        "{s}"
    );
    // Nothing of the last snapshot is left to mislead, or to be signalled.
    for stale in ["4242", "5151", "pgpilot is waiting", "no session waits"] {
        assert!(!s.contains(stale), "{stale} still shown:\n{s}");
    }
    insta::assert_snapshot!("lock_disconnected_160x45", s);
    handle_key(&mut a, KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    assert_eq!(a.focus, Panel::Locks);
    handle_key(&mut a, key('K'));
    assert!(a.dialog.is_none(), "no pid to terminate while disconnected");

    // Reconnected: the next snapshot is shown again.
    three_level_chain(&mut a);
    let s = screen(&a, 160, 45);
    assert!(!s.contains("monitor disconnected"), "{s}");
    assert!(s.contains("4242 idle in transaction 6m12s"), "{s}");
}

#[test]
fn the_monitor_screen_says_disconnected_too() {
    use pgpilot::tui::monitor_screen::MonitorScreen;
    let mut m = MonitorScreen::new(
        "db1:5432/diagnosticpro".into(),
        Duration::from_secs(1),
        defaults(),
    );
    m.on_feed(disconnected());
    let s = monitor_screen(&m, 100, 30);
    assert!(
        s.contains("monitor disconnected — reconnecting (attempt 3)"),
        "{s}"
    );
    insta::assert_snapshot!("monitor_disconnected_100x30", s);
    // Nothing to select, and the screen says why instead of doing nothing.
    assert_eq!(monitor_key(&mut m, key('K')), None);
    assert!(m.prompt.is_none());
    let s = monitor_screen(&m, 100, 30);
    assert!(
        s.contains("no sessions to select until the monitor polls again"),
        "{s}"
    );
}

fn monitor_screen(m: &pgpilot::tui::monitor_screen::MonitorScreen, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| m.draw(f)).expect("draw");
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
            format!("{}\n", line.trim_end())
        })
        .collect()
}

fn monitor_key(
    m: &mut pgpilot::tui::monitor_screen::MonitorScreen,
    key: KeyEvent,
) -> Option<pgpilot::tui::monitor_update::MonitorCommand> {
    pgpilot::tui::monitor_update::handle_key(m, key)
}

/// The monitor screen showing a holder (4242) with two sessions queued
/// behind it, no executor.
fn monitor_with_chain(
    bindings: Vec<pgpilot::tui::keys::Binding>,
) -> pgpilot::tui::monitor_screen::MonitorScreen {
    let mut m = pgpilot::tui::monitor_screen::MonitorScreen::new(
        "db1:5432/diagnosticpro".into(),
        Duration::from_secs(1),
        bindings,
    );
    let backends = vec![
        backend(
            4242,
            "idle in transaction",
            &[],
            None,
            Some(372.0),
            "SELECT 1",
        ),
        backend(
            4300,
            "active",
            &[4242],
            Some(("AccessExclusiveLock", "users", 2.4)),
            Some(2.5),
            "ALTER TABLE users ADD COLUMN x int",
        ),
        backend(
            5151,
            "active",
            &[4300],
            Some(("AccessShareLock", "users", 1.1)),
            Some(1.2),
            "SELECT email FROM users",
        ),
    ];
    m.on_feed(Feed::Snapshot(Box::new(build(
        backends,
        Duration::from_secs(300),
        None,
        9999,
        3.0,
    ))));
    m
}

#[test]
fn the_monitor_screen_takes_its_keys_from_the_key_map_and_asks_for_the_pid() {
    use pgpilot::monitor::Signal;
    use pgpilot::tui::monitor_update::MonitorCommand;
    let mut m = monitor_with_chain(defaults());
    let tree: Vec<i32> = m
        .snapshot()
        .expect("snapshot")
        .tree
        .iter()
        .map(|n| n.pid)
        .collect();
    assert_eq!(tree[0], 4242, "{tree:?}");

    // j moves; K asks for the selected backend's pid.
    assert_eq!(monitor_key(&mut m, key('j')), None);
    assert_eq!(m.selected, 1);
    assert_eq!(monitor_key(&mut m, key('k')), None);
    assert_eq!(m.selected, 0);
    assert_eq!(monitor_key(&mut m, key('K')), None);
    let s = monitor_screen(&m, 100, 30);
    assert!(
        s.contains("type 4242 and Enter to terminate it (Esc cancels)"),
        "{s}"
    );
    // q is typed into the prompt, not a quit; a wrong pid is not sent.
    for c in "q".chars() {
        assert_eq!(monitor_key(&mut m, key(c)), None);
    }
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    let backspace = KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE);
    assert_eq!(monitor_key(&mut m, enter), None);
    assert!(monitor_screen(&m, 100, 30).contains("type 4242 to confirm"));
    assert_eq!(monitor_key(&mut m, backspace), None);
    for c in "4242".chars() {
        assert_eq!(monitor_key(&mut m, key(c)), None);
    }
    assert_eq!(
        monitor_key(&mut m, enter),
        Some(MonitorCommand::Signal {
            pid: 4242,
            signal: Signal::Terminate
        })
    );
    assert!(m.prompt.is_none());

    // C cancels instead; Esc drops the prompt without a command.
    monitor_key(&mut m, key('C'));
    assert_eq!(m.prompt.as_ref().map(|p| p.signal), Some(Signal::Cancel));
    assert_eq!(
        monitor_key(&mut m, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
        None
    );
    assert!(m.prompt.is_none());

    // ? shows this screen's keys (not the run screen's), q closes it.
    monitor_key(&mut m, key('?'));
    let s = monitor_screen(&m, 100, 30);
    assert!(s.contains("terminate the selected backend"), "{s}");
    assert!(!s.contains("run the next pending step"), "{s}");
    assert_eq!(monitor_key(&mut m, key('q')), None);
    assert!(!m.show_help);
    assert_eq!(monitor_key(&mut m, key('q')), Some(MonitorCommand::Quit));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(monitor_key(&mut m, ctrl_c), Some(MonitorCommand::Quit));
}

#[test]
fn the_monitor_screen_follows_a_user_key_map() {
    use pgpilot::monitor::Signal;
    use pgpilot::tui::monitor_update::MonitorCommand;
    let bindings = pgpilot::tui::keys::load(Some(
        "terminate_backend = \"x\"\nquit = \"ctrl-x\"\ndown = \"n\"",
    ))
    .expect("key map");
    let mut m = monitor_with_chain(bindings);
    // The defaults it replaced do nothing now.
    for c in ['K', 'q', 'j'] {
        assert_eq!(monitor_key(&mut m, key(c)), None, "{c}");
    }
    assert!(m.prompt.is_none() && m.selected == 0);
    monitor_key(&mut m, key('n'));
    assert_eq!(m.selected, 1);
    monitor_key(&mut m, key('x'));
    let prompt = m.prompt.clone().expect("x asks for the pid");
    assert_eq!((prompt.pid, prompt.signal), (4300, Signal::Terminate));
    let s = monitor_screen(&m, 100, 30);
    assert!(s.contains("type 4300 and Enter to terminate it"), "{s}");
    monitor_key(&mut m, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    let s = monitor_screen(&m, 100, 30);
    assert!(
        s.contains(" x  terminate backend") && s.contains(" ctrl-x  quit"),
        "{s}"
    );
    let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
    assert_eq!(monitor_key(&mut m, ctrl_x), Some(MonitorCommand::Quit));
}

#[test]
fn hostile_text_reaches_the_screen_only_as_visible_escapes() {
    let mut app = app(SessionKind::Run);
    let evil = "\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2J\u{202e}gnp.exe";
    app.on_snapshot(build(
        vec![
            backend(
                4242,
                "idle in transaction",
                &[],
                None,
                Some(372.0),
                &format!("ALTER ROLE app PASSWORD $x$Sekr1t$x$; /* {evil} */"),
            ),
            backend(
                5151,
                "active",
                &[4242],
                Some(("AccessShareLock", "users", 1.1)),
                Some(1.2),
                &format!("SELECT 1 /* {evil} */"),
            ),
        ],
        Duration::from_secs(300),
        Some(4300),
        9999,
        3.0,
    ));
    app.on_engine(EngineEvent::Notice {
        step: Some("no-lock-queue".into()),
        severity: pgpilot::pg::Severity::Notice,
        message: format!("from a trigger: {evil} password=Sekr2t"),
    });
    for (w, h) in [(160, 45), (80, 24)] {
        let s = screen(&app, w, h);
        assert!(
            !s.chars()
                .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{s}"
        );
        assert!(!s.contains("Sekr1t") && !s.contains("Sekr2t"), "{s}");
    }
    let wide = screen(&app, 160, 45);
    assert!(
        wide.contains("\\x1b"),
        "the escape is shown, not dropped:\n{wide}"
    );
}
