//! Input to state: a key becomes an [`Action`] (or dialog input), `update`
//! changes the state and may return a [`Command`] for the engine or monitor.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Dialog, DialogKind, LogLevel, Panel, StepState};
use super::keys::{Action, Answer, Prompt, action_for, answer_for};
use super::prompt::Waiting;
use crate::engine::{Control, Reply};
use crate::monitor::Signal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reply(Reply),
    Control(Control),
    Signal { pid: i32, signal: Signal },
}

pub fn handle_key(app: &mut App, key: KeyEvent) -> Option<Command> {
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        // Ctrl-C: as in headless, cancel what runs; quit when nothing does.
        return match &app.running {
            Some(_) => Some(Command::Control(Control::Cancel)),
            None => update(app, Action::Quit),
        };
    }
    if app.show_help {
        if matches!(
            key.code,
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
        ) {
            app.show_help = false;
        }
        return None;
    }
    if app.dialog.is_some() {
        return dialog_key(app, key);
    }
    // An open prompt's keys first, then the step list's (moving, help, …).
    let prompt = app.open_prompt();
    if let Some(answer) = prompt.and_then(|p| answer_for(&app.prompts, p, &key)) {
        return answer_prompt(app, answer);
    }
    action_for(&app.bindings, &key).and_then(|a| update(app, a))
}

/// A key at an open prompt (not a dialog): the failure prompt's r/s/b/q, or
/// p/a while the engine waits for blockers.
pub fn answer_prompt(app: &mut App, answer: Answer) -> Option<Command> {
    match answer {
        Answer::Retry => {
            app.failed.take()?;
            Some(Command::Reply(Reply::Run))
        }
        Answer::SkipFailed => {
            let step = app.failed.as_ref()?.step.clone();
            app.dialog = Some(Dialog {
                kind: DialogKind::SkipReason { step },
                input: String::new(),
                error: None,
            });
            None
        }
        Answer::RollBackFailed => {
            let failed = app.failed.as_ref()?;
            if !failed.rollback_available {
                app.log(LogLevel::Info, "no step is applied: nothing to roll back");
                return None;
            }
            let step = app.steps.get(app.selected)?;
            if step.state != StepState::Applied {
                let msg = format!(
                    "{} is not applied: select the applied step to roll back down to (j/k), then b",
                    step.id
                );
                app.log(LogLevel::Info, msg);
                return None;
            }
            let id = step.id.clone();
            app.failed = None;
            app.log(
                LogLevel::Warn,
                format!("rolling back the applied steps down to {id}"),
            );
            Some(Command::Reply(Reply::RollbackThrough(id)))
        }
        Answer::QuitFailed => {
            app.failed.take()?;
            app.quit = true;
            Some(Command::Reply(Reply::Quit))
        }
        Answer::Proceed => {
            app.waiting.take()?;
            app.log(LogLevel::Warn, "proceeding: lock_timeout bounds the wait");
            Some(Command::Reply(Reply::Run))
        }
        Answer::AbortStep => {
            app.waiting.take()?;
            app.running = None;
            Some(Command::Reply(Reply::Quit))
        }
        Answer::PauseResume => backfill_order(app, Control::TogglePause, "pause or resume"),
        Answer::BatchBigger => backfill_order(
            app,
            Control::Resize(crate::engine::Resize::Double),
            "double the batch size",
        ),
        Answer::BatchSmaller => backfill_order(
            app,
            Control::Resize(crate::engine::Resize::Halve),
            "halve the batch size",
        ),
        Answer::StopAfterBatch => backfill_order(
            app,
            Control::StopAfterBatch,
            "stop after the current batch (resumable)",
        ),
        // Dialog answers (blockers, rollback list, health gate): see dialog_key.
        Answer::Wait
        | Answer::Agree
        | Answer::Decline
        | Answer::ContinueBreached
        | Answer::RollBackAll
        | Answer::StopBreached => None,
    }
}

/// An order to the running backfill, said in the log; the engine applies
/// it between two batches and says when it did.
fn backfill_order(app: &mut App, order: Control, what: &str) -> Option<Command> {
    let step = app.running_backfill()?.to_string();
    app.log(LogLevel::Info, format!("[{step}] asked: {what}"));
    Some(Command::Control(order))
}

pub fn update(app: &mut App, action: Action) -> Option<Command> {
    match action {
        Action::RunNext => {
            if app.next.take().is_some() {
                return Some(Command::Reply(Reply::Run));
            }
            if let Some(s) = &app.running {
                let msg = format!("{s} is running; c cancels it");
                app.log(LogLevel::Info, msg);
            }
            None
        }
        Action::Skip => {
            let step = app.next.clone()?;
            app.dialog = Some(Dialog {
                kind: DialogKind::SkipReason { step },
                input: String::new(),
                error: None,
            });
            None
        }
        Action::Rollback => {
            let step = app.steps.get(app.selected)?;
            // Rehearsed: `b` rehearses its rollback inside the rehearsal.
            if !matches!(step.state, StepState::Applied | StepState::Rehearsed) {
                let msg = format!("{} is not applied: nothing to roll back", step.id);
                app.log(LogLevel::Info, msg);
                return None;
            }
            if app.next.is_none() && !app.at_end {
                app.log(LogLevel::Info, "wait until no step runs to roll back");
                return None;
            }
            let id = step.id.clone();
            app.next = None;
            app.at_end = false;
            app.log(
                LogLevel::Warn,
                format!("rolling back the applied steps down to {id}"),
            );
            Some(Command::Reply(Reply::RollbackThrough(id)))
        }
        Action::Cancel => app
            .running
            .as_ref()
            .map(|_| Command::Control(Control::Cancel)),
        Action::Up | Action::Down => {
            let down = action == Action::Down;
            match app.focus {
                Panel::Steps => app.selected = step(app.selected, down, app.steps.len()),
                Panel::Locks => {
                    let rows = app.snapshot().map_or(0, |s| s.tree.len());
                    app.lock_selected = step(app.lock_selected, down, rows);
                }
                Panel::Log => {
                    app.log_scroll = if down {
                        app.log_scroll.saturating_sub(1)
                    } else {
                        (app.log_scroll + 1).min(app.log.len())
                    }
                }
            }
            None
        }
        Action::NextPanel => {
            app.focus = match app.focus {
                Panel::Steps => Panel::Locks,
                Panel::Locks => Panel::Log,
                Panel::Log => Panel::Steps,
            };
            None
        }
        Action::CancelBackend | Action::TerminateBackend => {
            if app.focus != Panel::Locks {
                app.log(
                    LogLevel::Info,
                    "Tab to the lock panel, select a backend, then C or K",
                );
                return None;
            }
            let pid = app.snapshot()?.tree.get(app.lock_selected)?.pid;
            if Some(pid) == app.executor_pid() {
                app.log(
                    LogLevel::Warn,
                    format!("{pid} is pgpilot's own session: c cancels the running step"),
                );
                return None;
            }
            let terminate = action == Action::TerminateBackend;
            app.dialog = Some(Dialog {
                kind: DialogKind::Signal { pid, terminate },
                input: String::new(),
                error: None,
            });
            None
        }
        Action::Help => {
            app.show_help = true;
            None
        }
        Action::Quit => {
            if app.running.is_some() {
                app.dialog = Some(Dialog {
                    kind: DialogKind::Quit,
                    input: String::new(),
                    error: None,
                });
                return None;
            }
            app.quit = true;
            if app.finished.is_none()
                && (app.next.take().is_some()
                    || std::mem::take(&mut app.at_end)
                    || app.failed.take().is_some())
            {
                return Some(Command::Reply(Reply::Quit));
            }
            None
        }
    }
}

/// A selection moved one row within `len` rows.
pub(super) fn step(i: usize, down: bool, len: usize) -> usize {
    if len == 0 {
        0
    } else if down {
        (i + 1).min(len - 1)
    } else {
        i.saturating_sub(1)
    }
}

fn dialog_key(app: &mut App, key: KeyEvent) -> Option<Command> {
    let dialog = app.dialog.as_mut()?;
    match (&dialog.kind, key.code) {
        (DialogKind::Blockers { step, holders }, _) => {
            let reply = match answer_for(&app.prompts, Prompt::Blockers, &key)? {
                Answer::Proceed => Reply::Run,
                Answer::Wait => {
                    // Waiting is something running: c (or q, y) stops it;
                    // p and a still answer while it waits.
                    app.running = Some(step.clone());
                    app.waiting = Some(Waiting {
                        step: step.clone(),
                        holders: holders.clone(),
                    });
                    Reply::Wait
                }
                Answer::AbortStep => Reply::Quit,
                _ => return None,
            };
            app.dialog = None;
            Some(Command::Reply(reply))
        }
        (DialogKind::RollbackList { .. }, _) => {
            let reply = match answer_for(&app.prompts, Prompt::RollbackList, &key)? {
                Answer::Agree => Reply::Run,
                Answer::Decline => Reply::Quit,
                _ => return None,
            };
            app.dialog = None;
            Some(Command::Reply(reply))
        }
        (DialogKind::HealthBreach { .. }, _) => {
            let reply = match answer_for(&app.prompts, Prompt::HealthBreach, &key)? {
                Answer::ContinueBreached => Reply::Run,
                // The engine rolls back every applied step (see gates.rs).
                Answer::RollBackAll => Reply::RollbackThrough(String::new()),
                Answer::StopBreached => Reply::Quit,
                _ => return None,
            };
            app.dialog = None;
            Some(Command::Reply(reply))
        }
        (DialogKind::PastWindow { .. }, _) => {
            let reply = match answer_for(&app.prompts, Prompt::PastWindow, &key)? {
                Answer::ContinueBreached => Reply::Run,
                Answer::StopBreached => Reply::Quit,
                _ => return None,
            };
            app.dialog = None;
            Some(Command::Reply(reply))
        }
        (DialogKind::Quit, code) => {
            app.dialog = None;
            if matches!(code, KeyCode::Char('y')) {
                app.quit = true;
                app.log(
                    LogLevel::Warn,
                    "cancelling the running statement, then leaving",
                );
                return Some(Command::Control(Control::Cancel));
            }
            None
        }
        (_, KeyCode::Esc) => {
            let kind = app.dialog.take().map(|d| d.kind);
            match kind {
                // Declining a phrase stops the run; the engine audits it.
                Some(DialogKind::Phrase(_)) => Some(Command::Reply(Reply::Quit)),
                _ => None,
            }
        }
        (_, KeyCode::Backspace) => {
            dialog.input.pop();
            None
        }
        (_, KeyCode::Char(c)) => {
            dialog.input.push(c);
            dialog.error = None;
            None
        }
        (_, KeyCode::Enter) => submit(app),
        _ => None,
    }
}

fn submit(app: &mut App) -> Option<Command> {
    let dialog = app.dialog.as_mut()?;
    let input = dialog.input.clone();
    match &dialog.kind {
        DialogKind::Phrase(ask) => {
            // The engine checks and audits it; a wrong phrase comes back as
            // the same question and the dialog reopens with an error.
            app.last_phrase = Some(ask.clone());
            app.dialog = None;
            Some(Command::Reply(Reply::Typed(input)))
        }
        DialogKind::SkipReason { .. } => {
            if input.trim().is_empty() {
                dialog.error = Some("say why this step is skipped".into());
                return None;
            }
            app.dialog = None;
            app.next = None;
            app.failed = None;
            Some(Command::Reply(Reply::Skip(input)))
        }
        DialogKind::Signal { pid, terminate } => {
            if input.trim() != pid.to_string() {
                dialog.error = Some(format!("type {pid} to confirm"));
                return None;
            }
            let (pid, signal) = (
                *pid,
                if *terminate {
                    Signal::Terminate
                } else {
                    Signal::Cancel
                },
            );
            app.dialog = None;
            Some(Command::Signal { pid, signal })
        }
        DialogKind::Blockers { .. }
        | DialogKind::RollbackList { .. }
        | DialogKind::HealthBreach { .. }
        | DialogKind::PastWindow { .. }
        | DialogKind::Quit => None,
    }
}
