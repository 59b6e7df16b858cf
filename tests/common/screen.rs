//! The run screen drawn on a ratatui `TestBackend`, read back as text.

use pgpilot::tui::app::App;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// Draws `app` anew on `t` and returns the screen, one string a row.
pub fn drawn(t: &mut Terminal<TestBackend>, app: &App) -> Vec<String> {
    t.draw(|f| pgpilot::tui::views::draw(f, app))
        .expect("draw on a TestBackend");
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect()
}
