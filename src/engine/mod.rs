//! The step state machine and executor: guards, lock-bounded retries,
//! expectations, rehearsal, rollback, resume. It emits [`EngineEvent`]s and asks
//! its driver (the headless printer or the TUI) through [`Ask`]; it knows
//! nothing of terminals, drivers or exit codes (the session driver and the
//! exit codes depend on it, never the reverse).

mod copier;
mod exec;
pub mod failpoint;
pub mod health;
pub mod history;
mod index;
pub mod open;
pub mod progress;
mod recorder;
mod rehearse;
pub mod schema;
pub mod state;
pub mod status;
pub mod truth;
pub mod versions;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::analysis::RunbookAnalysis;
use crate::pg::{ConnSpec, Connection};
use crate::runbook::Runbook;

pub use exec::execute;
pub use recorder::Recorder;

/// What the engine is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Apply pending steps, from the first or from `from`.
    Run { from: Option<String> },
    /// Roll back applied steps in reverse order, stopping before `to`.
    Rollback { to: Option<String> },
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: Mode,
    pub env: Option<String>,
    /// Run everything in one transaction and roll it back at the end.
    pub rehearse: bool,
    /// A person at a terminal UI drives the run: a wrong phrase is asked again
    /// (and audited), and the engine waits at the end for rollbacks or quit.
    pub interactive: bool,
    /// `--emergency "REASON"`: one `owner` approval instead of the required
    /// kinds, no notice; the reason goes into every audit record.
    pub emergency: Option<String>,
    /// `--principal`: the operator's identity in the runbook's
    /// allowed_signers; approvals signed by it do not count (four eyes).
    pub principal: Option<String>,
}

/// Everything one engine run works with.
pub struct Session {
    pub runbook: Runbook,
    pub analysis: RunbookAnalysis,
    pub options: RunOptions,
    pub spec: ConnSpec,
    pub conn: Connection,
    /// The executor's backend pid, once connected.
    pub conn_pid: i32,
    pub recorder: Recorder,
}

/// The target as the executor's connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub role: String,
    pub server_version: String,
    pub primary: bool,
    pub pid: i32,
}

/// What the engine tells its driver, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Connected(TargetInfo),
    Guard {
        name: String,
        passed: bool,
        detail: String,
    },
    /// The run started inside a change window that closes in `closes_in`
    /// (by the database server's clock); the TUI counts it down.
    WindowOpen {
        window: String,
        closes_in: std::time::Duration,
    },
    /// A step is about to run (attempt n of m).
    StepStarted {
        step: String,
        attempt: u32,
        of: u32,
    },
    /// The step waited longer than lock_timeout (55P03), or yielded its
    /// place in the lock queue (`yielded`: sessions waited behind it past
    /// `max_queue_stall`), and will be retried.
    Retrying {
        step: String,
        attempt: u32,
        of: u32,
        wait: Duration,
        message: String,
        yielded: bool,
    },
    /// While a step's statement waits for a lock: how many sessions queue
    /// behind it and how long the oldest has waited, against
    /// `max_queue_stall` (see exec/queue.rs), and how many times this step
    /// has yielded so far. Sent when it changes; zero sessions once the
    /// wait ended.
    QueueBehind {
        step: String,
        sessions: usize,
        oldest: Duration,
        limit: Duration,
        yields: u32,
    },
    Notice {
        step: Option<String>,
        severity: crate::pg::Severity,
        message: String,
    },
    StepDone {
        step: String,
        outcome: StepOutcome,
        duration: Duration,
        rows: Option<u64>,
        captured: Option<(String, String)>,
    },
    StepFailed {
        step: String,
        sqlstate: Option<String>,
        message: String,
    },
    /// Nothing to do for this step on this target.
    StepSkipped {
        step: String,
        reason: String,
    },
    RolledBack {
        step: String,
        duration: Duration,
    },
    /// Sessions found holding locks the step needs (the pre-step guard).
    Blockers {
        step: String,
        holders: Vec<crate::monitor::Holder>,
    },
    /// The operator chose to wait (`Ask::Blockers`): these sessions still
    /// hold the locks; sent when the set of them changes. `Run` (proceed) or
    /// `Quit` (abort this step) may be replied while it waits.
    WaitingForBlockers {
        step: String,
        holders: Vec<crate::monitor::Holder>,
    },
    /// A backfill after a batch: keys walked of an estimate of the table's
    /// (refined as it goes), the rate and the time left at that rate.
    Progress {
        step: String,
        done: u64,
        total_estimate: u64,
        rate_per_s: f64,
        eta: Option<Duration>,
        /// The size of the next batch.
        batch_size: u64,
        /// The operator paused the walk (`Control::TogglePause`).
        paused: bool,
        /// The walk waits by itself, and why in a few words ("standby
        /// lag"); None while it walks.
        waiting: Option<String>,
    },
    Asks(Ask),
    Finished(Outcome),
    /// Each step's state on the target when the session opened (after the
    /// guards, before any step), in runbook order; steps without one are pending.
    States(Vec<truth::KnownState>),
    /// A check ran again and captured another value than the one kept for
    /// the later applied steps that depend on it (see `pinned_capture`):
    /// both are shown; later steps and their rollbacks use `kept`.
    Recaptured {
        step: String,
        name: String,
        kept: String,
        fresh: String,
        /// The applied step that was checked against `kept`.
        because: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Applied,
    Passed,
    Acknowledged,
    Rehearsed,
}

/// A question only the operator can answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// The next step is ready; reply `Run`, `Skip(reason)`,
    /// `RollbackThrough(step)` or `Quit`.
    Next { step: String },
    /// Every step is done (interactive runs only); reply `RollbackThrough(step)` or `Quit`.
    End,
    /// Type `phrase` to run something destructive.
    Confirm {
        step: String,
        phrase: String,
        what: String,
    },
    /// A pause step: do what it says, then type `done`.
    Acknowledge { step: String, instructions: String },
    /// A production target: type the database's name to go on.
    DatabaseName { database: String },
    /// Sessions hold locks the next step needs: `Run` proceeds (lock_timeout
    /// still bounds the wait), `Wait` waits for them to go, `Quit` aborts
    /// this step (interactive: back to `Next` for it; headless: the run is refused).
    Blockers {
        step: String,
        holders: Vec<crate::monitor::Holder>,
    },
    /// A step (or a rollback) failed in an interactive session: reply `Run`
    /// to retry it, `Skip(reason)` to go on without it, `RollbackThrough(step)`
    /// to roll back applied steps, `Quit` to end the session (failed).
    Failed {
        step: String,
        message: String,
        /// Some step is applied and could be rolled back.
        rollback_available: bool,
    },
    /// Several steps are about to be rolled back, newest first: `Run` goes on
    /// (each destructive rollback still asks its own phrase), `Quit` undoes
    /// none of them.
    RollbackList { steps: Vec<String> },
    /// A `[[health]]` gate is outside its bounds before `step` (or its
    /// query failed: fail closed). `Run` continues, `RollbackThrough(_)`
    /// rolls back every applied step newest first (each asking its phrase)
    /// and ends the session, `Quit` stops before the step (refused).
    HealthBreach {
        step: String,
        gate: String,
        value: String,
        limit: String,
    },
    /// Inside a change window, `step` may take longer (`expected`, from
    /// `source`) than the window has left: `Run` continues, `Quit` stops
    /// before the step (refused).
    PastWindow {
        step: String,
        expected: String,
        source: String,
        left: String,
    },
}

impl Ask {
    /// The text an operator must type, if the question is answered by typing.
    pub fn expected(&self) -> Option<&str> {
        match self {
            Ask::Next { .. }
            | Ask::End
            | Ask::Blockers { .. }
            | Ask::Failed { .. }
            | Ask::RollbackList { .. }
            | Ask::HealthBreach { .. }
            | Ask::PastWindow { .. } => None,
            Ask::Confirm { phrase, .. } => Some(phrase),
            Ask::Acknowledge { .. } => Some(PAUSE_PHRASE),
            Ask::DatabaseName { database } => Some(database),
        }
    }

    /// The key `--confirm KEY=PHRASE` answers this question with.
    pub fn confirm_key(&self) -> &str {
        match self {
            Ask::Next { step }
            | Ask::Confirm { step, .. }
            | Ask::Acknowledge { step, .. }
            | Ask::Blockers { step, .. }
            | Ask::Failed { step, .. }
            | Ask::HealthBreach { step, .. }
            | Ask::PastWindow { step, .. } => step,
            Ask::DatabaseName { .. } => PRODUCTION_KEY,
            Ask::End | Ask::RollbackList { .. } => "",
        }
    }
}

/// What a pause step asks to be typed.
pub const PAUSE_PHRASE: &str = "done";
/// `--confirm @production=DBNAME` answers the production guard (`@` cannot start a step id).
pub const PRODUCTION_KEY: &str = "@production";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Run,
    Skip(String),
    /// Roll back the applied steps from the newest down to and including this one.
    RollbackThrough(String),
    Quit,
    /// What the operator typed.
    Typed(String),
    /// Wait for the sessions holding the step's locks to go (`Ask::Blockers`).
    Wait,
    /// No answer can be had (no terminal and no --confirm for it).
    Missing,
}

/// The operator's commands that do not answer a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Cancel the running statement (protocol cancel request).
    Cancel,
    /// A running backfill: pause before the next batch, or resume.
    TogglePause,
    /// A running backfill: the next batches' size, ×2 or ÷2.
    Resize(Resize),
    /// A running backfill: stop after the current batch, resumably.
    StopAfterBatch,
}

/// Which way the operator resizes a backfill's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    Double,
    Halve,
}

/// How a run ended. The drivers turn it into an exit code (`crate::exit::of`);
/// the engine knows nothing of processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(String),
    Refused(String),
    Interrupted,
}

/// The channels between the engine and its driver.
pub struct EngineIo {
    pub events: UnboundedSender<EngineEvent>,
    pub replies: UnboundedReceiver<Reply>,
    pub control: UnboundedReceiver<Control>,
    /// Backfill orders that came while the engine waited for something
    /// else (a statement, a pause): kept for the walk, never dropped.
    held: Vec<Control>,
}

impl EngineIo {
    /// Returns when the operator cancels; every other order that arrives
    /// meanwhile is held for the backfill walk. A closed channel never
    /// returns (nobody is left to cancel). Cancel-safe, as `recv` is.
    pub(crate) async fn cancelled(&mut self) {
        cancelled(&mut self.control, &mut self.held).await
    }
}

/// [`EngineIo::cancelled`] on its two fields, for a `select!` that also
/// reads the replies.
async fn cancelled(control: &mut UnboundedReceiver<Control>, held: &mut Vec<Control>) {
    loop {
        match control.recv().await {
            Some(Control::Cancel) => return,
            Some(order) => held.push(order),
            None => std::future::pending::<()>().await,
        }
    }
}

/// An engine running on its own task, and the driver's ends of its channels.
pub struct EngineTask {
    pub events: UnboundedReceiver<EngineEvent>,
    pub replies: UnboundedSender<Reply>,
    pub control: UnboundedSender<Control>,
    /// The run's outcome once it ends (an error only if the task panicked).
    pub outcome: tokio::task::JoinHandle<Outcome>,
}

/// Spawns [`execute`] on its own task with its channels; the one way a
/// driver (TUI or headless) starts the engine.
pub fn spawn(session: Session) -> EngineTask {
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (replies, replies_rx) = tokio::sync::mpsc::unbounded_channel();
    let (control, control_rx) = tokio::sync::mpsc::unbounded_channel();
    let io = EngineIo {
        events: events_tx,
        replies: replies_rx,
        control: control_rx,
        held: Vec::new(),
    };
    EngineTask {
        events,
        replies,
        control,
        outcome: tokio::spawn(execute(session, io)),
    }
}

/// `--confirm STEP=PHRASE` values, parsed.
pub fn parse_confirms(values: &[String]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for v in values {
        let Some((step, phrase)) = v.split_once('=') else {
            return Err(format!(
                "--confirm {v:?}: write STEP=PHRASE, e.g. --confirm drop-legacy='drop column users.legacy_id'"
            ));
        };
        out.insert(step.trim().to_string(), phrase.to_string());
    }
    Ok(out)
}
