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
use crate::monitor::{Feed, News, Signal, Snapshot, Watcher, text};

pub struct MonitorScreen {
    pub target: String,
    pub interval: Duration,
    /// The last poll's outcome: a snapshot, or why there is none.
    pub feed: Option<Feed>,
    pub history: VecDeque<u64>,
    pub selected: usize,
    /// Typing a pid to signal: (pid, terminate, typed).
    pub signal: Option<(i32, bool, String)>,
    pub message: Option<String>,
}

impl MonitorScreen {
    pub fn new(target: String, interval: Duration) -> MonitorScreen {
        MonitorScreen {
            target,
            interval,
            feed: None,
            history: VecDeque::new(),
            selected: 0,
            signal: None,
            message: None,
        }
    }

    /// A poll's outcome; the sparkline counts only real snapshots.
    pub fn on_feed(&mut self, feed: Feed) {
        if let Feed::Snapshot(s) = &feed {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(s.summary.waiting as u64);
            self.selected = self.selected.min(s.tree.len().saturating_sub(1));
        }
        self.feed = Some(feed);
    }

    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.feed.as_ref().and_then(Feed::snapshot)
    }

    /// A change of the monitor's connection, shown until the next message.
    pub fn on_news(&mut self, news: &News) {
        self.message = Some(text::news(news));
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
        if let Some(m) = &self.message {
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
            feed: self.feed.as_ref(),
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

/// Runs the monitor screen until `q`; returns the exit code. `warnings`
/// (from resolving the connection) are shown first.
pub async fn run(
    mut watcher: Watcher,
    target: String,
    interval: Duration,
    ctx: Context,
    warnings: &[String],
) -> u8 {
    let mut screen = MonitorScreen::new(target, interval);
    if !warnings.is_empty() {
        screen.message = Some(format!("warning: {}", warnings.join("; ")));
    }
    let mut audit = crate::audit::local::AuditLog::open_default().ok();
    let mut db = audit
        .as_ref()
        .map(|a| crate::audit::db::DbAudit::new(a.dir()));
    let mut terminal = ratatui::init();
    let mut keys = EventStream::new();
    loop {
        if terminal.draw(|f| screen.draw(f)).is_err() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(watcher.due()) => {
                let (feed, news) = watcher.next().await;
                if let Some(n) = news {
                    screen.on_news(&n);
                }
                screen.on_feed(feed);
            }
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
                            let result = watcher.signal(pid, signal).await;
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
                                if let (Ok(rec), Some(client)) = (a.append(&ctx, ev), watcher.client()) {
                                    let _ = d.write(client, &rec).await;
                                }
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                let rows = screen.snapshot().map_or(0, |s| s.tree.len());
                match k.code {
                    KeyCode::Char('q') => break,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => break,
                    KeyCode::Char('j') | KeyCode::Down => screen.selected = (screen.selected + 1).min(rows.saturating_sub(1)),
                    KeyCode::Char('k') | KeyCode::Up => screen.selected = screen.selected.saturating_sub(1),
                    KeyCode::Char(c @ ('C' | 'K')) => {
                        if let Some(pid) = screen.snapshot().and_then(|s| s.tree.get(screen.selected)).map(|n| n.pid) {
                            screen.message = None;
                            screen.signal = Some((pid, c == 'K', String::new()));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    ratatui::restore();
    crate::exit::OK
}
