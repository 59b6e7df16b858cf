//! How the engine's events and questions change the TUI's state: each
//! `EngineEvent` updates the step list and the log, and each `Ask` opens the
//! prompt or dialog it needs. Text in them comes from the runbook or the
//! server and reaches the log through `App::log` (masked, controls visible).

use crate::engine::{Ask, EngineEvent, Outcome, StepOutcome};

use super::app::{App, Dialog, DialogKind, LogLevel, StepState, human};
use super::prompt::{FailedPrompt, Waiting};

impl App {
    pub fn on_engine(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Connected(t) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "connected as {} (PostgreSQL {}, pid {})",
                        t.role, t.server_version, t.pid
                    ),
                );
                self.target = Some(t);
            }
            EngineEvent::WindowOpen { window, closes_in } => {
                self.window = Some((window, std::time::Instant::now() + closes_in));
            }
            EngineEvent::Guard {
                name,
                passed,
                detail,
            } => {
                if name == "approvals" && passed {
                    self.approvals = Some(detail.clone());
                }
                self.log(
                    if passed {
                        LogLevel::Good
                    } else {
                        LogLevel::Bad
                    },
                    format!(
                        "guard {name}: {} — {detail}",
                        if passed { "pass" } else { "FAIL" }
                    ),
                );
            }
            EngineEvent::StepStarted { step, attempt, of } => {
                if attempt == 1 {
                    self.queue_stall = None;
                }
                self.next = None;
                self.failed = None;
                self.waiting = None;
                self.last_phrase = None;
                self.running = Some(step.clone());
                self.select(&step);
                if let Some(s) = self.step_mut(&step) {
                    s.state = StepState::Running { attempt, of };
                    s.touched = true;
                }
                if attempt == 1 {
                    self.log(LogLevel::Info, format!("[{step}] running"));
                }
            }
            EngineEvent::QueueBehind {
                step,
                sessions,
                oldest,
                limit,
                yields,
            } => {
                let q = crate::tui::views::locks::QueueStall {
                    step,
                    sessions,
                    oldest,
                    limit,
                    yields,
                };
                self.queue_stall = (q.sessions > 0 || q.yields > 0).then_some(q);
            }
            EngineEvent::Retrying {
                step,
                attempt,
                of,
                message,
                yielded,
                ..
            } => {
                if let Some(s) = self.step_mut(&step) {
                    if yielded {
                        s.yields += 1;
                    } else {
                        s.retries += 1;
                    }
                }
                self.log(
                    LogLevel::Warn,
                    format!("[{step}] attempt {attempt}/{of}: {message}"),
                );
            }
            EngineEvent::Notice {
                step,
                severity,
                message,
            } => {
                let level = if severity.is_warning() {
                    LogLevel::Warn
                } else {
                    LogLevel::Info
                };
                let prefix = step.map(|s| format!("[{s}] ")).unwrap_or_default();
                self.log(level, format!("{prefix}{severity}: {message}"));
            }
            EngineEvent::StepDone {
                step,
                outcome,
                duration,
                rows,
                captured,
            } => {
                self.running = None;
                let state = match outcome {
                    StepOutcome::Applied => StepState::Applied,
                    StepOutcome::Passed => StepState::Passed,
                    StepOutcome::Acknowledged => StepState::Acknowledged,
                    StepOutcome::Rehearsed => StepState::Rehearsed,
                };
                let label = state.label();
                if let Some(s) = self.step_mut(&step) {
                    s.state = state;
                    s.duration = Some(duration);
                    s.touched = true;
                }
                let rows = rows.map(|r| format!(", {r} row(s)")).unwrap_or_default();
                let cap = captured
                    .map(|(n, v)| {
                        self.captured_now(&n, &v);
                        format!(", {{{{{n}}}}} = {v}")
                    })
                    .unwrap_or_default();
                self.log(
                    LogLevel::Good,
                    format!("[{step}] {label} in {}{rows}{cap}", human(duration)),
                );
            }
            EngineEvent::StepFailed {
                step,
                sqlstate,
                message,
            } => {
                self.running = None;
                if let Some(s) = self.step_mut(&step) {
                    s.state = StepState::Failed(message.clone());
                    s.touched = true;
                }
                self.log(
                    LogLevel::Bad,
                    format!(
                        "[{step}] FAILED{}: {message}",
                        sqlstate.map(|c| format!(" [{c}]")).unwrap_or_default()
                    ),
                );
            }
            EngineEvent::StepSkipped { step, reason } => {
                if let Some(s) = self.step_mut(&step) {
                    // A step applied on an earlier run shows as applied, not skipped.
                    s.state = if reason.starts_with("already applied") {
                        StepState::Applied
                    } else if reason.starts_with("acknowledged") {
                        StepState::Acknowledged
                    } else {
                        // Skipped now, or found skipped on an earlier run.
                        s.touched |= !reason.ends_with("on an earlier run");
                        StepState::Skipped(reason.clone())
                    };
                }
                self.log(LogLevel::Info, format!("[{step}] {reason}"));
            }
            EngineEvent::RolledBack { step, duration } => {
                self.running = None;
                self.stale_after(&step);
                if let Some(s) = self.step_mut(&step) {
                    s.state = StepState::RolledBack;
                    s.duration = Some(duration);
                    s.touched = true;
                }
                self.log(
                    LogLevel::Good,
                    format!("[{step}] rolled back in {}", human(duration)),
                );
            }
            EngineEvent::Blockers { step, holders } => {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "[{step}] {} session(s) hold locks this step needs",
                        holders.len()
                    ),
                );
                for h in &holders {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "    pid {}{} {} holds {} on {}",
                            h.pid,
                            crate::monitor::text::named(&h.name(), true, true),
                            h.state,
                            h.mode,
                            h.relation
                        ),
                    );
                }
            }
            EngineEvent::States(states) => self.on_states(states),
            EngineEvent::Recaptured {
                step,
                name,
                kept,
                fresh,
                because,
            } => self.on_recaptured(&step, name, kept, fresh, because),
            EngineEvent::Progress {
                step,
                done,
                total_estimate,
                rate_per_s,
                eta,
                batch_size,
                paused,
                waiting,
            } => {
                if let Some(s) = self.step_mut(&step) {
                    s.progress = Some(crate::tui::step_view::BackfillProgress {
                        done,
                        total_estimate,
                        rate_per_s,
                        eta,
                        batch_size,
                        paused,
                        waiting,
                    });
                }
            }
            EngineEvent::WaitingForBlockers { step, holders } => {
                let waiting = Waiting { step, holders };
                let line = waiting.line(&self.prompts);
                self.log(LogLevel::Warn, format!("[{}] {line}", waiting.step));
                self.waiting = Some(waiting);
            }
            EngineEvent::Asks(ask) => {
                self.waiting = None;
                self.on_ask(ask)
            }
            EngineEvent::Finished(outcome) => {
                self.running = None;
                self.failed = None;
                self.waiting = None;
                self.next = None;
                self.at_end = false;
                // No question is open any more (a rehearsal may have ended itself).
                self.dialog = None;
                let (level, text) = match &outcome {
                    Outcome::Done => (LogLevel::Good, "done".to_string()),
                    Outcome::Failed(m) => (LogLevel::Bad, format!("failed: {m}")),
                    Outcome::Refused(m) => (LogLevel::Bad, format!("refused: {m}")),
                    Outcome::Interrupted => (
                        LogLevel::Bad,
                        "interrupted: the running step was cancelled".to_string(),
                    ),
                };
                self.log(level, format!("{text} — press q to leave"));
                self.finished = Some(outcome);
            }
        }
    }

    fn on_ask(&mut self, ask: Ask) {
        match ask {
            Ask::Next { step } => {
                self.select(&step);
                self.next = Some(step);
            }
            Ask::End => {
                self.at_end = true;
                self.log(
                    LogLevel::Good,
                    "every step is done: b rolls back the selected step, q leaves",
                );
            }
            Ask::Blockers { step, holders } => {
                self.dialog = Some(Dialog {
                    kind: DialogKind::Blockers { step, holders },
                    input: String::new(),
                    error: None,
                });
            }
            Ask::Failed {
                step,
                message,
                rollback_available,
            } => {
                self.running = None;
                self.select(&step);
                let failed = FailedPrompt {
                    step,
                    message,
                    rollback_available,
                };
                let choices = failed.choices(&self.prompts);
                self.log(LogLevel::Bad, format!("[{}] {choices}", failed.step));
                self.failed = Some(failed);
            }
            Ask::HealthBreach {
                step,
                gate,
                value,
                limit,
            } => {
                self.select(&step);
                self.dialog = Some(Dialog {
                    kind: DialogKind::HealthBreach {
                        step,
                        gate,
                        value,
                        limit,
                    },
                    input: String::new(),
                    error: None,
                });
            }
            Ask::PastWindow {
                step,
                expected,
                source,
                left,
            } => {
                self.select(&step);
                self.dialog = Some(Dialog {
                    kind: DialogKind::PastWindow {
                        step,
                        expected,
                        source,
                        left,
                    },
                    input: String::new(),
                    error: None,
                });
            }
            Ask::RollbackList { steps } => {
                self.dialog = Some(Dialog {
                    kind: DialogKind::RollbackList { steps },
                    input: String::new(),
                    error: None,
                });
            }
            ask => {
                let reopened = self.last_phrase.take().is_some_and(|a| a == ask);
                let error =
                    reopened.then(|| "that does not match: type the phrase exactly".to_string());
                if let Ask::Confirm { step, .. } | Ask::Acknowledge { step, .. } = &ask {
                    let step = step.clone();
                    self.select(&step);
                }
                self.dialog = Some(Dialog {
                    kind: DialogKind::Phrase(ask),
                    input: String::new(),
                    error,
                });
            }
        }
    }
}
