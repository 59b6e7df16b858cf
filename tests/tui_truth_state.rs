//! The step list and detail panel after each sequence of engine events: the
//! states the target reports when a session opens, a check gone stale after
//! a rollback, captured values, a kept value beside a re-captured one, and who
//! queues behind a rehearsal. No terminal, no database: events in, state out.

use std::path::Path;
use std::time::Duration;

use pgpilot::check::check_file;
use pgpilot::engine::state::Status;
use pgpilot::engine::truth::KnownState;
use pgpilot::engine::{EngineEvent, StepOutcome, TargetInfo};
use pgpilot::monitor::{Backend, LockWait, build};
use pgpilot::tui::app::{App, SessionKind, StepState};
use pgpilot::tui::keys::defaults;
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

fn known(step: &str, status: Status) -> KnownState {
    KnownState {
        step: step.into(),
        status,
        stale_after: None,
        captured: Vec::new(),
        at: "2026-11-29T22:00:00Z".into(),
        operator: "ana".into(),
    }
}

fn state(app: &App, id: &str) -> StepState {
    app.steps
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.state.clone())
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn select(app: &mut App, id: &str) {
    app.selected = app
        .steps
        .iter()
        .position(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"));
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

#[test]
fn the_states_found_on_the_target_are_shown_before_anything_runs() {
    let mut app = app(SessionKind::Rollback);
    let mut stale = known("rows-after", Status::Passed);
    stale.stale_after = Some("drop-legacy-id".into());
    app.on_engine(EngineEvent::States(vec![
        known("rows-before", Status::Passed),
        known("backup-legacy-id", Status::Applied),
        known("verify-backup", Status::Failed),
        known("drop-legacy-id", Status::RolledBack),
        stale,
        known("column-gone", Status::InProgress),
    ]));
    assert_eq!(state(&app, "rows-before"), StepState::Passed);
    assert_eq!(state(&app, "backup-legacy-id"), StepState::Applied);
    assert!(
        matches!(state(&app, "verify-backup"), StepState::Failed(m) if m.contains("failed on an earlier run")),
        "{:?}",
        state(&app, "verify-backup")
    );
    assert_eq!(state(&app, "drop-legacy-id"), StepState::RolledBack);
    assert_eq!(
        state(&app, "rows-after"),
        StepState::Stale("drop-legacy-id".into())
    );
    assert_eq!(state(&app, "column-gone").label(), "in progress");
    assert_eq!(state(&app, "no-long-transactions"), StepState::Pending);
    let s = screen(&app, 160, 45);
    assert!(s.contains("✗ verify-backup"), "{s}");
    assert!(s.contains("stale"), "{s}");
    assert!(
        s.contains(
            "on this target: rows-before passed, backup-legacy-id applied, verify-backup failed"
        ),
        "{s}"
    );
}

#[test]
fn a_verify_goes_stale_when_what_it_verified_is_rolled_back() {
    let mut app = app(SessionKind::Run);
    app.on_engine(EngineEvent::StepDone {
        step: "verify-backup".into(),
        outcome: StepOutcome::Passed,
        duration: Duration::from_millis(3),
        rows: Some(1),
        captured: None,
    });
    app.on_engine(EngineEvent::StepDone {
        step: "rows-before".into(),
        outcome: StepOutcome::Passed,
        duration: Duration::from_millis(3),
        rows: Some(1),
        captured: None,
    });
    app.on_engine(EngineEvent::RolledBack {
        step: "backup-legacy-id".into(),
        duration: Duration::from_millis(9),
    });
    assert_eq!(
        state(&app, "verify-backup"),
        StepState::Stale("backup-legacy-id".into())
    );
    // A precheck before the change does not verify it.
    assert_eq!(state(&app, "rows-before"), StepState::Passed);
    select(&mut app, "verify-backup");
    let s = screen(&app, 160, 45);
    assert!(
        s.contains("stale: it passed before backup-legacy-id was rolled back"),
        "{s}"
    );
}

#[test]
fn captured_values_are_shown_with_where_they_came_from() {
    let mut app = app(SessionKind::Run);
    let mut rows = known("rows-before", Status::Passed);
    rows.captured = vec![("rows_before".into(), "2000".into())];
    app.on_engine(EngineEvent::States(vec![rows]));
    select(&mut app, "rows-after");
    let s = screen(&app, 160, 45);
    assert!(
        s.contains("uses {{rows_before}} = \"2000\" (captured on an earlier run)"),
        "{s}"
    );
    app.on_engine(EngineEvent::StepDone {
        step: "rows-before".into(),
        outcome: StepOutcome::Passed,
        duration: Duration::from_millis(3),
        rows: Some(1),
        captured: Some(("rows_before".into(), "2004".into())),
    });
    select(&mut app, "rows-before");
    let s = screen(&app, 160, 45);
    assert!(
        s.contains("captures {{rows_before}} = \"2004\" (captured this run)"),
        "{s}"
    );
}

#[test]
fn a_value_kept_for_applied_steps_is_shown_beside_the_new_one() {
    let mut app = app(SessionKind::Run);
    let mut rows = known("rows-before", Status::Passed);
    rows.captured = vec![("rows_before".into(), "200273".into())];
    app.on_engine(EngineEvent::States(vec![
        rows,
        known("backup-legacy-id", Status::Applied),
    ]));
    app.on_engine(EngineEvent::Recaptured {
        step: "rows-before".into(),
        name: "rows_before".into(),
        kept: "200273".into(),
        fresh: "200301".into(),
        because: "backup-legacy-id".into(),
    });
    app.on_engine(EngineEvent::StepDone {
        step: "rows-before".into(),
        outcome: StepOutcome::Passed,
        duration: Duration::from_millis(3),
        rows: Some(1),
        captured: Some(("rows_before".into(), "200273".into())),
    });
    select(&mut app, "rows-after");
    let s = screen(&app, 160, 45);
    assert!(
        s.contains("uses {{rows_before}} = \"200273\" (captured on an earlier run)"),
        "{s}"
    );
    assert!(
        s.contains("this run captured \"200301\"; later steps and rollbacks use \"200273\": backup-legacy-id was applied with it"),
        "{s}"
    );
    assert!(
        s.contains("{{rows_before}}: this run captured \"200301\", but later steps use \"200273\""),
        "{s}"
    );
}

#[test]
fn the_lock_panel_names_who_queues_behind_the_rehearsal() {
    let mut app = app(SessionKind::Rehearsal);
    let waiter = Backend {
        pid: 5151,
        user: Some("web".into()),
        application: Some("orders-api".into()),
        client: "10.0.0.7".into(),
        backend_type: "client backend".into(),
        state: "active".into(),
        wait_event_type: Some("Lock".into()),
        wait_event: Some("relation".into()),
        xact_age_s: Some(12.0),
        query_age_s: Some(12.0),
        state_age_s: Some(12.0),
        query: "INSERT INTO users VALUES (1)".into(),
        blocked_by: vec![4300],
        waiting_for: Some(LockWait {
            mode: "RowExclusiveLock".into(),
            locktype: "relation".into(),
            relation: Some("public.users".into()),
            wait_s: Some(12.0),
        }),
    };
    let executor = Backend {
        pid: 4300,
        user: Some("dba".into()),
        application: Some("pgpilot".into()),
        client: "local".into(),
        backend_type: "client backend".into(),
        state: "idle in transaction".into(),
        wait_event_type: None,
        wait_event: None,
        xact_age_s: Some(40.0),
        query_age_s: Some(30.0),
        state_age_s: Some(30.0),
        query: "RELEASE SAVEPOINT pgpilot_step".into(),
        blocked_by: Vec::new(),
        waiting_for: None,
    };
    app.on_snapshot(build(
        vec![executor, waiter],
        Duration::from_secs(300),
        Some(4300),
        1,
        0.5,
    ));
    let s = screen(&app, 160, 45);
    assert!(
        s.contains("1 session(s) queued behind the rehearsal:"),
        "{s}"
    );
    assert!(
        s.contains("pid 5151 (orders-api, web) waits 12s for RowExclusiveLock on public.users"),
        "{s}"
    );
}
