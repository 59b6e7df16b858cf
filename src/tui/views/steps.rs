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
    // Which lines are steps (the others are phase titles): the cue counts steps.
    let mut is_step: Vec<bool> = Vec::new();
    let mut selected_line = 0;
    let mut phase = "";
    for (i, s) in app.steps.iter().enumerate() {
        if s.phase != phase {
            phase = &s.phase;
            lines.push(Line::from(Span::styled(cut(phase, width), theme::dim())));
            is_step.push(false);
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
        is_step.push(true);
    }
    let window = Window::around(selected_line, lines.len(), inner.height as usize);
    let hidden = |range: std::ops::Range<usize>| is_step[range].iter().filter(|s| **s).count();
    let mut shown: Vec<Line> = Vec::new();
    if window.start > 0 {
        shown.push(cue("↑", hidden(0..window.start)));
    }
    shown.extend(lines.drain(window.start..window.end));
    if window.end < is_step.len() {
        shown.push(cue("↓", hidden(window.end..is_step.len())));
    }
    f.render_widget(Paragraph::new(shown), inner);
}

fn cue(arrow: &str, steps: usize) -> Line<'static> {
    Line::from(Span::styled(format!(" {arrow} {steps} more"), theme::dim()))
}

/// The lines of a list shown in `height` rows: a row at the top or bottom
/// gives way to a cue when lines are hidden there.
#[derive(Debug, PartialEq, Eq)]
struct Window {
    start: usize,
    end: usize,
}

impl Window {
    /// The first window from the top that shows `selected` and, when there
    /// is one, the line after it (what comes next is seen too).
    fn around(selected: usize, len: usize, height: usize) -> Window {
        if len <= height {
            return Window { start: 0, end: len };
        }
        let wanted = (selected + 1).min(len - 1);
        let mut start = 0;
        loop {
            let top = usize::from(start > 0);
            let mut rows = height.saturating_sub(top).max(1);
            if start + rows < len {
                rows = rows.saturating_sub(1).max(1);
            }
            let end = (start + rows).min(len);
            if wanted < end || end == len {
                return Window { start, end };
            }
            start += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn the_window_leaves_rows_for_its_cues() {
        assert_eq!(Window::around(0, 5, 8), Window { start: 0, end: 5 });
        // 20 lines in 8 rows: 7 lines and a cue below.
        assert_eq!(Window::around(0, 20, 8), Window { start: 0, end: 7 });
        // Further down: a cue above, 6 lines, a cue below.
        assert_eq!(Window::around(10, 20, 8), Window { start: 6, end: 12 });
        // At the end: a cue above and the last 7 lines.
        assert_eq!(Window::around(19, 20, 8), Window { start: 13, end: 20 });
    }
}
