use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::app::App;
use crate::tui::keys::{Answer, Binding, PromptBinding};
use crate::tui::theme;

/// The run screen's help: every binding, then the keys of the prompt open
/// now (each prompt's keys are listed while it is open: all of them at
/// once would not fit a small terminal).
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let open = app.open_prompt();
    let prompts: Vec<PromptBinding> = app
        .prompts
        .iter()
        .filter(|b| Some(b.prompt) == open)
        .cloned()
        .collect();
    draw_sections(
        f,
        area,
        app.bindings.iter(),
        &prompt_sections(&prompts),
        "In a dialog: type the phrase, Enter submits, Esc cancels.",
    );
}

/// Each prompt's keys under its heading, one row per answer (its keys joined).
pub fn prompt_sections(prompts: &[PromptBinding]) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut current = None;
    let mut rows: Vec<(Answer, String, &'static str)> = Vec::new();
    let flush = |lines: &mut Vec<Line<'static>>, rows: &mut Vec<(Answer, String, &'static str)>| {
        for (_, keys, description) in rows.drain(..) {
            lines.push(Line::from(vec![
                Span::styled(format!("{keys:>6}  "), theme::keyword()),
                Span::raw(description),
            ]));
        }
    };
    for b in prompts {
        if current != Some(b.prompt) {
            flush(&mut lines, &mut rows);
            current = Some(b.prompt);
            lines.push(Line::from(Span::styled(b.prompt.title(), theme::title())));
        }
        match rows.iter_mut().find(|(a, _, _)| *a == b.answer) {
            Some(row) => row.1 = format!("{}/{}", row.1, b.label),
            None => rows.push((b.answer, b.label.to_string(), b.description)),
        }
    }
    flush(&mut lines, &mut rows);
    lines
}

/// A help overlay listing `bindings` with their descriptions, then `note`.
pub fn draw_keys<'a>(
    f: &mut Frame,
    area: Rect,
    bindings: impl Iterator<Item = &'a Binding>,
    note: &str,
) {
    draw_sections(f, area, bindings, &[], note);
}

/// As [`draw_keys`], with `more` (headed sections) after the bindings.
fn draw_sections<'a>(
    f: &mut Frame,
    area: Rect,
    bindings: impl Iterator<Item = &'a Binding>,
    more: &[Line<'static>],
    note: &str,
) {
    let mut lines = vec![Line::from(Span::styled("Keys", theme::title()))];
    for (labels, description) in by_action(bindings) {
        lines.push(Line::from(vec![
            Span::styled(format!("{labels:>8}  "), theme::keyword()),
            Span::raw(description),
        ]));
    }
    lines.extend(more.iter().cloned());
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
