//! Sessions named on the run screen (issue 13, item 5): the blockers dialog
//! and the lock tree say which application, user, client and wait each
//! session is — TestBackend snapshots at 100×30 and 80×24.

use std::path::Path;
use std::time::Duration;

use pgpilot::check::check_file;
use pgpilot::engine::{Ask, EngineEvent, TargetInfo};
use pgpilot::monitor::{Backend, Holder, LockWait, build};
use pgpilot::tui::app::{App, SessionKind};
use pgpilot::tui::keys::defaults;
use pgpilot::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn app() -> App {
    let c = check_file(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/users-high-risk-change.toml"
    )))
    .expect("sample runbook");
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
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

fn holder(pid: i32, application: &str, user: &str, client: &str, state: &str) -> Holder {
    Holder {
        pid,
        backend_type: "client backend".into(),
        user: Some(user.into()),
        application: application.into(),
        client: client.into(),
        state: state.into(),
        wait_event_type: Some("Client".into()),
        wait_event: Some("ClientRead".into()),
        mode: "AccessShareLock".into(),
        relation: "public.users".into(),
        xact_age_s: Some(372.0),
        query: "SELECT count(*) FROM users JOIN orders USING (user_id) WHERE orders.created_at > now() - interval '1 day'".into(),
    }
}

#[test]
fn the_blockers_dialog_names_each_holder_and_keeps_its_keys_in_view() {
    let mut a = app();
    a.on_engine(EngineEvent::Asks(Ask::Blockers {
        step: "drop-legacy-id".into(),
        holders: vec![
            holder(
                4242,
                "nightly-report",
                "reporting",
                "10.0.0.5",
                "idle in transaction",
            ),
            holder(4250, "", "app", "local", "idle in transaction"),
            Holder {
                backend_type: "autovacuum worker".into(),
                user: None,
                application: String::new(),
                client: "local".into(),
                wait_event_type: None,
                wait_event: None,
                mode: "ShareUpdateExclusiveLock".into(),
                query: "autovacuum: VACUUM public.users".into(),
                ..holder(4260, "", "", "", "active")
            },
        ],
    }));
    for (w, h) in [(100, 30), (80, 24)] {
        let s = screen(&a, w, h);
        assert!(
            s.contains("4242 (nightly-report, reporting@10.0.0.5; wait Client:ClientRead)"),
            "{w}x{h}:\n{s}"
        );
        assert!(
            s.contains("4250 (app@local; wait Client:ClientRead)"),
            "{w}x{h}:\n{s}"
        );
        assert!(s.contains("4260 (autovacuum worker)"), "{w}x{h}:\n{s}");
        assert!(
            s.contains("    idle in transaction 6m12s, holds AccessShareLock on public.users"),
            "{w}x{h}:\n{s}"
        );
        assert!(
            s.contains("SELECT count(*) FROM users JOIN"),
            "{w}x{h}:\n{s}"
        );
        assert!(
            s.contains("a abort step (back to the list)"),
            "{w}x{h}:\n{s}"
        );
        insta::assert_snapshot!(format!("blockers_named_{w}x{h}"), s);
    }
}

fn backend(pid: i32, application: &str, state: &str, blocked_by: &[i32]) -> Backend {
    let waiting = !blocked_by.is_empty();
    Backend {
        pid,
        backend_type: "client backend".into(),
        user: Some("app".into()),
        application: Some(application.into()),
        client: "10.0.0.7".into(),
        state: state.into(),
        wait_event_type: Some(if waiting { "Lock" } else { "Client" }.into()),
        wait_event: Some(if waiting { "relation" } else { "ClientRead" }.into()),
        xact_age_s: Some(372.0),
        query_age_s: Some(371.0),
        state_age_s: Some(371.0),
        query: "SELECT * FROM users WHERE id = 7".into(),
        blocked_by: blocked_by.to_vec(),
        waiting_for: waiting.then(|| LockWait {
            mode: "RowExclusiveLock".into(),
            locktype: "relation".into(),
            relation: Some("users".into()),
            wait_s: Some(3.0),
        }),
    }
}

#[test]
fn the_lock_tree_and_long_transactions_name_sessions_as_width_allows() {
    let mut a = app();
    a.on_snapshot(build(
        vec![
            backend(4242, "nightly-report", "idle in transaction", &[]),
            backend(5151, "checkout-api", "active", &[4242]),
        ],
        Duration::from_secs(300),
        Some(4300),
        9999,
        2.0,
    ));
    let wide = screen(&a, 160, 45);
    assert!(
        wide.contains(
            "4242 idle in transaction 6m12s (nightly-report, app@10.0.0.7) [1 queued]: SELECT"
        ),
        "{wide}"
    );
    assert!(
        wide.contains("  5151 waits 3s for RowExclusiveLock on users (checkout-api, app@10.0.0.7)"),
        "{wide}"
    );
    let narrow = screen(&a, 100, 30);
    assert!(
        wide.contains("4242 6m12s idle in transaction (nightly-report, app@10.0.0.7)"),
        "{wide}"
    );
    // Narrower, the application's name stays where user@client cannot.
    assert!(
        narrow.contains("5151 6m12s active (checkout-api): SELECT"),
        "{narrow}"
    );
    insta::assert_snapshot!("lock_tree_named_100x30", narrow);
    insta::assert_snapshot!("lock_tree_named_160x45", wide);
}
