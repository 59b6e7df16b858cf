//! The executor: guards first, then each step in its own transaction (or in
//! autocommit when it must), bounded by lock_timeout and retried on 55P03.
//! One concern per file; each adds its methods to [`Exec`].

mod approvals;
mod attempt;
mod autocommit;
mod backfill;
mod backfill_rollback;
mod blockers;
mod confirm;
mod dump;
mod expect;
mod facts;
mod gates;
mod guards;
mod known;
mod notify;
mod orders;
mod outlast;
mod queue;
mod recover;
mod rehearsal;
mod rollback;
mod sql;
mod state_row;
mod step;
mod throttle;
mod tool_history;
mod transaction;
mod versions;
mod walk;
mod window;

use crate::pg::Severity;
use std::collections::HashMap;

use tokio_postgres::Client;

use super::state::{Status, StepState};
use super::{Ask, EngineEvent, EngineIo, Mode, Outcome, Reply, Session};
use crate::audit::record::{Action, Event};
use crate::runbook::{Phase, Step, StepKind};

struct Exec<'a> {
    s: &'a mut Session,
    io: &'a mut EngineIo,
    states: HashMap<String, StepState>,
    captured: HashMap<String, String>,
    /// Inside the rehearsal's one transaction.
    rehearsal_open: bool,
    rehearsal: rehearsal::Rehearsal,
    /// A capture kept from an earlier run: a check re-run after later changes
    /// were applied must not replace the value those changes were checked against.
    pinned_capture: Option<String>,
    /// Values re-run checks captured for kept (pinned) variables, by name.
    fresh_captures: HashMap<String, String>,
    /// The guards passed: this is the target, and the audit's database copy
    /// may be written to it (never to a database a guard refused).
    target_confirmed: bool,
    /// The state upsert, prepared on first use.
    upsert: Option<tokio_postgres::Statement>,
    /// Audit records not yet on disk may go into a step's transaction (see
    /// `Recorder::unsynced_copies`); off once such a copy failed.
    txn_copies: bool,
    /// The step whose work failed last (see recover.rs).
    last_failed: Option<String>,
    /// Steps whose last attempt failed and that have not since been applied
    /// or skipped: quitting with one of them ends the session as failed.
    failed_steps: std::collections::BTreeSet<String>,
    /// The queue behind a step's lock wait (`max_queue_stall`).
    queue: queue::QueueWatch,
    /// When the change window this run started in closes (server clock).
    window_end: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which of a step's SQL texts runs.
#[derive(Debug, Clone, Copy)]
enum Part {
    Step,
    Rollback,
}

/// Runs the session to its end; every path records its outcome in the audit.
pub async fn execute(mut session: Session, mut io: EngineIo) -> Outcome {
    let mut exec = Exec {
        s: &mut session,
        io: &mut io,
        states: HashMap::new(),
        captured: HashMap::new(),
        rehearsal_open: false,
        rehearsal: rehearsal::Rehearsal::default(),
        pinned_capture: None,
        fresh_captures: HashMap::new(),
        target_confirmed: false,
        upsert: None,
        txn_copies: true,
        last_failed: None,
        failed_steps: Default::default(),
        queue: Default::default(),
        window_end: None,
    };
    exec.start_notifications();
    let mut outcome = exec.run().await;
    if let Some(why) = exec.rehearsal.ended.take() {
        // The rehearsal ended itself while the operator was asked something.
        outcome = Outcome::Refused(why);
    }
    if exec.rehearsal_open {
        let _ = exec.client().batch_execute("ROLLBACK").await;
    }
    exec.s.recorder.finish_copier().await;
    let notes = if exec.target_confirmed {
        exec.s.recorder.settle(&exec.s.conn.client, false).await
    } else {
        Vec::new()
    };
    exec.warn(notes);
    let mut ev = Event::new(Action::SessionEnd);
    ev.outcome = Some(outcome_word(&outcome).into());
    ev.message = outcome_message(&outcome);
    // Waits at most `notify::FLUSH`, only with [notify], and only here.
    let notes = exec.s.recorder.finish_notifier(&ev).await;
    exec.warn(notes);
    exec.record(ev).await;
    exec.s.recorder.close();
    let _ = exec.io.events.send(EngineEvent::Finished(outcome.clone()));
    outcome
}

/// A step's audit event: its action, phase and step; the caller adds the rest.
fn step_event(action: Action, phase: &Phase, step: &Step) -> Event {
    Event {
        phase: Some(phase.id.clone()),
        step: Some(step.id.clone()),
        ..Event::new(action)
    }
}

fn outcome_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done => "done",
        Outcome::Failed(_) => "failed",
        Outcome::Refused(_) => "refused",
        Outcome::Interrupted => "interrupted",
    }
}

fn outcome_message(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Failed(m) | Outcome::Refused(m) => Some(m.clone()),
        _ => None,
    }
}

impl Exec<'_> {
    pub(super) fn client(&self) -> &Client {
        &self.s.conn.client
    }

    pub(super) fn emit(&self, e: EngineEvent) {
        let _ = self.io.events.send(e);
    }

    /// Local first, then the database copy (outside any step transaction).
    pub(super) async fn record(&mut self, ev: Event) {
        let defer = self.rehearsal_open || !self.target_confirmed;
        let notes = self.s.recorder.record(&self.s.conn.client, ev, defer).await;
        self.warn(notes);
    }

    /// What the audit's database copy wants the operator to know.
    pub(super) fn warn(&self, notes: Vec<String>) {
        for note in notes {
            self.emit(EngineEvent::Notice {
                step: None,
                severity: Severity::Warning,
                message: note,
            });
        }
    }

    pub(super) async fn ask(&mut self, ask: Ask) -> Reply {
        // Nothing unsynced while the operator may take their time; headless
        // answers Next at once, so its success record is synced with the
        // next step's start.
        if self.s.options.interactive || !matches!(ask, Ask::Next { .. }) {
            let defer = self.rehearsal_open || !self.target_confirmed;
            let notes = self.s.recorder.settle(&self.s.conn.client, defer).await;
            self.warn(notes);
        }
        // An answer sent while no question was open (p or a pressed as a
        // wait for blockers ended by itself) answers nothing.
        while self.io.replies.try_recv().is_ok() {}
        self.emit(EngineEvent::Asks(ask));
        self.reply().await
    }

    pub(super) async fn run(&mut self) -> Outcome {
        let mut ev = Event::new(Action::SessionStart);
        ev.outcome = Some(
            match (&self.s.options.mode, self.s.options.rehearse) {
                (Mode::Run { .. }, false) => "run",
                (Mode::Run { .. }, true) => "rehearsal",
                (Mode::Rollback { .. }, _) => "rollback",
            }
            .into(),
        );
        let mut said = Vec::new();
        if let Some(e) = &self.s.options.env {
            said.push(format!("env={e}"));
        }
        match &self.s.options.mode {
            Mode::Run { from: Some(f) } => said.push(format!("from={f} (earlier steps not run)")),
            Mode::Rollback { to: Some(t) } => said.push(format!("to={t}")),
            _ => {}
        }
        if let Some(reason) = &self.s.options.emergency {
            said.push(format!("EMERGENCY: {reason}"));
            // Loud: a line headless, a banner and a log line in the TUI.
            self.warn(vec![format!(
                "EMERGENCY run: {reason} — one owner approval instead of the required kinds, notice waived; the reason is in every audit record"
            )]);
        }
        // The first line is the session's own summary; the runbook facts
        // for the change record follow (see audit::change).
        let mut lines = vec![said.join(" ")];
        lines.extend(self.change_facts().to_lines());
        ev.message = Some(lines.join("\n"));
        self.record(ev).await;
        if let Err(o) = self.guards().await {
            return o;
        }
        self.target_confirmed = true;
        // The records so far reach the database now, which also makes sure
        // of its audit table before any step's transaction copies into it.
        let notes = self
            .s
            .recorder
            .settle(&self.s.conn.client, self.rehearsal_open)
            .await;
        self.warn(notes);
        if !self.s.options.rehearse {
            let executor = self.s.conn.target.clone();
            self.s
                .recorder
                .start_copier(&self.s.spec, executor, self.io.events.clone());
        }
        self.emit_states();
        self.announce_locks();
        match self.s.options.mode.clone() {
            Mode::Run { from } => self.apply(from.as_deref()).await,
            Mode::Rollback { to } => self.rollback_range(to.as_deref(), None, true).await,
        }
    }

    /// The refusal when `flag` names no step of the runbook.
    pub(super) fn unknown_step(
        &self,
        flag: &str,
        id: Option<&str>,
        steps: &[(usize, Phase, Step)],
    ) -> Option<Outcome> {
        let id = id?;
        (!steps.iter().any(|(_, _, s)| s.id == id)).then(|| {
            Outcome::Refused(format!(
                "{flag} {id}: no such step in runbook {}",
                self.s.runbook.id
            ))
        })
    }

    pub(super) fn steps_in_order(&self) -> Vec<(usize, Phase, Step)> {
        self.s
            .runbook
            .steps()
            .enumerate()
            // The phase without its steps: cloning them per step made a
            // 1,000-step runbook cost a million Step clones.
            .map(|(i, (p, s))| {
                let phase = Phase {
                    id: p.id.clone(),
                    title: p.title.clone(),
                    at: p.at.clone(),
                    steps: Vec::new(),
                };
                (i, phase, s.clone())
            })
            .collect()
    }

    pub(super) async fn apply(&mut self, from: Option<&str>) -> Outcome {
        let steps = self.steps_in_order();
        if let Some(refused) = self.unknown_step("--from", from, &steps) {
            return refused;
        }
        let mut started = from.is_none();
        for (i, phase, step) in steps {
            if !started {
                if Some(step.id.as_str()) != from {
                    continue;
                }
                started = true;
            }
            let analysis = self.s.analysis.steps[i].clone();
            let st = self.states.get(&step.id).map(|s| s.status);
            self.pinned_capture = step.capture.clone().filter(|name| {
                self.captured.contains_key(name)
                    && self.s.runbook.steps().skip(i + 1).any(|(_, later)| {
                        later.kind.changes()
                            && self
                                .states
                                .get(&later.id)
                                .is_some_and(|s| s.status == Status::Applied)
                    })
            });
            match (step.kind, st) {
                (
                    StepKind::Change | StepKind::Backup | StepKind::Backfill,
                    Some(Status::Applied),
                ) => {
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason: "already applied on this target".into(),
                    });
                    continue;
                }
                (StepKind::Pause, Some(Status::Acknowledged)) => {
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason: "acknowledged on an earlier run".into(),
                    });
                    continue;
                }
                (_, Some(Status::Skipped)) => {
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason: "skipped on an earlier run".into(),
                    });
                    continue;
                }
                _ => {}
            }
            if let Err(o) = self.one_step(&phase, &step, &analysis).await {
                return o;
            }
        }
        self.record_version().await;
        // A rehearsal is still open here: `b` at the end rehearses the
        // rollback inside it (see rehearsal.rs), and it ends after.
        while self.s.options.interactive {
            match self.ask(Ask::End).await {
                Reply::RollbackThrough(target) => {
                    if let Err(o) = self.rollback_through(&target).await {
                        return o;
                    }
                }
                _ => break,
            }
        }
        self.finish_rehearsal().await;
        Outcome::Done
    }

    /// `b` in the TUI: the applied steps from the newest down to and including `target`.
    pub(super) async fn rollback_through(&mut self, target: &str) -> Result<(), Outcome> {
        if self.rehearsal_open {
            return self.rehearse_rollback_through(target).await;
        }
        self.rollback_recovering(target).await
    }
}
