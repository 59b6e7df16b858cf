//! `pgpilot monitor` without `--once`: the lock tree, long transactions and
//! activity with a sparkline of waiting sessions, full screen.

use std::collections::VecDeque;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use futures_util::StreamExt;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::HISTORY;
use super::theme;
use super::views::locks::{LockView, draw_long, draw_tree};
use crate::audit::record::{Action, Context, Event as AuditEvent};
use crate::monitor::{Monitor, Signal, Snapshot, signal_backend};

pub struct MonitorScreen {
    pub target: String,
    pub interval: Duration,
    pub snapshot: Option<Snapshot>,
    pub history: VecDeque<u64>,
    pub selected: usize,
    /// Typing a pid to signal: (pid, terminate, typed).
    pub signal: Option<(i32, bool, String)>,
    pub message: Option<String>,
    pub error: Option<String>,
}

impl MonitorScreen {
    pub fn new(target: String, interval: Duration) -> MonitorScreen {
        MonitorScreen {
            target,
            interval,
            snapshot: None,
            history: VecDeque::new(),
            selected: 0,
            signal: None,
            message: None,
            error: None,
        }
    }

    pub fn on_snapshot(&mut self, s: Snapshot) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(s.summary.waiting as u64);
        self.selected = self.selected.min(s.tree.len().saturating_sub(1));
        self.snapshot = Some(s);
    }

    pub fn draw(&self, f: &mut Frame) {
        let [head, tree, long, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Percentage(55),
            Constraint::Min(6),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let mut lines = vec![Line::from(vec![
            Span::styled("pgpilot monitor ", theme::title()),
            Span::raw(self.target.clone()),
            Span::styled(
                format!("  every {}", crate::runbook::format_duration(self.interval)),
                theme::dim(),
            ),
        ])];
        if let Some(e) = &self.error {
            lines.push(Line::from(Span::styled(e.clone(), theme::danger())));
        } else if let Some(m) = &self.message {
            lines.push(Line::from(Span::styled(m.clone(), theme::warn())));
        } else if let Some((pid, terminate, typed)) = &self.signal {
            let what = if *terminate {
                "terminate"
            } else {
                "cancel the query of"
            };
            lines.push(Line::from(vec![
                Span::styled(
                    format!("type {pid} and Enter to {what} it (Esc cancels): "),
                    theme::danger(),
                ),
                Span::raw(typed.clone()),
            ]));
        }
        f.render_widget(Paragraph::new(lines), head);
        let view = LockView {
            snapshot: self.snapshot.as_ref(),
            executor_wait: None,
            executor: None,
            lock_selected: self.selected,
            focused: true,
            history: &self.history,
        };
        draw_tree(f, tree, &view);
        draw_long(f, long, &view);
        let keys = " j/k  move   C  cancel backend   K  terminate backend   q  quit";
        f.render_widget(Paragraph::new(Span::styled(keys, theme::dim())), foot);
    }
}

/// Runs the monitor screen until `q`; returns the exit code.
pub async fn run(monitor: Monitor, target: String, interval: Duration, ctx: Context) -> u8 {
    let mut screen = MonitorScreen::new(target, interval);
    let mut audit = crate::audit::local::AuditLog::open_default().ok();
    let mut db = audit
        .as_ref()
        .map(|a| crate::audit::db::DbAudit::new(a.dir()));
    let mut terminal = ratatui::init();
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(interval);
    loop {
        if terminal.draw(|f| screen.draw(f)).is_err() {
            break;
        }
        tokio::select! {
            _ = tick.tick() => match monitor.poll().await {
                Ok(s) => { screen.error = None; screen.on_snapshot(s) }
                Err(e) => screen.error = Some(format!("poll failed: {}", crate::pg::redact(&e.to_string()))),
            },
            ev = keys.next() => {
                let Some(Ok(Event::Key(k))) = ev else { continue };
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                if let Some((pid, terminate, typed)) = screen.signal.as_mut() {
                    match k.code {
                        KeyCode::Esc => screen.signal = None,
                        KeyCode::Backspace => { typed.pop(); }
                        KeyCode::Char(c) => typed.push(c),
                        KeyCode::Enter if typed.trim() == pid.to_string() => {
                            let (pid, signal) = (*pid, if *terminate { Signal::Terminate } else { Signal::Cancel });
                            screen.signal = None;
                            let result = signal_backend(monitor.client(), pid, signal, &[monitor.pid()]).await;
                            let what = if signal == Signal::Terminate { "pg_terminate_backend" } else { "pg_cancel_backend" };
                            screen.message = Some(match &result {
                                Ok(true) => format!("{what}({pid}) sent"),
                                Ok(false) => format!("{what}({pid}): no such backend any more"),
                                Err(e) => format!("{what}({pid}) refused: {e}"),
                            });
                            if let (Some(a), Some(d)) = (audit.as_mut(), db.as_mut()) {
                                let mut ev = AuditEvent::new(Action::Terminate);
                                ev.sql = Some(format!("SELECT {what}({pid})"));
                                ev.outcome = Some(if matches!(result, Ok(true)) { "done" } else { "not done" }.into());
                                if let Ok(rec) = a.append(&ctx, ev) {
                                    let _ = d.write(monitor.client(), &rec).await;
                                }
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                let rows = screen.snapshot.as_ref().map_or(0, |s| s.tree.len());
                match k.code {
                    KeyCode::Char('q') => break,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => break,
                    KeyCode::Char('j') | KeyCode::Down => screen.selected = (screen.selected + 1).min(rows.saturating_sub(1)),
                    KeyCode::Char('k') | KeyCode::Up => screen.selected = screen.selected.saturating_sub(1),
                    KeyCode::Char(c @ ('C' | 'K')) => {
                        if let Some(n) = screen.snapshot.as_ref().and_then(|s| s.tree.get(screen.selected)) {
                            screen.message = None;
                            screen.signal = Some((n.pid, c == 'K', String::new()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    ratatui::restore();
    crate::cli::exit::OK
}
