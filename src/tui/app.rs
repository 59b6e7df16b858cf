//! The TUI's state. Only the UI loop changes it: engine events
//! (`engine_events.rs`), monitor snapshots (here) and key actions
//! (`update.rs`) each go through one method.

use std::collections::VecDeque;
use std::time::Duration;

use crate::analysis::LockMode;
use crate::engine::{Ask, Outcome, TargetInfo};
use crate::monitor::{Feed, Holder, Snapshot};
use crate::runbook::Runbook;

use super::keys::{Binding, PromptBinding};
use super::prompt::{FailedPrompt, Waiting};
pub use super::step_view::{StepState, StepView};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Run,
    Rehearsal,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Steps,
    Locks,
    Log,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DialogKind {
    /// The engine asks for a phrase (destructive step, production name, pause).
    Phrase(Ask),
    /// A reason for skipping the next step.
    SkipReason { step: String },
    /// Type the pid to cancel or terminate a backend.
    Signal { pid: i32, terminate: bool },
    /// Sessions hold locks the next step needs: p / w / a.
    Blockers { step: String, holders: Vec<Holder> },
    /// Several steps are about to be rolled back: y / n.
    RollbackList { steps: Vec<String> },
    /// A health gate is breached before `step`: c / b / x.
    HealthBreach {
        step: String,
        gate: String,
        value: String,
        limit: String,
    },
    /// `step` may outlast the change window: c / x.
    PastWindow {
        step: String,
        expected: String,
        source: String,
        left: String,
    },
    /// A statement runs: quit anyway?
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dialog {
    pub kind: DialogKind,
    pub input: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Good,
    Warn,
    Bad,
}

pub struct App {
    pub title: String,
    pub runbook_id: String,
    pub kind: SessionKind,
    pub env: Option<String>,
    pub target: Option<TargetInfo>,
    pub target_label: String,
    /// The runbook's tightest `max_replica_lag`: the standbys are shown
    /// (and polled) only when it is set.
    pub replica_limit: Option<Duration>,
    pub steps: Vec<StepView>,
    pub selected: usize,
    pub focus: Panel,
    /// The monitor's last poll: a snapshot, or why there is none.
    pub feed: Option<Feed>,
    /// Waiting sessions at each poll, for the sparkline.
    pub waiting_history: VecDeque<u64>,
    /// The session the executor's statement was last seen waiting for
    /// (a concurrent build's final waits): logged once when it changes.
    pub progress_locker: Option<i32>,
    /// The queue behind the running step's lock wait and its yields.
    pub queue_stall: Option<crate::tui::views::locks::QueueStall>,
    /// Time between two of the monitor's polls.
    pub poll_interval: Duration,
    pub lock_selected: usize,
    pub log: Vec<LogLine>,
    pub log_scroll: usize,
    pub dialog: Option<Dialog>,
    /// The engine waits for `r` (or `s`/`b`) at this step.
    pub next: Option<String>,
    /// Every step is done; the engine waits for `b` or `q`.
    pub at_end: bool,
    pub running: Option<String>,
    pub finished: Option<Outcome>,
    pub show_help: bool,
    pub bindings: Vec<Binding>,
    pub quit: bool,
    /// The question a phrase was last typed for: asked again means it was wrong.
    pub last_phrase: Option<Ask>,
    /// Captured values by variable name, as later steps use them.
    pub captured: std::collections::BTreeMap<String, super::truth::CapturedValue>,
    /// The prompts' keys (keys.rs).
    pub prompts: Vec<PromptBinding>,
    /// A step failed; the engine waits for r/s/b/q.
    pub failed: Option<FailedPrompt>,
    /// The engine waits for blockers to go; p or a still answer.
    pub waiting: Option<Waiting>,
    /// Each step's forecast, measured beside the session (tui/forecast.rs).
    pub forecast: super::forecast::ForecastState,
    /// `run --emergency "REASON"`: shown as a banner for the whole session.
    pub emergency: Option<String>,
    /// The approvals the run counted (the approvals guard's detail).
    pub approvals: Option<String>,
    /// The change window the run started in, and when it closes (by the
    /// server's clock at the start, counted down on this machine's
    /// monotonic clock).
    pub window: Option<(String, std::time::Instant)>,
}

pub const HISTORY: usize = 120;

impl App {
    pub fn new(
        runbook: &Runbook,
        analysis: &crate::analysis::RunbookAnalysis,
        kind: SessionKind,
        env: Option<String>,
        target_label: String,
        bindings: Vec<Binding>,
    ) -> App {
        let steps = runbook
            .steps()
            .zip(&analysis.steps)
            .map(|((p, s), a)| StepView::new(&p.id, s, a))
            .collect();
        App {
            title: shown(&runbook.title),
            runbook_id: runbook.id.clone(),
            kind,
            env,
            target: None,
            target_label,
            replica_limit: runbook.max_replica_lag(),
            steps,
            selected: 0,
            focus: Panel::Steps,
            feed: None,
            waiting_history: VecDeque::with_capacity(HISTORY),
            progress_locker: None,
            queue_stall: None,
            poll_interval: Duration::from_secs(1),
            lock_selected: 0,
            log: Vec::new(),
            log_scroll: 0,
            dialog: None,
            next: None,
            at_end: false,
            running: None,
            finished: None,
            show_help: false,
            bindings,
            quit: false,
            last_phrase: None,
            captured: Default::default(),
            prompts: super::keys::prompt_defaults(),
            failed: None,
            waiting: None,
            forecast: Default::default(),
            emergency: None,
            approvals: None,
            window: None,
        }
    }

    /// A line of the log. Notices, values and messages come from outside:
    /// passwords masked, controls made visible.
    pub fn log(&mut self, level: LogLevel, text: impl Into<String>) {
        self.log.push(LogLine {
            level,
            text: shown(&text.into()),
        });
    }

    /// What resolving the connection warned about (a password file ignored
    /// for its permissions, …): already on stderr before the TUI opened, and
    /// kept in view in the log.
    pub fn connection_warnings(&mut self, warnings: &[String]) {
        for warning in warnings {
            self.log(LogLevel::Warn, format!("warning: {warning}"));
        }
    }

    pub(super) fn step_mut(&mut self, id: &str) -> Option<&mut StepView> {
        self.steps.iter_mut().find(|s| s.id == id)
    }

    pub(super) fn select(&mut self, id: &str) {
        if let Some(i) = self.steps.iter().position(|s| s.id == id) {
            self.selected = i;
        }
    }

    /// A poll's outcome. While the monitor is disconnected there is no
    /// snapshot at all: nothing stale is shown, and nothing in it can be
    /// selected to be signalled.
    pub fn on_feed(&mut self, feed: Feed) {
        if let Feed::Snapshot(snap) = &feed {
            if self.waiting_history.len() == HISTORY {
                self.waiting_history.pop_front();
            }
            self.waiting_history.push_back(snap.summary.waiting as u64);
            let rows = snap.tree.len();
            if self.lock_selected >= rows {
                self.lock_selected = rows.saturating_sub(1);
            }
        }
        self.feed = Some(feed);
        let locker = self
            .executor_progress()
            .and_then(|p| Some((p.phase.clone(), p.locker.clone()?)));
        let pid = locker.as_ref().map(|(_, l)| l.pid);
        if pid != self.progress_locker {
            self.progress_locker = pid;
            if let Some((phase, l)) = locker {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "{phase}: waits for {} — {}",
                        l.named(),
                        super::views::one_line(&l.query)
                    ),
                );
            }
        }
    }

    pub fn on_snapshot(&mut self, snap: Snapshot) {
        self.on_feed(Feed::Snapshot(Box::new(snap)));
    }

    /// The current snapshot, if the last poll made one.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.feed.as_ref().and_then(Feed::snapshot)
    }

    pub fn executor_pid(&self) -> Option<i32> {
        self.target.as_ref().map(|t| t.pid)
    }

    /// The progress of the executor's statement, when it reports one.
    pub fn executor_progress(&self) -> Option<&crate::monitor::CommandProgress> {
        let pid = self.executor_pid()?;
        self.snapshot()?.progress.iter().find(|p| p.pid == pid)
    }

    /// What the executor waits for, in one sentence, when it waits.
    pub fn executor_wait(&self) -> Option<String> {
        let snap = self.snapshot()?;
        let ex = snap.executor.as_ref()?;
        let w = ex.waiting_for.as_ref()?;
        let blockers: Vec<String> = ex
            .blocked_by
            .iter()
            .map(|pid| {
                let about = snap.backends.iter().find(|b| b.pid == *pid).map(|b| {
                    let age = b
                        .xact_age_s
                        .map(|a| format!(" {}", crate::monitor::text::age(a)))
                        .unwrap_or_default();
                    format!(" ({}{age})", b.state)
                });
                format!("{pid}{}", about.unwrap_or_default())
            })
            .collect();
        let mode = LockMode::from_name(&w.mode)
            .map(|m| m.name())
            .unwrap_or(&w.mode);
        Some(format!(
            "waiting for {mode} on {} — blocked by {}, {} session(s) queued behind",
            w.relation.as_deref().unwrap_or("?"),
            blockers.join(", "),
            ex.queued_behind
        ))
    }
}

pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Text from a runbook or the server as the screen shows it: passwords
/// masked, control characters and bidi overrides made visible (ratatui drops
/// C0 controls but would pass bidi overrides on to the terminal).
pub(super) fn shown(text: &str) -> String {
    crate::text::for_terminal(&crate::text::redact(text)).into_owned()
}
