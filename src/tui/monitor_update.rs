//! The monitor screen's input, as the run screen's ([`super::update`]): a
//! key becomes an [`Action`] from the same key map (or input to the pid
//! prompt), and `update` changes the screen and may return a
//! [`MonitorCommand`] for the loop, which does the I/O.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::LogLevel;
use super::keys::{Action, action_for};
use super::monitor_screen::{MonitorScreen, SignalPrompt};
use super::update::step;
use crate::monitor::Signal;

/// What the monitor screen's loop does for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorCommand {
    Quit,
    /// Cancel or terminate a backend, its pid typed: through
    /// [`crate::monitor::send_audited`], which records it first.
    Signal {
        pid: i32,
        signal: Signal,
    },
}

/// The actions this screen acts on, in the order its help lists them.
pub const MONITOR_ACTIONS: [Action; 6] = [
    Action::Up,
    Action::Down,
    Action::CancelBackend,
    Action::TerminateBackend,
    Action::Help,
    Action::Quit,
];

pub fn handle_key(screen: &mut MonitorScreen, key: KeyEvent) -> Option<MonitorCommand> {
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return Some(MonitorCommand::Quit);
    }
    if screen.show_help {
        if matches!(
            key.code,
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
        ) {
            screen.show_help = false;
        }
        return None;
    }
    if screen.prompt.is_some() {
        return prompt_key(screen, key);
    }
    action_for(&screen.bindings, &key).and_then(|a| update(screen, a))
}

pub fn update(screen: &mut MonitorScreen, action: Action) -> Option<MonitorCommand> {
    match action {
        Action::Up | Action::Down => {
            let rows = screen.snapshot().map_or(0, |s| s.tree.len());
            screen.selected = step(screen.selected, action == Action::Down, rows);
            None
        }
        Action::CancelBackend | Action::TerminateBackend => {
            let Some(snapshot) = screen.snapshot() else {
                screen.message = Some((
                    LogLevel::Warn,
                    "no sessions to select until the monitor polls again".into(),
                ));
                return None;
            };
            let pid = snapshot.tree.get(screen.selected)?.pid;
            let signal = if action == Action::TerminateBackend {
                Signal::Terminate
            } else {
                Signal::Cancel
            };
            screen.message = None;
            screen.prompt = Some(SignalPrompt {
                pid,
                signal,
                typed: String::new(),
                error: None,
            });
            None
        }
        Action::Help => {
            screen.show_help = true;
            None
        }
        Action::Quit => Some(MonitorCommand::Quit),
        // The run screen's: there is no runbook and one panel here.
        Action::RunNext | Action::Skip | Action::Rollback | Action::Cancel | Action::NextPanel => {
            None
        }
    }
}

/// Typing the pid: Enter sends only when it is the selected backend's.
fn prompt_key(screen: &mut MonitorScreen, key: KeyEvent) -> Option<MonitorCommand> {
    let prompt = screen.prompt.as_mut()?;
    match key.code {
        KeyCode::Esc => screen.prompt = None,
        KeyCode::Backspace => {
            prompt.typed.pop();
        }
        KeyCode::Char(c) => {
            prompt.typed.push(c);
            prompt.error = None;
        }
        KeyCode::Enter if prompt.typed.trim() == prompt.pid.to_string() => {
            let (pid, signal) = (prompt.pid, prompt.signal);
            screen.prompt = None;
            return Some(MonitorCommand::Signal { pid, signal });
        }
        KeyCode::Enter => prompt.error = Some(format!("type {} to confirm", prompt.pid)),
        _ => {}
    }
    None
}
