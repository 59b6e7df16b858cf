use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{cut, focused, panel};
use crate::tui::app::{App, Panel};
use crate::tui::theme;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let block = panel("Log", focused(app, Panel::Log));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    let end = app.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line> = app.log[start..end]
        .iter()
        .map(|l| {
            Line::from(Span::styled(
                cut(&l.text, inner.width as usize),
                theme::log(l.level),
            ))
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
