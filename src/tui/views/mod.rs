//! Pure views: each draws part of the screen from the state, nothing else.
//! `draw` lays the panels out and collapses them on small terminals.

mod backfill;
mod captured;
mod detail;
pub mod dialog;
mod header;
pub mod help;
pub mod hints;
pub mod locks;
mod log;
pub mod replicas;
pub mod statement_gauge;
mod steps;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Paragraph};

use super::app::{App, DialogKind, Panel};
use super::keys::{Action, Prompt, label, prompt_hints};
use super::theme;

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let header_rows = 2
        + u16::from(app.replica_limit.is_some())
        + u16::from(app.approvals.is_some() || app.window.is_some());
    let [header_area, body, footer_area] = Layout::vertical([
        Constraint::Length(header_rows),
        Constraint::Min(8),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(f, header_area, app);
    // A pause and the blockers prompt ask the operator to look at the lock
    // panels: their dialogs go over the steps (and the log gives them room),
    // never over the locks.
    let pause = app.dialog.as_ref().is_some_and(|d| {
        matches!(
            d.kind,
            DialogKind::Phrase(crate::engine::Ask::Acknowledge { .. })
                | DialogKind::Blockers { .. }
        )
    });
    let large = area.height >= 34;
    let (top_min, locks_rows, log_rows) = if large { (12, 11, 8) } else { (8, 7, 4) };
    let log_rows = if pause { 0 } else { log_rows };
    let [top, locks_area, log_area] = Layout::vertical([
        Constraint::Min(top_min),
        Constraint::Length(locks_rows),
        Constraint::Length(log_rows),
    ])
    .areas(body);
    let steps_width = if area.width >= 120 { 44 } else { 30 };
    let [steps_area, detail_area] =
        Layout::horizontal([Constraint::Length(steps_width), Constraint::Min(20)]).areas(top);
    steps::draw(f, steps_area, app);
    detail::draw(f, detail_area, app);
    // From 100 columns the long transactions have a panel of their own.
    if area.width >= 100 {
        let [l, t] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(locks_area);
        locks::draw_tree(f, l, &locks::LockView::of(app));
        locks::draw_long(f, t, &locks::LockView::of(app));
    } else {
        let view = locks::LockView {
            long_in_title: true,
            ..locks::LockView::of(app)
        };
        locks::draw_tree(f, locks_area, &view);
    }
    if log_rows > 0 {
        log::draw(f, log_area, app);
    }
    footer(f, footer_area, app);
    if let Some(d) = &app.dialog {
        dialog::draw(f, if pause { top } else { area }, app, d);
    }
    if app.show_help {
        help::draw(f, area, app);
    }
}

/// A bordered block whose border shows focus.
pub fn panel(title: &str, focused: bool) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme::focus_border()
        } else {
            theme::border()
        })
        .title(Span::styled(format!(" {title} "), theme::title()))
}

pub fn focused(app: &App, p: Panel) -> bool {
    app.focus == p
}

/// The keys that apply now.
fn footer(f: &mut Frame, area: Rect, app: &App) {
    let b = &app.bindings;
    let mut keys: Vec<hints::Hint> = Vec::new();
    let mut kept: Vec<hints::Hint> = Vec::new();
    if let Some(d) = &app.dialog {
        match d.kind {
            super::app::DialogKind::Blockers { .. } => {
                keys.extend(prompt_hints(&app.prompts, Prompt::Blockers));
            }
            super::app::DialogKind::RollbackList { .. } => {
                keys.extend(prompt_hints(&app.prompts, Prompt::RollbackList));
            }
            super::app::DialogKind::HealthBreach { .. } => {
                keys.extend(prompt_hints(&app.prompts, Prompt::HealthBreach));
            }
            super::app::DialogKind::PastWindow { .. } => {
                keys.extend(prompt_hints(&app.prompts, Prompt::PastWindow));
            }
            super::app::DialogKind::Quit => {
                keys.push(("y".into(), "cancel and quit"));
                keys.push(("n".into(), "go back"));
            }
            _ => {
                keys.push(("Enter".into(), "submit"));
                keys.push(("Esc".into(), "cancel"));
            }
        }
    } else if app.failed.is_some() {
        keys.extend(prompt_hints(&app.prompts, Prompt::Failure));
        keys.push(("j/k".into(), "move"));
        kept.push((label(b, Action::Help), "help"));
    } else {
        if app.waiting.is_some() {
            let hints = prompt_hints(&app.prompts, Prompt::Blockers);
            // While waiting: proceed and abort; `w` is what it does already.
            keys.extend(hints.into_iter().filter(|(_, h)| *h != "wait"));
        }
        if app.next.is_some() {
            keys.push((label(b, Action::RunNext), "run next"));
            keys.push((label(b, Action::Skip), "skip"));
        }
        if app.running.is_some() {
            keys.push((label(b, Action::Cancel), "cancel statement"));
        }
        if app.running_backfill().is_some() {
            keys.extend(prompt_hints(&app.prompts, Prompt::Backfill));
        }
        if app.next.is_some() || app.at_end {
            keys.push((label(b, Action::Rollback), "roll back selected"));
        }
        keys.push(("j/k".into(), "move"));
        keys.push((label(b, Action::NextPanel), "panel"));
        if app.focus == Panel::Locks {
            keys.push((label(b, Action::CancelBackend), "cancel backend"));
            keys.push((label(b, Action::TerminateBackend), "terminate backend"));
        }
        kept.push((label(b, Action::Help), "help"));
        kept.push((label(b, Action::Quit), "quit"));
    }
    let keys = hints::fit(keys, kept, area.width as usize);
    f.render_widget(
        Paragraph::new(hints::line(keys, ratatui::style::Style::new())),
        area,
    );
}

/// Cuts a string to `max` characters with an ellipsis.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else if max == 0 {
        String::new()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
