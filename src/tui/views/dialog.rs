//! The typed confirmation and its siblings: centred over everything.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::engine::Ask;
use crate::monitor::text::age;
use crate::tui::app::{App, Dialog, DialogKind};
use crate::tui::keys::{Answer, Prompt};
use crate::tui::prompt::key_of;
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

pub fn draw(f: &mut Frame, area: Rect, app: &App, d: &Dialog) {
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
            l.extend(paragraphs(instructions).map(|x| Line::raw(shown(&x))));
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
            l.push(Line::raw(format!(
                "{} proceed · {} wait for them · {} abort step (back to the list)",
                key_of(&app.prompts, Prompt::Blockers, Answer::Proceed),
                key_of(&app.prompts, Prompt::Blockers, Answer::Wait),
                key_of(&app.prompts, Prompt::Blockers, Answer::AbortStep),
            )));
            ("Blockers".to_string(), l, false)
        }
        DialogKind::RollbackList { steps } => {
            let mut l = vec![Line::from(Span::styled(
                format!(
                    "These {} applied steps are rolled back, newest first:",
                    steps.len()
                ),
                theme::warn(),
            ))];
            for id in steps {
                let phrase = app
                    .steps
                    .iter()
                    .find(|s| &s.id == id)
                    .and_then(|s| s.restores.as_ref())
                    .and_then(|r| r.confirm.clone());
                let mut line = vec![Span::raw(format!("  • {}", shown(id)))];
                if let Some(p) = phrase {
                    line.push(Span::raw(" — asks you to type "));
                    line.push(Span::styled(p, theme::danger()));
                }
                l.push(Line::from(line));
            }
            l.push(Line::raw(""));
            l.push(Line::raw(
                "Each destructive rollback still asks its own phrase before it runs.",
            ));
            l.push(Line::raw(format!(
                "{} roll them back · {} keep them all",
                key_of(&app.prompts, Prompt::RollbackList, Answer::Agree),
                key_of(&app.prompts, Prompt::RollbackList, Answer::Decline),
            )));
            ("Roll back".to_string(), l, true)
        }
        DialogKind::HealthBreach {
            step,
            gate,
            value,
            limit,
        } => {
            let l = vec![
                Line::from(Span::styled(
                    format!(
                        "Health gate {} is breached before {}:",
                        shown(gate),
                        shown(step)
                    ),
                    theme::danger(),
                )),
                Line::raw(format!(
                    "  value {} (limit: {})",
                    shown(value),
                    shown(limit)
                )),
                Line::raw(""),
                Line::raw(format!(
                    "{} continue · {} roll back the applied steps · {} stop",
                    key_of(&app.prompts, Prompt::HealthBreach, Answer::ContinueBreached),
                    key_of(&app.prompts, Prompt::HealthBreach, Answer::RollBackAll),
                    key_of(&app.prompts, Prompt::HealthBreach, Answer::StopBreached),
                )),
            ];
            ("Health gate".to_string(), l, true)
        }
        DialogKind::PastWindow {
            step,
            expected,
            source,
            left,
        } => {
            let l = vec![
                Line::from(Span::styled(
                    format!(
                        "{} may take {} ({}): the change window closes in {}.",
                        shown(step),
                        shown(expected),
                        shown(source),
                        shown(left)
                    ),
                    theme::danger(),
                )),
                Line::raw("Continuing runs it past the window's end."),
                Line::raw(""),
                Line::raw(format!(
                    "{} continue anyway · {} stop before the step",
                    key_of(&app.prompts, Prompt::PastWindow, Answer::ContinueBreached),
                    key_of(&app.prompts, Prompt::PastWindow, Answer::StopBreached),
                )),
            ];
            ("Change window".to_string(), l, true)
        }
        DialogKind::Quit => (
            "Quit".to_string(),
            vec![Line::raw(
                "A statement is running. y cancels it and quits; any other key goes back.",
            )],
            true,
        ),
    };
    let typed = !matches!(
        d.kind,
        DialogKind::Blockers { .. }
            | DialogKind::RollbackList { .. }
            | DialogKind::HealthBreach { .. }
            | DialogKind::PastWindow { .. }
            | DialogKind::Quit
    );
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
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if danger {
            theme::danger()
        } else {
            theme::focus_border()
        })
        .title(Span::styled(format!(" {title} "), theme::title()));
    let text = Paragraph::new(lines)
        .block(block)
        .wrap(Wrap { trim: false });
    // As tall as the wrapped text, so nothing is cut while room is left.
    let height = u16::try_from(text.line_count(width)).unwrap_or(u16::MAX);
    let rect = centered(area, width, height.min(area.height));
    f.render_widget(Clear, rect);
    f.render_widget(text, rect);
}

/// Text written with line breaks for a wider screen, as paragraphs to be
/// wrapped anew: lines join until a blank line or a list item ("- …").
fn paragraphs(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for raw in text.trim().lines().map(str::trim) {
        if raw.is_empty() {
            out.push(String::new());
            open = false;
        } else if open && !raw.starts_with("- ") && !raw.starts_with("* ") {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(raw);
            }
        } else {
            out.push(raw.to_string());
            open = true;
        }
    }
    out.into_iter()
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
