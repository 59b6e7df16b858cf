//! The step detail shows the forecast before `r`: while the target is being
//! measured, then the sentence with the size, the lock and who waits — a
//! TestBackend screen at 100×30.

use pgpilot::analysis::RelationName;
use pgpilot::check::check_file;
use pgpilot::forecast::{Sizes, TableSize, forecast_step};
use pgpilot::tui::app::{App, SessionKind};
use pgpilot::tui::forecast::ForecastState;
use pgpilot::tui::keys::defaults;
use pgpilot::tui::views::draw;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const RUNBOOK: &str = r#"
[runbook]
id = "tui-forecast"
title = "Forecast in the detail"

[[phase]]
id = "p"

  [[phase.step]]
  id = "retype"
  kind = "change"
  sql = "ALTER TABLE \"Readings\" ALTER COLUMN v TYPE bigint"
  irreversible = "the old type is gone"
"#;

fn screen(app: &App) -> String {
    let (w, h) = (100, 30);
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
fn the_detail_shows_measuring_then_how_long_the_rewrite_holds_which_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rb.toml");
    std::fs::write(&path, RUNBOOK).unwrap();
    let c = check_file(&path).expect("runbook");
    let mut app = App::new(
        &c.runbook,
        &c.analysis,
        SessionKind::Run,
        None,
        "postgres@db1:5432/app".into(),
        defaults(),
    );
    assert!(!screen(&app).contains("forecast:"), "{}", screen(&app));
    app.forecast = ForecastState::Measuring;
    assert!(
        screen(&app).contains("forecast: measuring the target"),
        "{}",
        screen(&app)
    );
    let mut sizes = Sizes::new();
    sizes.insert(
        RelationName::new(None, "Readings"),
        Some(TableSize {
            relation: "\"Readings\"".into(),
            table_bytes: 2_469_606_195,
            index_bytes: 0,
            rows: 30_000_000,
            indexes: 0,
            read_bytes_per_s: Some(400.0 * 1024.0 * 1024.0),
            key_sorts: Vec::new(),
            rebuilds: Vec::new(),
        }),
    );
    app.forecast = ForecastState::Ready(
        c.analysis
            .steps
            .iter()
            .map(|a| forecast_step(a, &sizes))
            .collect(),
    );
    let shown = screen(&app);
    assert!(
        shown.contains("forecast: rewrites \"Readings\" (2.3 GB) under ACCESS EXCLUSIVE: about"),
        "{shown}"
    );
    assert!(
        shown.contains("every query on \"Readings\" waits"),
        "{shown}"
    );
}
