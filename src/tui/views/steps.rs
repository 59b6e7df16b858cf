use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{cut, focused, panel};
use crate::tui::app::{App, Panel, StepState, human};
use crate::tui::theme;

fn symbol(s: &StepState) -> &'static str {
    match s {
        StepState::Pending => "·",
        StepState::Running { .. } => "▶",
        StepState::Applied | StepState::Passed | StepState::Acknowledged | StepState::Rehearsed => {
            "✓"
        }
        StepState::Failed(_) => "✗",
        StepState::Skipped(_) => "↷",
        StepState::RolledBack | StepState::RollingBack => "↶",
        StepState::Stale(_) => "?",
        StepState::InProgress => "…",
    }
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let block = panel("Runbook", focused(app, Panel::Steps));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = inner.width as usize;
    let mut lines: Vec<Line> = Vec::new();
    let mut selected_line = 0;
    let mut phase = "";
    for (i, s) in app.steps.iter().enumerate() {
        if s.phase != phase {
            phase = &s.phase;
            lines.push(Line::from(Span::styled(cut(phase, width), theme::dim())));
        }
        let state = s.state.label();
        let dur = s.duration.map(human).unwrap_or_default();
        let right = format!(" {state} {dur}");
        let name_width = width.saturating_sub(right.chars().count() + 3);
        let mut style = theme::state(&s.state);
        if i == app.selected {
            selected_line = lines.len();
            style = style.patch(theme::selected());
        }
        let next = app.next.as_deref() == Some(s.id.as_str());
        lines.push(Line::from(vec![
            Span::styled(if next { "→" } else { " " }, theme::title()),
            Span::styled(format!("{} ", symbol(&s.state)), theme::state(&s.state)),
            Span::styled(format!("{:<name_width$}", cut(&s.id, name_width)), style),
            Span::styled(right, theme::state(&s.state)),
        ]));
    }
    let height = inner.height as usize;
    let scroll = selected_line.saturating_sub(height.saturating_sub(2)) as u16;
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
}
