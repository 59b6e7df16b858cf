//! The typed confirmation and its siblings: centred over everything.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::engine::Ask;
use crate::monitor::text::age;
use crate::tui::app::{App, Dialog, DialogKind};
use crate::tui::theme;

/// Text from the runbook or the server, as a dialog shows it.
fn shown(text: &str) -> String {
    crate::text::for_terminal(text).into_owned()
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}

pub fn draw(f: &mut Frame, area: Rect, _app: &App, d: &Dialog) {
    let (title, mut lines, danger) = match &d.kind {
        DialogKind::Phrase(Ask::Confirm { step, phrase, what }) => (
            format!("Confirm {step}"),
            vec![
                Line::from(vec![
                    Span::raw("This destroys: "),
                    Span::styled(shown(what), theme::danger()),
                ]),
                Line::raw(""),
                Line::from(vec![
                    Span::raw("Type "),
                    Span::styled(shown(phrase), theme::title()),
                    Span::raw(" to run it."),
                ]),
            ],
            true,
        ),
        DialogKind::Phrase(Ask::Acknowledge { step, instructions }) => {
            let mut l: Vec<Line> = vec![Line::from(Span::styled(
                format!("Pause at {step}"),
                theme::warn(),
            ))];
            l.extend(instructions.trim().lines().map(|x| Line::raw(shown(x))));
            l.push(Line::raw(""));
            l.push(Line::from(vec![
                Span::raw("Type "),
                Span::styled("done", theme::title()),
                Span::raw(" when it is done."),
            ]));
            ("Pause".to_string(), l, false)
        }
        DialogKind::Phrase(Ask::DatabaseName { database }) => (
            "Production".to_string(),
            vec![Line::from(vec![
                Span::raw("This is production. Type the database name "),
                Span::styled(shown(database), theme::title()),
                Span::raw(" to go on."),
            ])],
            true,
        ),
        DialogKind::Phrase(_) => ("Confirm".to_string(), vec![], false),
        DialogKind::SkipReason { step } => (
            "Skip".to_string(),
            vec![Line::raw(format!(
                "Why is {step} skipped? (recorded in the audit)"
            ))],
            false,
        ),
        DialogKind::Signal { pid, terminate } => (
            if *terminate {
                "Terminate backend"
            } else {
                "Cancel backend's query"
            }
            .to_string(),
            vec![
                Line::raw(if *terminate {
                    format!(
                        "pg_terminate_backend({pid}) ends the session and rolls back its transaction."
                    )
                } else {
                    format!("pg_cancel_backend({pid}) cancels its running query.")
                }),
                Line::from(vec![
                    Span::raw("Type the pid "),
                    Span::styled(pid.to_string(), theme::title()),
                    Span::raw(" to confirm."),
                ]),
            ],
            *terminate,
        ),
        DialogKind::Blockers { step, holders } => {
            let mut l = vec![Line::from(Span::styled(
                format!("{} session(s) hold locks {step} needs:", holders.len()),
                theme::warn(),
            ))];
            let inner = usize::from(dialog_width(area)).saturating_sub(2);
            for h in holders.iter().take(4) {
                l.extend(holder_lines(h, inner));
            }
            if holders.len() > 4 {
                l.push(Line::styled(
                    format!("  … and {} more (see the log)", holders.len() - 4),
                    theme::dim(),
                ));
            }
            l.push(Line::raw(""));
            l.push(Line::raw(
                "p proceed (the wait is bounded by lock_timeout) · w wait for them · a abort",
            ));
            ("Blockers".to_string(), l, false)
        }
        DialogKind::Quit => (
            "Quit".to_string(),
            vec![Line::raw(
                "A statement is running. y cancels it and quits; any other key goes back.",
            )],
            true,
        ),
    };
    let typed = !matches!(d.kind, DialogKind::Blockers { .. } | DialogKind::Quit);
    if typed {
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::styled("> ", theme::title()),
            Span::raw(d.input.clone()),
            Span::styled("█", theme::dim()),
        ]));
    }
    if let Some(e) = &d.error {
        lines.push(Line::from(Span::styled(e.clone(), theme::danger())));
    }
    if typed {
        lines.push(Line::from(Span::styled(
            "Enter submits · Esc cancels",
            theme::dim(),
        )));
    }
    let width = dialog_width(area);
    let height = (lines.len() as u16 + 4).min(area.height);
    let rect = centered(area, width, height);
    f.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if danger {
            theme::danger()
        } else {
            theme::focus_border()
        })
        .title(Span::styled(format!(" {title} "), theme::title()));
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

fn dialog_width(area: Rect) -> u16 {
    72.min(area.width.saturating_sub(4)).max(30)
}

/// A holder in the blockers dialog, in three lines cut to `width` (so that
/// the keys below stay in view): who it is, what it holds, what it runs.
fn holder_lines(h: &crate::monitor::Holder, width: usize) -> [Line<'static>; 3] {
    let cut = |s: String| super::cut(&s, width);
    [
        Line::raw(cut(format!(
            "  {}{}",
            h.pid,
            crate::monitor::text::named(&h.name(), true, true)
        ))),
        Line::raw(cut(format!(
            "    {}{}, holds {} on {}",
            h.state,
            h.xact_age_s
                .map(|a| format!(" {}", age(a)))
                .unwrap_or_default(),
            h.mode,
            h.relation
        ))),
        Line::styled(
            cut(format!("    {}", super::one_line(&h.query))),
            theme::dim(),
        ),
    ]
}
