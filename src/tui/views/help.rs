use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::app::App;
use crate::tui::keys::Binding;
use crate::tui::theme;

/// The run screen's help: every binding.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    draw_keys(
        f,
        area,
        app.bindings.iter(),
        "In a dialog: type the phrase, Enter submits, Esc cancels.",
    );
}

/// A help overlay listing `bindings` with their descriptions, then `note`.
pub fn draw_keys<'a>(
    f: &mut Frame,
    area: Rect,
    bindings: impl Iterator<Item = &'a Binding>,
    note: &str,
) {
    let mut lines = vec![Line::from(Span::styled("Keys", theme::title()))];
    for (labels, description) in by_action(bindings) {
        lines.push(Line::from(vec![
            Span::styled(format!("{labels:>8}  "), theme::keyword()),
            Span::raw(description),
        ]));
    }
    // The notes give way to the keys on a short terminal.
    let notes = [
        Line::raw(""),
        Line::from(Span::styled(note.to_string(), theme::dim())),
        Line::from(Span::styled(
            "Rebind keys in keys.toml in pgpilot's config directory.",
            theme::dim(),
        )),
    ];
    let room = usize::from(area.height.saturating_sub(2));
    if lines.len() + notes.len() <= room {
        lines.extend(notes);
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 76.min(area.width);
    let [v] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(v);
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme::focus_border())
                .title(" Help ")
                // On the border, so it shows however short the terminal.
                .title_bottom(" ? or Esc closes this help "),
        ),
        rect,
    );
}

/// One line per action, in the order the actions first appear: its keys
/// joined (`↑/k`), and its description.
fn by_action<'a>(bindings: impl Iterator<Item = &'a Binding>) -> Vec<(String, &'static str)> {
    let mut rows: Vec<(crate::tui::keys::Action, String, &'static str)> = Vec::new();
    for b in bindings {
        match rows.iter_mut().find(|(a, ..)| *a == b.action) {
            Some((_, labels, _)) => {
                labels.push('/');
                labels.push_str(&b.label);
            }
            None => rows.push((b.action, b.label.clone(), b.description)),
        }
    }
    rows.into_iter().map(|(_, l, d)| (l, d)).collect()
}
