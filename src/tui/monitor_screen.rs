//! `pgpilot monitor` without `--once`: the lock tree, long transactions and
//! activity with a sparkline of waiting sessions, full screen. Its keys come
//! from the run screen's key map and go through
//! [`super::monitor_update::handle_key`]; a signal goes through
//! [`send_audited`], recorded before it is sent.

use std::collections::VecDeque;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{HISTORY, LogLevel};
use super::keys::{self, Action, Binding, label};
use super::monitor_update::{MONITOR_ACTIONS, MonitorCommand, handle_key};
use super::theme;
use super::views::help;
use super::views::hints::{self, Hint};
use super::views::locks::{LockView, draw_long, draw_tree};
use crate::audit::record::Context;
use crate::monitor::{
    Feed, News, Signal, SignalAudit, SignalReport, Snapshot, Watcher, send_audited, text,
};

pub struct MonitorScreen {
    pub target: String,
    pub interval: Duration,
    /// The last poll's outcome: a snapshot, or why there is none.
    pub feed: Option<Feed>,
    pub history: VecDeque<u64>,
    pub selected: usize,
    /// Typing a pid to signal.
    pub prompt: Option<SignalPrompt>,
    /// Shown under the title until the next message.
    pub message: Option<(LogLevel, String)>,
    pub bindings: Vec<Binding>,
    pub show_help: bool,
}

/// The pid typed to confirm a signal to the selected backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPrompt {
    pub pid: i32,
    pub signal: Signal,
    pub typed: String,
    /// Why Enter did not send it.
    pub error: Option<String>,
}

impl MonitorScreen {
    pub fn new(target: String, interval: Duration, bindings: Vec<Binding>) -> MonitorScreen {
        MonitorScreen {
            target,
            interval,
            feed: None,
            history: VecDeque::new(),
            selected: 0,
            prompt: None,
            message: None,
            bindings,
            show_help: false,
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
        self.message = Some((LogLevel::Warn, text::news(news)));
    }

    /// What became of a signal: sent, refused, or not sent because it
    /// could not be recorded.
    pub fn on_signal(&mut self, report: &SignalReport) {
        let level = if report.is_bad() {
            LogLevel::Bad
        } else {
            LogLevel::Warn
        };
        self.message = Some((level, report.to_string()));
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
        if let Some(p) = &self.prompt {
            let what = match p.signal {
                Signal::Terminate => "terminate",
                Signal::Cancel => "cancel the query of",
            };
            let mut line = vec![
                Span::styled(
                    format!("type {} and Enter to {what} it (Esc cancels): ", p.pid),
                    theme::danger(),
                ),
                Span::raw(p.typed.clone()),
            ];
            if let Some(e) = &p.error {
                line.push(Span::styled(format!("  {e}"), theme::warn()));
            }
            lines.push(Line::from(line));
        } else if let Some((level, m)) = &self.message {
            let style = match level {
                LogLevel::Bad => theme::danger(),
                LogLevel::Info | LogLevel::Good | LogLevel::Warn => theme::warn(),
            };
            lines.push(Line::from(Span::styled(m.clone(), style)));
        }
        f.render_widget(Paragraph::new(lines), head);
        let view = LockView {
            feed: self.feed.as_ref(),
            executor_wait: None,
            executor: None,
            lock_selected: self.selected,
            focused: true,
            history: &self.history,
            interval: self.interval,
            long_in_title: false,
            rehearsal: false,
            queue: None,
        };
        draw_tree(f, tree, &view);
        draw_long(f, long, &view);
        f.render_widget(Paragraph::new(self.footer(foot.width)), foot);
        if self.show_help {
            help::draw_keys(
                f,
                f.area(),
                self.bindings
                    .iter()
                    .filter(|b| MONITOR_ACTIONS.contains(&b.action)),
                "Typing a pid: Enter sends, Esc cancels.",
            );
        }
    }

    /// The keys that apply now, from the key map, fitted to `columns`.
    fn footer(&self, columns: u16) -> Line<'static> {
        let b = &self.bindings;
        let (keys, kept): (Vec<Hint>, Vec<Hint>) = if self.prompt.is_some() {
            (
                vec![("Enter".into(), "send"), ("Esc".into(), "cancel")],
                vec![],
            )
        } else {
            (
                vec![
                    (
                        format!("{}/{}", label(b, Action::Down), label(b, Action::Up)),
                        "move",
                    ),
                    (label(b, Action::CancelBackend), "cancel backend"),
                    (label(b, Action::TerminateBackend), "terminate backend"),
                ],
                vec![
                    (label(b, Action::Help), "help"),
                    (label(b, Action::Quit), "quit"),
                ],
            )
        };
        hints::line(hints::fit(keys, kept, columns as usize), theme::dim())
    }
}

/// Runs the monitor screen until `q`; returns the exit code. `warnings`
/// (from resolving the connection) are shown first. A bad key map
/// (`keys.toml`) is a usage error, said before the screen opens.
pub async fn run(
    mut watcher: Watcher,
    target: String,
    interval: Duration,
    ctx: Context,
    warnings: &[String],
) -> u8 {
    let bindings = match keys::load(keys::user_keymap().as_deref()) {
        Ok(b) => b,
        Err(m) => {
            eprintln!("pgpilot: {m}");
            return crate::exit::USAGE;
        }
    };
    let mut screen = MonitorScreen::new(target, interval, bindings);
    if !warnings.is_empty() {
        screen.message = Some((LogLevel::Warn, format!("warning: {}", warnings.join("; "))));
    }
    let mut audit = SignalAudit::in_default_dir(ctx);
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
                match handle_key(&mut screen, k) {
                    Some(MonitorCommand::Quit) => break,
                    Some(MonitorCommand::Signal { pid, signal }) => {
                        let report = send_audited(&watcher, &mut audit, pid, signal).await;
                        screen.on_signal(&report);
                    }
                    None => {}
                }
            }
        }
    }
    ratatui::restore();
    crate::exit::OK
}
