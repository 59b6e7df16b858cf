//! The executor: guards first, then each step in its own transaction (or in
//! autocommit when it must), bounded by lock_timeout and retried on 55P03.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::{CancelToken, Client, SimpleQueryMessage};

use super::index::{IndexState, index_state, invalid};
use super::recorder::TxnCopies;
use super::state::{self, Status, StepState, UPSERT_SQL};
use super::{
    Ask, Control, EngineEvent, EngineIo, Mode, Outcome, Reply, Session, StepOutcome, TargetInfo,
    failpoint, rehearse,
};
use crate::analysis::{self, RelationName, StatementAnalysis, StepAnalysis};
use crate::audit::record::{Action, Event};
use crate::pg::ConnSpec;
use crate::runbook::{Expect, Phase, Settings, Step, StepKind, format_duration, vars};

/// SQLSTATE lock_not_available: lock_timeout expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE query_canceled: a cancel request or statement_timeout.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATE no_active_sql_transaction: the WARNING of a ROLLBACK outside one.
const NO_ACTIVE_TRANSACTION: &str = "25P01";

struct Exec<'a> {
    s: &'a mut Session,
    io: &'a mut EngineIo,
    states: HashMap<String, StepState>,
    captured: HashMap<String, String>,
    /// Inside the rehearsal's one transaction.
    rehearsal_open: bool,
    /// A capture kept from an earlier run: a check re-run after later changes
    /// were applied must not replace the value those changes were checked against.
    pinned_capture: Option<String>,
    /// The guards passed: this is the target, and the audit's database copy
    /// may be written to it (never to a database a guard refused).
    target_confirmed: bool,
    /// The state upsert, prepared on first use.
    upsert: Option<tokio_postgres::Statement>,
    /// Audit records not yet on disk may go into a step's transaction (see
    /// `Recorder::unsynced_copies`); off once such a copy failed.
    txn_copies: bool,
}

/// Which of a step's SQL texts runs.
#[derive(Debug, Clone, Copy)]
enum Part {
    Step,
    Rollback,
}

/// A statement's or step's failure, as the server reported it.
#[derive(Debug)]
struct SqlFailure {
    sqlstate: Option<String>,
    message: String,
    cancelled_by_operator: bool,
}

impl SqlFailure {
    fn from_pg(e: &tokio_postgres::Error) -> SqlFailure {
        let (sqlstate, message) = match e.as_db_error() {
            Some(db) => (Some(db.code().code().to_string()), db.message().to_string()),
            None => (None, crate::pg::redact(&e.to_string())),
        };
        SqlFailure {
            sqlstate,
            message,
            cancelled_by_operator: false,
        }
    }

    fn plain(message: impl Into<String>) -> SqlFailure {
        SqlFailure {
            sqlstate: None,
            message: message.into(),
            cancelled_by_operator: false,
        }
    }
}

/// A failed statement as a step failure; `cancelled`: the operator had asked.
fn failure(e: &tokio_postgres::Error, cancelled: bool) -> SqlFailure {
    let mut f = SqlFailure::from_pg(e);
    f.cancelled_by_operator = cancelled && f.sqlstate.as_deref() == Some(QUERY_CANCELED);
    if f.cancelled_by_operator {
        f.message = "cancelled by the operator".into();
    }
    f
}

/// Waits for `requests` on the executor's connection; if the operator
/// cancels meanwhile, the running statement gets the protocol's cancel
/// request. The second value says whether it did.
async fn cancellable<T>(
    io: &mut EngineIo,
    spec: &ConnSpec,
    token: &CancelToken,
    requests: impl Future<Output = T>,
) -> (T, bool) {
    tokio::pin!(requests);
    let mut cancelled = false;
    loop {
        tokio::select! {
            r = &mut requests => return (r, cancelled),
            c = io.control.recv(), if !cancelled => {
                if matches!(c, Some(Control::Cancel)) {
                    cancelled = true;
                    let _ = spec.cancel_query(token).await;
                }
            }
        }
    }
}

/// The audit copies inside a step's transaction, if any.
async fn insert_copies(
    client: &Client,
    copies: Option<&TxnCopies>,
) -> Result<(), tokio_postgres::Error> {
    match copies {
        Some(c) => c.insert(client).await,
        None => Ok(()),
    }
}

/// A failed audit copy inside the step's transaction lets the step run
/// again without it, unless the operator cancelled.
fn check_copied(copied: Result<(), tokio_postgres::Error>, cancelled: bool) -> Result<(), Attempt> {
    match copied {
        Ok(()) => Ok(()),
        Err(e) if !cancelled => Err(Attempt::AuditCopy(e)),
        Err(e) => Err(failure(&e, cancelled).into()),
    }
}

/// Why one try of a transactional step ended without it.
enum Attempt {
    Failed(SqlFailure),
    /// The audit copies sent first in its transaction failed, so nothing of
    /// the step ran; it can run again without them.
    AuditCopy(tokio_postgres::Error),
}

impl From<SqlFailure> for Attempt {
    fn from(f: SqlFailure) -> Attempt {
        Attempt::Failed(f)
    }
}

impl Attempt {
    fn into_failure(self) -> SqlFailure {
        match self {
            Attempt::Failed(f) => f,
            Attempt::AuditCopy(e) => SqlFailure::from_pg(&e),
        }
    }
}

/// The last result set of a step: what `expect` and `capture` look at.
#[derive(Debug, Default)]
struct StepResult {
    /// Rows returned by the last statement that returned rows, else its count.
    rows: u64,
    first_value: Option<Option<String>>,
    returned_rows: bool,
}

/// Runs the session to its end; every path records its outcome in the audit.
pub async fn execute(mut session: Session, mut io: EngineIo) -> Outcome {
    let mut exec = Exec {
        s: &mut session,
        io: &mut io,
        states: HashMap::new(),
        captured: HashMap::new(),
        rehearsal_open: false,
        pinned_capture: None,
        target_confirmed: false,
        upsert: None,
        txn_copies: true,
    };
    let outcome = exec.run().await;
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
    exec.record(ev).await;
    exec.s.recorder.close();
    let _ = exec.io.events.send(EngineEvent::Finished(outcome.clone()));
    outcome
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
    fn client(&self) -> &Client {
        &self.s.conn.client
    }

    fn emit(&self, e: EngineEvent) {
        let _ = self.io.events.send(e);
    }

    /// Local first, then the database copy (outside any step transaction).
    async fn record(&mut self, ev: Event) {
        let defer = self.rehearsal_open || !self.target_confirmed;
        let notes = self.s.recorder.record(&self.s.conn.client, ev, defer).await;
        self.warn(notes);
    }

    /// What the audit's database copy wants the operator to know.
    fn warn(&self, notes: Vec<String>) {
        for note in notes {
            self.emit(EngineEvent::Notice {
                step: None,
                severity: "WARNING".into(),
                message: note,
            });
        }
    }

    async fn ask(&mut self, ask: Ask) -> Reply {
        // Nothing unsynced while the operator may take their time; headless
        // answers Next at once, so its success record is synced with the
        // next step's start.
        if self.s.options.interactive || !matches!(ask, Ask::Next { .. }) {
            let defer = self.rehearsal_open || !self.target_confirmed;
            let notes = self.s.recorder.settle(&self.s.conn.client, defer).await;
            self.warn(notes);
        }
        self.emit(EngineEvent::Asks(ask));
        self.io.replies.recv().await.unwrap_or(Reply::Quit)
    }

    async fn run(&mut self) -> Outcome {
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
        ev.message = (!said.is_empty()).then(|| said.join(" "));
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
        match self.s.options.mode.clone() {
            Mode::Run { from } => self.apply(from.as_deref()).await,
            Mode::Rollback { to } => self.rollback_range(to.as_deref(), None, true).await,
        }
    }

    async fn guard(&mut self, name: &str, passed: bool, detail: String) -> Result<(), Outcome> {
        self.emit(EngineEvent::Guard {
            name: name.into(),
            passed,
            detail: detail.clone(),
        });
        let mut ev = Event::new(Action::Guard);
        ev.outcome = Some(if passed { "pass" } else { "fail" }.into());
        ev.message = Some(format!("{name}: {detail}"));
        self.record(ev).await;
        if passed {
            Ok(())
        } else {
            Err(Outcome::Refused(format!("{name}: {detail}")))
        }
    }

    async fn guards(&mut self) -> Result<(), Outcome> {
        let row = self
            .client()
            .query_one(
                "SELECT current_database(), current_user, NOT pg_is_in_recovery(), current_setting('server_version'), pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| Outcome::Failed(format!("cannot read the target: {}", SqlFailure::from_pg(&e).message)))?;
        let target = self.s.spec.target();
        let info = TargetInfo {
            host: target.host.clone(),
            port: target.port,
            database: row.get(0),
            role: row.get(1),
            primary: row.get(2),
            server_version: row.get(3),
            pid: row.get(4),
        };
        self.s.recorder.set_role(&info.role);
        self.s.conn_pid = info.pid;
        self.emit(EngineEvent::Connected(info.clone()));
        let rb = &self.s.runbook;
        let envs = rb.target.environments.clone();
        let wanted_db = rb.target.database.clone();
        let require_primary = rb.target.require_primary;

        if !envs.is_empty() || self.s.options.env.is_some() {
            let (ok, detail) = match &self.s.options.env {
                None => (
                    false,
                    format!(
                        "this runbook names its environments ({}); say which with --env",
                        envs.join(", ")
                    ),
                ),
                Some(e) if envs.is_empty() || envs.contains(e) => (true, format!("--env {e}")),
                Some(e) => (
                    false,
                    format!(
                        "--env {e} is not one of this runbook's environments ({})",
                        envs.join(", ")
                    ),
                ),
            };
            self.guard("environment", ok, detail).await?;
        }
        if let Some(db) = &wanted_db {
            let ok = *db == info.database;
            self.guard(
                "database",
                ok,
                if ok {
                    format!("connected to {db}")
                } else {
                    format!(
                        "connected to {}, but the runbook is for {db}",
                        info.database
                    )
                },
            )
            .await?;
        }
        if require_primary {
            self.guard(
                "primary",
                info.primary,
                if info.primary {
                    "the target is a primary".into()
                } else {
                    "the target is a replica (in recovery); connect to the primary".into()
                },
            )
            .await?;
        }
        self.advisory_lock().await?;
        if self.s.options.rehearse {
            self.client()
                .batch_execute("BEGIN")
                .await
                .map_err(|e| Outcome::Failed(SqlFailure::from_pg(&e).message))?;
            self.rehearsal_open = true;
        }
        state::ensure_schema(self.client()).await.map_err(|e| {
            Outcome::Failed(format!(
                "cannot create schema pgpilot for the step state: {}",
                SqlFailure::from_pg(&e).message
            ))
        })?;
        self.states = state::load(self.client(), &self.s.runbook.id)
            .await
            .map_err(|e| {
                Outcome::Failed(format!(
                    "cannot read pgpilot.step_state: {}",
                    SqlFailure::from_pg(&e).message
                ))
            })?;
        for st in self.states.values() {
            if let Some(c) = &st.captured
                && let Ok(map) = serde_json::from_str::<HashMap<String, String>>(c)
            {
                self.captured.extend(map);
            }
        }
        let changed: Vec<String> = self
            .s
            .runbook
            .steps()
            .filter_map(|(_, step)| {
                let st = self.states.get(&step.id)?;
                (st.status == Status::Applied && st.step_sha256 != state::step_hash(step))
                    .then(|| step.id.clone())
            })
            .collect();
        let ok = changed.is_empty();
        self.guard(
            "runbook unchanged",
            ok,
            if ok {
                format!("sha256 {}", &self.s.runbook.sha256[..12])
            } else {
                format!("applied step(s) {} changed since they were applied; roll them back first or write a new runbook", changed.join(", "))
            },
        )
        .await?;
        if self.s.options.env.as_deref().is_some_and(is_production) {
            self.ask_phrase(
                None,
                Ask::DatabaseName {
                    database: info.database.clone(),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// One operator per (runbook, database): a session-level advisory lock.
    async fn advisory_lock(&mut self) -> Result<(), Outcome> {
        let id = self.s.runbook.id.clone();
        let got: bool = self
            .client()
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('pgpilot'), hashtext($1))",
                &[&id],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| Outcome::Failed(SqlFailure::from_pg(&e).message))?;
        if got {
            return self
                .guard(
                    "single operator",
                    true,
                    format!("holding the lock for runbook {id}"),
                )
                .await;
        }
        let holder = self
            .client()
            .query_opt(
                "SELECT a.usename::text, coalesce(host(a.client_addr), 'local socket'), a.pid,
                        to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'), a.application_name
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = hashtext('pgpilot')::oid AND l.objid = hashtext($1)::oid",
                &[&id],
            )
            .await
            .ok()
            .flatten();
        let who = match holder {
            Some(r) => format!(
                "role {} from {} (pid {}, {}) since {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i32>(2),
                r.get::<_, String>(4),
                r.get::<_, String>(3)
            ),
            None => "another session".into(),
        };
        self.guard(
            "single operator",
            false,
            format!("runbook {id} is being run by {who}; wait for it to finish"),
        )
        .await
    }

    /// Checks a typed answer; a wrong or missing one is audited and refuses the run.
    async fn confirmation(
        &mut self,
        step: Option<&str>,
        expected: &str,
        reply: Reply,
    ) -> Result<(), Outcome> {
        let (outcome, typed) = match &reply {
            Reply::Typed(t) if t.trim() == expected => ("accepted", t.clone()),
            Reply::Typed(t) => ("wrong", t.clone()),
            Reply::Quit => ("declined", String::new()),
            _ => ("missing", String::new()),
        };
        let mut ev = Event::new(Action::Confirmation);
        ev.step = step.map(str::to_string);
        ev.outcome = Some(outcome.into());
        ev.message = Some(match outcome {
            "accepted" => format!("typed {expected:?}"),
            "wrong" => format!("expected {expected:?}, typed {typed:?}"),
            _ => format!("expected {expected:?}, no answer"),
        });
        self.record(ev).await;
        match outcome {
            "accepted" => Ok(()),
            "declined" => Err(Outcome::Refused("stopped by the operator".into())),
            "wrong" => Err(Outcome::Refused(format!(
                "the phrase typed does not match {expected:?}; nothing was run"
            ))),
            _ => Err(Outcome::Refused(match step {
                Some(s) => format!(
                    "step {s} needs the phrase {expected:?}: type it, or pass --confirm {s}={expected:?}; nothing was run"
                ),
                None => format!(
                    "type the database name, or pass --confirm {}={expected}; nothing was run",
                    super::PRODUCTION_KEY
                ),
            })),
        }
    }

    /// Asks for a phrase until it is typed right (a terminal UI keeps its
    /// dialog open after a wrong one) or refused; every answer is audited.
    async fn ask_phrase(&mut self, step: Option<&str>, ask: Ask) -> Result<(), Outcome> {
        let expected = ask.expected().unwrap_or_default().to_string();
        loop {
            let reply = self.ask(ask.clone()).await;
            let wrong = matches!(&reply, Reply::Typed(t) if t.trim() != expected);
            match self.confirmation(step, &expected, reply).await {
                Err(_) if wrong && self.s.options.interactive => {
                    self.emit(EngineEvent::Notice {
                        step: step.map(str::to_string),
                        severity: "WARNING".into(),
                        message: format!(
                            "the phrase typed does not match {expected:?}; nothing was run"
                        ),
                    });
                }
                other => return other,
            }
        }
    }

    /// Asks for a step's (or its rollback's) phrase, saying what is at risk.
    async fn confirm(
        &mut self,
        step: &Step,
        phrase: &str,
        statements: &[StatementAnalysis],
    ) -> Result<(), Outcome> {
        let at_risk: Vec<String> = statements
            .iter()
            .filter(|s| s.destructive)
            .map(|s| match &s.at_risk {
                Some(r) => r.phrase(),
                None => format!("a {} pgpilot cannot see into", s.kind),
            })
            .collect();
        let what = if at_risk.is_empty() {
            format!("step {} (the runbook asks for this confirmation)", step.id)
        } else {
            at_risk.join(", ")
        };
        let ask = Ask::Confirm {
            step: step.id.clone(),
            phrase: phrase.to_string(),
            what,
        };
        self.ask_phrase(Some(&step.id), ask).await
    }

    /// Keeps the in-memory view of the target's state in step with what was written.
    fn mark(&mut self, step: &Step, status: Status) {
        let st = self
            .states
            .entry(step.id.clone())
            .or_insert_with(|| StepState {
                step: step.id.clone(),
                status,
                step_sha256: state::step_hash(step),
                operator: String::new(),
                role: String::new(),
                client_host: String::new(),
                captured: None,
                rows: None,
                duration_ms: None,
                updated_at: String::new(),
            });
        st.status = status;
        st.step_sha256 = state::step_hash(step);
    }

    /// The refusal when `flag` names no step of the runbook.
    fn unknown_step(
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

    fn steps_in_order(&self) -> Vec<(usize, Phase, Step)> {
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

    async fn apply(&mut self, from: Option<&str>) -> Outcome {
        let steps = self.steps_in_order();
        if let Some(refused) = self.unknown_step("--from", from, &steps) {
            return refused;
        }
        let mut started = from.is_none();
        'steps: for (i, phase, step) in steps {
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
                        matches!(later.kind, StepKind::Change | StepKind::Backup)
                            && self
                                .states
                                .get(&later.id)
                                .is_some_and(|s| s.status == Status::Applied)
                    })
            });
            match (step.kind, st) {
                (StepKind::Change | StepKind::Backup, Some(Status::Applied)) => {
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
            loop {
                match self
                    .ask(Ask::Next {
                        step: step.id.clone(),
                    })
                    .await
                {
                    Reply::Run | Reply::Typed(_) => break,
                    Reply::Skip(reason) => {
                        if let Err(o) = self.skip(&phase, &step, reason).await {
                            return o;
                        }
                        continue 'steps;
                    }
                    Reply::RollbackThrough(target) => {
                        if let Err(o) = self.rollback_through(&target).await {
                            return o;
                        }
                    }
                    Reply::Quit | Reply::Missing => {
                        return Outcome::Refused("stopped by the operator".into());
                    }
                }
            }
            let result = if step.kind == StepKind::Pause {
                self.pause(&phase, &step).await
            } else {
                self.sql_step(&phase, &step, &analysis, st).await
            };
            if let Err(o) = result {
                return o;
            }
        }
        if self.rehearsal_open {
            let _ = self.client().batch_execute("ROLLBACK").await;
            self.rehearsal_open = false;
            self.emit(EngineEvent::Notice {
                step: None,
                severity: "INFO".into(),
                message: "rehearsal finished: everything was rolled back".into(),
            });
        }
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
        Outcome::Done
    }

    /// `b` in the TUI: the applied steps from the newest down to and including `target`.
    async fn rollback_through(&mut self, target: &str) -> Result<(), Outcome> {
        if self.rehearsal_open {
            self.emit(EngineEvent::Notice {
                step: None,
                severity: "INFO".into(),
                message: "a rehearsal is rolled back as a whole at its end".into(),
            });
            return Ok(());
        }
        match self.rollback_range(None, Some(target), false).await {
            Outcome::Done => Ok(()),
            other => Err(other),
        }
    }

    async fn skip(&mut self, phase: &Phase, step: &Step, reason: String) -> Result<(), Outcome> {
        if reason.trim().is_empty() {
            return Err(Outcome::Refused(format!(
                "skipping {} needs a reason",
                step.id
            )));
        }
        self.write_state_autocommit(step, Status::Skipped, None, None)
            .await?;
        let mut ev = Event::new(Action::Skip);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        ev.message = Some(reason.clone());
        self.record(ev).await;
        self.emit(EngineEvent::StepSkipped {
            step: step.id.clone(),
            reason,
        });
        Ok(())
    }

    async fn pause(&mut self, phase: &Phase, step: &Step) -> Result<(), Outcome> {
        let instructions = step.instructions().unwrap_or_default().to_string();
        let ask = Ask::Acknowledge {
            step: step.id.clone(),
            instructions,
        };
        // A skip answers a pause too; anything else is a phrase, audited like one.
        loop {
            match self.ask(ask.clone()).await {
                Reply::Skip(reason) => return self.skip(phase, step, reason).await,
                reply => {
                    let wrong =
                        matches!(&reply, Reply::Typed(t) if t.trim() != super::PAUSE_PHRASE);
                    match self
                        .confirmation(Some(&step.id), super::PAUSE_PHRASE, reply)
                        .await
                    {
                        Ok(()) => break,
                        Err(_) if wrong && self.s.options.interactive => {
                            self.emit(EngineEvent::Notice {
                                step: Some(step.id.clone()),
                                severity: "WARNING".into(),
                                message: format!("type {:?} when it is done", super::PAUSE_PHRASE),
                            });
                        }
                        Err(o) => return Err(o),
                    }
                }
            }
        }
        self.write_state_autocommit(step, Status::Acknowledged, None, None)
            .await?;
        let mut ev = Event::new(Action::PauseAcknowledged);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        self.record(ev).await;
        self.emit(EngineEvent::StepDone {
            step: step.id.clone(),
            outcome: StepOutcome::Acknowledged,
            duration: Duration::ZERO,
            rows: None,
            captured: None,
        });
        Ok(())
    }

    /// Records a status outside a step transaction (pause, skip, autocommit bookkeeping).
    async fn write_state_autocommit(
        &mut self,
        step: &Step,
        status: Status,
        rows: Option<u64>,
        duration: Option<Duration>,
    ) -> Result<(), Outcome> {
        let sql = self.state_params(step, status, rows, duration);
        self.exec_state(&sql).await.map_err(|e| {
            Outcome::Failed(format!(
                "cannot record the state of {}: {}",
                step.id, e.message
            ))
        })?;
        self.mark(step, status);
        Ok(())
    }

    fn state_params(
        &self,
        step: &Step,
        status: Status,
        rows: Option<u64>,
        duration: Option<Duration>,
    ) -> StateWrite {
        let captured = step.capture.as_ref().and_then(|name| {
            self.captured
                .get(name)
                .map(|v| serde_json::json!({ name: v }).to_string())
        });
        StateWrite {
            runbook: self.s.runbook.id.clone(),
            step: step.id.clone(),
            status: status.as_str(),
            step_sha: state::step_hash(step),
            runbook_sha: self.s.runbook.sha256.clone(),
            operator: self.s.recorder.operator().to_string(),
            host: self.s.recorder.client_host().to_string(),
            captured,
            rows: rows.map(|r| r as i64),
            duration_ms: duration.map(|d| d.as_millis() as i64),
            timed_by_server: false,
        }
    }

    async fn exec_state(&mut self, w: &StateWrite) -> Result<(), SqlFailure> {
        let upsert = self.upsert_statement().await?;
        upsert_state(self.client(), &upsert, w).await
    }

    /// The state upsert, prepared once per session: a parse and describe
    /// less per step.
    async fn upsert_statement(&mut self) -> Result<tokio_postgres::Statement, SqlFailure> {
        if let Some(st) = &self.upsert {
            return Ok(st.clone());
        }
        let st = self
            .s
            .conn
            .client
            .prepare(UPSERT_SQL)
            .await
            .map_err(|e| SqlFailure::from_pg(&e))?;
        self.upsert = Some(st.clone());
        Ok(st)
    }

    /// The SQL that will run, with the captured values in it, and the
    /// analysis of exactly that SQL (see `analysis::reanalyze`). A value
    /// that would change the statements refuses the step.
    fn with_values<'b>(
        &self,
        step: &Step,
        a: &'b StepAnalysis,
        text: &str,
        part: Part,
    ) -> Result<(String, Cow<'b, StepAnalysis>), Outcome> {
        let what = match part {
            Part::Step => format!("step {}", step.id),
            Part::Rollback => format!("rollback of {}", step.id),
        };
        if !text.contains("{{") {
            return Ok((text.to_string(), Cow::Borrowed(a)));
        }
        let sql = vars::substitute_sql(text, &self.captured).map_err(|e| match e {
            vars::SubstituteError::Missing(_) => {
                Outcome::Failed(format!("{what}: {e}; run the step that captures it first"))
            }
            _ => Outcome::Refused(format!("{what}: {e}")),
        })?;
        let resolved = match part {
            Part::Step => analysis::reanalyze(step, a, Some(&sql), None),
            Part::Rollback => analysis::reanalyze(step, a, None, Some(&sql)),
        }
        .map_err(|m| Outcome::Refused(format!("{what}: {m}")))?;
        Ok((sql, Cow::Owned(resolved)))
    }

    async fn sql_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
        previous: Option<Status>,
    ) -> Result<(), Outcome> {
        let Some(sql) = step.sql() else { return Ok(()) };
        let (text, resolved) = self.with_values(step, a, &sql.text, Part::Step)?;
        let a = resolved.as_ref();
        if let Some(phrase) = &a.confirm {
            self.confirm(step, phrase, &a.statements).await?;
        }
        self.blocker_guard(phase, step, a).await?;
        if previous == Some(Status::InProgress)
            && !self.rehearsal_open
            && self.in_doubt(step, a).await?
        {
            self.write_state_autocommit(step, Status::Applied, None, None)
                .await?;
            let mut ev = Event::new(Action::StepSuccess);
            ev.phase = Some(phase.id.clone());
            ev.step = Some(step.id.clone());
            ev.outcome = Some("completed on an earlier run".into());
            self.record(ev).await;
            self.emit(EngineEvent::StepDone {
                step: step.id.clone(),
                outcome: StepOutcome::Applied,
                duration: Duration::ZERO,
                rows: None,
                captured: None,
            });
            return Ok(());
        }
        let (text, autocommit) = if self.rehearsal_open && !a.transactional {
            match rehearse::transactional_form(&text) {
                Some(t) => {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: "INFO".into(),
                        message: format!("rehearsal runs it in its transactional form: {t}"),
                    });
                    (t, false)
                }
                None => {
                    let reason =
                        "cannot run inside the rehearsal's transaction; skipped in rehearsal"
                            .to_string();
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    });
                    let mut ev = Event::new(Action::Skip);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.message = Some(reason);
                    self.record(ev).await;
                    return Ok(());
                }
            }
        } else {
            (text, !a.transactional)
        };
        let settings = step.settings.clone();
        let of = settings.lock_retries + 1;
        let started = Instant::now();
        for attempt in 1..=of {
            self.emit(EngineEvent::StepStarted {
                step: step.id.clone(),
                attempt,
                of,
            });
            if attempt == 1 {
                let mut ev = Event::new(Action::StepStart);
                ev.phase = Some(phase.id.clone());
                ev.step = Some(step.id.clone());
                ev.sql = Some(text.clone());
                ev.attempt = Some(attempt);
                if autocommit {
                    // It commits itself: on disk before it is sent.
                    self.record(ev).await;
                } else {
                    // Synced while the statements run; COMMIT waits for it.
                    self.s.recorder.write_ahead(ev).await;
                }
            }
            if let Some(e) = self.s.recorder.local_error() {
                return Err(Outcome::Failed(format!(
                    "cannot write the local audit log ({e}); pgpilot runs nothing it cannot record"
                )));
            }
            failpoint::point("step-start");
            let attempt_started = Instant::now();
            let result = if autocommit {
                self.autocommit_once(step, &text, &settings, &a.statements)
                    .await
            } else {
                self.transaction_once(step, &text, &settings).await
            };
            self.drain_notices(phase, step).await;
            match result {
                Ok(r) => {
                    let duration = started.elapsed();
                    let outcome = match (self.rehearsal_open, step.kind) {
                        (true, _) => StepOutcome::Rehearsed,
                        (false, StepKind::Check | StepKind::Verify) => StepOutcome::Passed,
                        _ => StepOutcome::Applied,
                    };
                    match outcome {
                        StepOutcome::Applied => self.mark(step, Status::Applied),
                        StepOutcome::Passed => self.mark(step, Status::Passed),
                        _ => {}
                    }
                    let mut ev = Event::new(Action::StepSuccess);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.duration_ms = Some(duration.as_millis() as u64);
                    ev.rows = Some(r.rows);
                    ev.attempt = Some(attempt);
                    // Synced with the next record (see Recorder).
                    self.s.recorder.write_behind(ev);
                    failpoint::point("after-success-audit");
                    let captured = step
                        .capture
                        .as_ref()
                        .and_then(|n| self.captured.get(n).map(|v| (n.clone(), v.clone())));
                    self.emit(EngineEvent::StepDone {
                        step: step.id.clone(),
                        outcome,
                        duration,
                        rows: Some(r.rows),
                        captured,
                    });
                    return Ok(());
                }
                Err(f) if f.sqlstate.as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < of => {
                    let waited = attempt_started.elapsed();
                    if self
                        .retry_after(phase, step, &settings, attempt, of, &f, waited)
                        .await
                    {
                        let cancelled = SqlFailure {
                            sqlstate: Some(QUERY_CANCELED.into()),
                            message: "cancelled by the operator while waiting to retry".into(),
                            cancelled_by_operator: true,
                        };
                        return Err(self.step_failed(phase, step, started, cancelled).await);
                    }
                }
                Err(f) => return Err(self.step_failed(phase, step, started, f).await),
            }
        }
        Err(Outcome::Failed(format!(
            "step {} did not get its locks",
            step.id
        )))
    }

    /// A lock_timeout (55P03): audited and shown, then the backoff is slept
    /// (the operator may cancel it: true).
    #[allow(clippy::too_many_arguments)]
    async fn retry_after(
        &mut self,
        phase: &Phase,
        step: &Step,
        settings: &Settings,
        attempt: u32,
        of: u32,
        f: &SqlFailure,
        waited: Duration,
    ) -> bool {
        let wait = backoff(settings.retry_backoff, attempt);
        let message = format!(
            "waited {} for a lock ({}); retrying in {:.1}s",
            format_duration(settings.lock_timeout),
            f.message,
            wait.as_secs_f64()
        );
        let mut ev = Event::new(Action::Retry);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        ev.attempt = Some(attempt);
        ev.sqlstate = f.sqlstate.clone();
        ev.message = Some(message.clone());
        ev.duration_ms = Some(waited.as_millis() as u64);
        self.record(ev).await;
        self.emit(EngineEvent::Retrying {
            step: step.id.clone(),
            attempt,
            of,
            wait,
            message,
        });
        self.sleep_or_cancel(wait).await
    }

    async fn step_failed(
        &mut self,
        phase: &Phase,
        step: &Step,
        started: Instant,
        f: SqlFailure,
    ) -> Outcome {
        let mut ev = Event::new(Action::StepFailure);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        ev.duration_ms = Some(started.elapsed().as_millis() as u64);
        ev.sqlstate = f.sqlstate.clone();
        ev.message = Some(f.message.clone());
        if f.cancelled_by_operator {
            let mut c = Event::new(Action::Cancel);
            c.phase = Some(phase.id.clone());
            c.step = Some(step.id.clone());
            self.record(c).await;
        }
        self.record(ev).await;
        self.emit(EngineEvent::StepFailed {
            step: step.id.clone(),
            sqlstate: f.sqlstate.clone(),
            message: f.message.clone(),
        });
        if f.cancelled_by_operator {
            Outcome::Interrupted
        } else {
            let code = f.sqlstate.map(|c| format!(" [{c}]")).unwrap_or_default();
            Outcome::Failed(format!("step {} failed{code}: {}", step.id, f.message))
        }
    }

    /// Sleeps, unless the operator cancels first (true).
    async fn sleep_or_cancel(&mut self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            c = self.io.control.recv() => matches!(c, Some(Control::Cancel)),
        }
    }

    /// Runs SQL, sending a protocol cancel request if the operator cancels.
    async fn query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, SqlFailure> {
        let (result, cancelled) = cancellable(
            self.io,
            &self.s.spec,
            &self.s.conn.cancel,
            self.s.conn.client.simple_query(sql),
        )
        .await;
        result.map_err(|e| failure(&e, cancelled))
    }

    async fn transaction_once(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
    ) -> Result<StepResult, SqlFailure> {
        let copies = if self.rehearsal_open || !self.target_confirmed || !self.txn_copies {
            None
        } else {
            self.s.recorder.unsynced_copies(&self.s.conn.client)
        };
        if copies.is_some() {
            match self.transaction_try(step, sql, settings, copies).await {
                Err(Attempt::Failed(f)) => return Err(f),
                Ok(r) => return Ok(r),
                Err(Attempt::AuditCopy(e)) => {
                    // Nothing of the step ran. From now on its records are
                    // synced locally before each COMMIT instead.
                    self.txn_copies = false;
                    self.warn(vec![format!(
                        "the audit copy inside the step's transaction failed ({}); the step runs again, its audit records synced locally before COMMIT",
                        SqlFailure::from_pg(&e).message
                    )]);
                }
            }
        }
        self.transaction_try(step, sql, settings, None)
            .await
            .map_err(Attempt::into_failure)
    }

    /// One try of a transactional step. Its setup, the audit `copies` (see
    /// `Recorder::unsynced_copies`) and its statements are sent together,
    /// each a message of its own, so the SET LOCALs bind the statements on
    /// any server version. A failure (or a cancel) anywhere aborts the
    /// transaction and the rest fails with it: the statements never run
    /// outside it, nor unless the audit copies succeeded.
    ///
    /// When nothing has to be seen before COMMIT (no `expect`, no `capture`,
    /// and no audit record that is neither on disk nor among the copies),
    /// the state row and COMMIT go in the same round trip: if anything
    /// before them failed, the server ends the transaction as a rollback.
    /// Otherwise the results are checked first ([`Exec::commit_with_state`]).
    async fn transaction_try(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
        copies: Option<TxnCopies>,
    ) -> Result<StepResult, Attempt> {
        let (begin, commit, abort) = if self.rehearsal_open {
            (
                "SAVEPOINT pgpilot_step",
                "RELEASE SAVEPOINT pgpilot_step",
                "ROLLBACK TO SAVEPOINT pgpilot_step",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        let setup = format!(
            "{begin}; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            settings.lock_timeout.as_millis(),
            settings.statement_timeout.as_millis()
        );
        let status = if matches!(step.kind, StepKind::Check | StepKind::Verify) {
            Status::Passed
        } else {
            Status::Applied
        };
        let copied_upto = copies.as_ref().map_or(0, TxnCopies::upto);
        let one_trip = !self.rehearsal_open
            && step.expect.is_none()
            && step.capture.is_none()
            && self.s.recorder.may_commit(copied_upto);
        if one_trip {
            // Prepared before the transaction: a failure leaves nothing open.
            let upsert = self.upsert_statement().await?;
            // The state row's rows are known only after COMMIT here: they
            // are in the step's success record.
            let w = StateWrite {
                timed_by_server: true,
                ..self.state_params(step, status, None, None)
            };
            return self
                .one_trip(sql, &setup, copies.as_ref(), &upsert, &w)
                .await;
        }
        let started = Instant::now();
        let in_txn = copies.as_ref();
        let client = &self.s.conn.client;
        let ((setup_done, copied, messages), cancelled) =
            cancellable(self.io, &self.s.spec, &self.s.conn.cancel, async {
                tokio::join!(
                    biased;
                    client.simple_query(&setup),
                    insert_copies(client, in_txn),
                    client.simple_query(sql),
                )
            })
            .await;
        failpoint::point("in-transaction");
        let outcome = async {
            setup_done.map_err(|e| failure(&e, cancelled))?;
            check_copied(copied, cancelled)?;
            let messages = messages.map_err(|e| failure(&e, cancelled))?;
            failpoint::point("after-statements");
            let result = evaluate(
                step,
                &messages,
                &mut self.captured,
                self.pinned_capture.as_deref(),
            )?;
            let w = self.state_params(step, status, Some(result.rows), Some(started.elapsed()));
            if self.rehearsal_open {
                if !self.s.recorder.durable().await {
                    return Err(self.unrecorded().into());
                }
                self.exec_state(&w).await?;
                failpoint::point("before-commit");
                return Ok((result, None));
            }
            Ok((result, Some(w)))
        }
        .await;
        match outcome {
            Ok((r, None)) => {
                self.query(commit).await?;
                failpoint::point("after-commit");
                Ok(r)
            }
            Ok((r, Some(w))) => {
                self.commit_with_state(&w, copies.as_ref()).await?;
                failpoint::point("after-commit");
                Ok(r)
            }
            Err(f) => {
                let _ = self.client().batch_execute(abort).await;
                Err(f)
            }
        }
    }

    /// The whole transaction in one round trip (see `transaction_try`):
    /// setup, audit copies, statements, state row, COMMIT, and then the
    /// audit's copies of records on disk, as in `commit_with_state`.
    async fn one_trip(
        &mut self,
        sql: &str,
        setup: &str,
        copies: Option<&TxnCopies>,
        upsert: &tokio_postgres::Statement,
        w: &StateWrite,
    ) -> Result<StepResult, Attempt> {
        let client = &self.s.conn.client;
        let recorder = &mut self.s.recorder;
        let ((setup_done, copied, messages, state, commit, notes, ()), cancelled) =
            cancellable(self.io, &self.s.spec, &self.s.conn.cancel, async {
                tokio::join!(
                    biased;
                    client.simple_query(setup),
                    insert_copies(client, copies),
                    client.simple_query(sql),
                    upsert_state(client, upsert, w),
                    client.simple_query("COMMIT"),
                    recorder.copy_after_commit(client, copies),
                    async {
                        // Once the connection task has had its turn to
                        // send: killed here, the server still commits.
                        if failpoint::armed() {
                            tokio::task::yield_now().await;
                            failpoint::point("commit-sent");
                        }
                    },
                )
            })
            .await;
        self.warn(notes);
        let outcome = async {
            setup_done.map_err(|e| failure(&e, cancelled))?;
            check_copied(copied, cancelled)?;
            let messages = messages.map_err(|e| failure(&e, cancelled))?;
            state?;
            commit.map_err(|e| failure(&e, cancelled))?;
            Ok(last_result(&messages))
        }
        .await;
        if outcome.is_err() {
            // COMMIT has ended the transaction as a rollback, unless it was
            // never reached (a broken connection): then this does.
            let _ = self.client().batch_execute("ROLLBACK").await;
        } else if let Some(c) = copies {
            self.s.recorder.copied(c);
        }
        failpoint::point("after-commit");
        outcome
    }

    /// The state row, then COMMIT, in one round trip: tokio-postgres sends
    /// each request when its future is first polled, and `join!(biased; …)`
    /// polls them in this order. COMMIT is sent once every audit record
    /// written is on disk or among the `copies` made in this transaction;
    /// when it must wait for the local sync, the state row is written
    /// meanwhile. If the state row fails, the transaction is aborted and
    /// COMMIT ends it as a rollback; if the sync fails, ROLLBACK does. Then
    /// the audit's database copies of records on disk go to the copier's
    /// connection or, without one, follow COMMIT in the same round trip in a
    /// transaction of their own; either way they can neither undo the step
    /// nor be undone by it (see `Recorder::copy_after_commit`).
    async fn commit_with_state(
        &mut self,
        w: &StateWrite,
        copies: Option<&TxnCopies>,
    ) -> Result<(), SqlFailure> {
        let upsert = match self.upsert_statement().await {
            Ok(u) => u,
            Err(f) => {
                // Prepared inside the step's transaction, which it aborted.
                let _ = self.client().batch_execute("ROLLBACK").await;
                return Err(f);
            }
        };
        let copied_upto = copies.map_or(0, TxnCopies::upto);
        let client = &self.s.conn.client;
        let recorder = &mut self.s.recorder;
        let (state, ended) = tokio::join!(
            biased;
            upsert_state(client, &upsert, w),
            async move {
                if !recorder.ready_to_commit(copied_upto).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return None;
                }
                failpoint::point("before-commit");
                let (commit, notes) = tokio::join!(
                    biased;
                    client.simple_query("COMMIT"),
                    recorder.copy_after_commit(client, copies),
                );
                if commit.is_ok()
                    && let Some(c) = copies
                {
                    recorder.copied(c);
                }
                Some((commit, notes))
            },
        );
        let Some((commit, notes)) = ended else {
            return Err(self.unrecorded());
        };
        self.warn(notes);
        state?;
        commit.map_err(|e| SqlFailure::from_pg(&e))?;
        Ok(())
    }

    /// Why a step was rolled back when its start record could not be synced.
    fn unrecorded(&self) -> SqlFailure {
        SqlFailure::plain(format!(
            "cannot write the local audit log ({}); rolled back: pgpilot changes nothing it cannot record",
            self.s.recorder.local_error().unwrap_or_default()
        ))
    }

    /// A statement that cannot run in a transaction block: its state is
    /// written before (in_progress) and after (applied).
    async fn autocommit_once(
        &mut self,
        step: &Step,
        sql: &str,
        settings: &Settings,
        analyzed: &[StatementAnalysis],
    ) -> Result<StepResult, SqlFailure> {
        let w = self.state_params(step, Status::InProgress, None, None);
        self.exec_state(&w).await?;
        failpoint::point("autocommit-in-progress");
        self.query(&format!(
            "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
            settings.lock_timeout.as_millis(),
            settings.statement_timeout.as_millis()
        ))
        .await?;
        // Each statement on its own: a multi-statement query string would run
        // as one implicit transaction, which these statements cannot be in.
        let statements = pg_query::split_with_parser(sql)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .unwrap_or_else(|_| vec![sql.to_string()]);
        let mut result = Ok(Vec::new());
        for stmt in &statements {
            match self.query(stmt).await {
                Ok(m) => result = Ok(m),
                Err(f) => {
                    result = Err(f);
                    break;
                }
            }
        }
        let _ = self
            .client()
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await;
        let messages = match result {
            Ok(m) => m,
            Err(f) => {
                // A CONCURRENTLY build that failed leaves an INVALID index behind;
                // drop it so the retry (or a later run) starts clean.
                let states = self.index_states(step, analyzed).await;
                self.drop_invalid_indexes(&invalid(&states)).await;
                return Err(f);
            }
        };
        failpoint::point("autocommit-after-statement");
        let result = evaluate(
            step,
            &messages,
            &mut self.captured,
            self.pinned_capture.as_deref(),
        )?;
        let w = self.state_params(step, Status::Applied, Some(result.rows), None);
        self.exec_state(&w).await?;
        failpoint::point("autocommit-applied");
        Ok(result)
    }

    /// What the catalog says of each named index the statements build.
    async fn index_states(&self, step: &Step, statements: &[StatementAnalysis]) -> Vec<IndexState> {
        let mut out = Vec::new();
        for build in statements.iter().filter_map(|s| s.builds_index.as_ref()) {
            let state = index_state(self.client(), build).await;
            if let IndexState::Unknown(reason) = &state {
                self.emit(EngineEvent::Notice {
                    step: Some(step.id.clone()),
                    severity: "WARNING".into(),
                    message: format!(
                        "could not read pg_index for index {} on {}: {reason}; look for it by hand (\\d {})",
                        crate::analysis::quote_ident(&build.name),
                        build.table,
                        build.table
                    ),
                });
            }
            out.push(state);
        }
        out
    }

    async fn drop_invalid_indexes(&mut self, invalid: &[RelationName]) {
        for name in invalid {
            let sql = format!("DROP INDEX CONCURRENTLY IF EXISTS {name}");
            let ok = self.client().batch_execute(&sql).await.is_ok();
            self.emit(EngineEvent::Notice {
                step: None,
                severity: "INFO".into(),
                message: if ok {
                    format!("dropped the invalid index {name} left by the failed build")
                } else {
                    format!("could not drop the invalid index {name}; drop it by hand: {sql}")
                },
            });
        }
    }

    /// Sessions holding locks that conflict with what the step takes: the
    /// step would wait behind them and every later query on the table behind
    /// the step. Reported, then per `on_blockers`: ask, wait, or proceed.
    async fn blocker_guard(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
    ) -> Result<(), Outcome> {
        use crate::analysis::LockMode;
        use crate::runbook::OnBlockers;
        let strong: Vec<(RelationName, LockMode)> = a
            .statements
            .iter()
            .flat_map(|s| s.locks.iter())
            .filter(|l| l.mode >= LockMode::ShareUpdateExclusive)
            .map(|l| (l.relation.clone(), l.mode))
            .collect();
        if strong.is_empty() {
            return Ok(());
        }
        let mut waited = false;
        loop {
            let mut holders = Vec::new();
            for (relation, mode) in &strong {
                let found = crate::monitor::holders(self.client(), relation, *mode).await;
                if let Err(e) = &found {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: "WARNING".into(),
                        message: format!("could not look for sessions holding {relation}: {}; lock_timeout still bounds the wait", crate::pg::redact(&e.to_string())),
                    });
                }
                if let Ok(h) = found {
                    holders.extend(h.into_iter().filter(|h| h.pid != self.s.conn_pid));
                }
            }
            if holders.is_empty() {
                if waited {
                    self.emit(EngineEvent::Notice {
                        step: Some(step.id.clone()),
                        severity: "INFO".into(),
                        message: "the blockers are gone".into(),
                    });
                }
                return Ok(());
            }
            if !waited {
                self.emit(EngineEvent::Blockers {
                    step: step.id.clone(),
                    holders: holders.clone(),
                });
            }
            let decision = match step.settings.on_blockers {
                OnBlockers::Proceed => "proceed",
                OnBlockers::Wait => "wait",
                OnBlockers::Ask if waited => "wait",
                OnBlockers::Ask => match self
                    .ask(Ask::Blockers {
                        step: step.id.clone(),
                        holders: holders.clone(),
                    })
                    .await
                {
                    Reply::Run | Reply::Missing => "proceed",
                    Reply::Typed(t)
                        if t.trim().eq_ignore_ascii_case("wait")
                            || t.trim().eq_ignore_ascii_case("w") =>
                    {
                        "wait"
                    }
                    Reply::Typed(t)
                        if t.trim().is_empty()
                            || t.trim().eq_ignore_ascii_case("proceed")
                            || t.trim().eq_ignore_ascii_case("p") =>
                    {
                        "proceed"
                    }
                    _ => "abort",
                },
            };
            if !waited {
                let mut ev = Event::new(Action::Blockers);
                ev.phase = Some(phase.id.clone());
                ev.step = Some(step.id.clone());
                ev.outcome = Some(decision.into());
                ev.message = Some(
                    holders
                        .iter()
                        .map(|h| {
                            format!(
                                "pid {} ({}, {}) holds {} on {}",
                                h.pid,
                                h.user.as_deref().unwrap_or("?"),
                                h.state,
                                h.mode,
                                h.relation
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                self.record(ev).await;
            }
            match decision {
                "proceed" => return Ok(()),
                "abort" => {
                    return Err(Outcome::Refused(format!(
                        "step {}: stopped because sessions hold locks it needs",
                        step.id
                    )));
                }
                _ => {
                    waited = true;
                    if self.sleep_or_cancel(Duration::from_secs(1)).await {
                        return Err(Outcome::Interrupted);
                    }
                }
            }
        }
    }

    /// A step that started on an earlier run and never recorded its end.
    /// Returns true only when every index it builds is there, by its exact
    /// name on its table, and valid: "applied" is never claimed for an object
    /// that is not there.
    async fn in_doubt(&mut self, step: &Step, a: &StepAnalysis) -> Result<bool, Outcome> {
        self.emit(EngineEvent::Notice {
            step: Some(step.id.clone()),
            severity: "WARNING".into(),
            message: format!(
                "step {} was interrupted on an earlier run (state in_progress)",
                step.id
            ),
        });
        let states = self.index_states(step, &a.statements).await;
        let left_invalid = invalid(&states);
        if left_invalid.is_empty() {
            let all_valid = !states.is_empty() && states.iter().all(|s| *s == IndexState::Valid);
            return Ok(all_valid);
        }
        let names = left_invalid
            .iter()
            .map(RelationName::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let phrase = format!("drop invalid index {names}");
        let what = format!(
            "the interrupted build left INVALID index {names}; it must be dropped before building again"
        );
        self.ask_phrase(
            Some(&step.id),
            Ask::Confirm {
                step: step.id.clone(),
                phrase,
                what,
            },
        )
        .await?;
        self.drop_invalid_indexes(&left_invalid).await;
        Ok(false)
    }

    async fn drain_notices(&mut self, phase: &Phase, step: &Step) {
        while let Ok(n) = self.s.conn.notices.try_recv() {
            if n.code == NO_ACTIVE_TRANSACTION {
                // pgpilot's own ROLLBACK after a transaction its COMMIT had
                // already ended (see `one_trip`); steps cannot hold ROLLBACK.
                continue;
            }
            self.emit(EngineEvent::Notice {
                step: Some(step.id.clone()),
                severity: n.severity.clone(),
                message: n.message.clone(),
            });
            let mut ev = Event::new(Action::Notice);
            ev.phase = Some(phase.id.clone());
            ev.step = Some(step.id.clone());
            ev.outcome = Some(n.severity.clone());
            ev.sqlstate = Some(n.code.clone());
            ev.message = Some(n.message.clone());
            self.record(ev).await;
        }
    }

    /// Applied steps in reverse order, stopping before `to` (it stays applied)
    /// or after `through` (it is rolled back too).
    async fn rollback_range(
        &mut self,
        to: Option<&str>,
        through: Option<&str>,
        ask_each: bool,
    ) -> Outcome {
        let steps = self.steps_in_order();
        if let Some(refused) = self.unknown_step("--to", to, &steps) {
            return refused;
        }
        // The steps to undo, newest first: up to `to` (kept), through `through`.
        let mut range = Vec::new();
        for entry in steps.into_iter().rev() {
            if Some(entry.2.id.as_str()) == to {
                break;
            }
            let last = Some(entry.2.id.as_str()) == through;
            range.push(entry);
            if last {
                break;
            }
        }
        // An irreversible step in the range refuses the rollback before
        // anything is undone, not halfway through.
        for (_, _, step) in &range {
            let applied = self.states.get(&step.id).map(|s| s.status) == Some(Status::Applied);
            if applied
                && step.rollback.is_none()
                && let Some(why) = &step.irreversible
            {
                return Outcome::Refused(format!(
                    "step {} cannot be rolled back: irreversible: {why}; nothing was rolled back",
                    step.id
                ));
            }
        }
        for (i, phase, step) in range {
            if !matches!(step.kind, StepKind::Change | StepKind::Backup)
                || self.states.get(&step.id).map(|s| s.status) != Some(Status::Applied)
            {
                continue;
            }
            let a = self.s.analysis.steps[i].clone();
            let Some(rb) = step.rollback.clone() else {
                if let Some(why) = &step.irreversible {
                    return Outcome::Refused(format!(
                        "step {} cannot be rolled back: irreversible: {why}",
                        step.id
                    ));
                }
                // Nothing to undo (ANALYZE, VALIDATE CONSTRAINT): marked rolled
                // back so that a later run applies it again after what it
                // depended on is re-applied.
                if let Err(o) = self
                    .write_state_autocommit(&step, Status::RolledBack, None, None)
                    .await
                {
                    return o;
                }
                let mut ev = Event::new(Action::RollbackSuccess);
                ev.phase = Some(phase.id.clone());
                ev.step = Some(step.id.clone());
                ev.message = Some("no rollback SQL: nothing to undo".into());
                self.record(ev).await;
                self.emit(EngineEvent::StepSkipped {
                    step: step.id.clone(),
                    reason: "no rollback SQL: nothing to undo; marked rolled back".into(),
                });
                continue;
            };
            let reply = if ask_each {
                self.ask(Ask::Next {
                    step: step.id.clone(),
                })
                .await
            } else {
                Reply::Run
            };
            match reply {
                // Inside a rollback, `b` means go on rolling back.
                Reply::Run | Reply::Typed(_) | Reply::RollbackThrough(_) => {}
                Reply::Skip(reason) => {
                    let mut ev = Event::new(Action::Skip);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.message = Some(format!("rollback skipped: {reason}"));
                    self.record(ev).await;
                    self.emit(EngineEvent::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    });
                    continue;
                }
                Reply::Quit | Reply::Missing => {
                    return Outcome::Refused("stopped by the operator".into());
                }
            }
            if let Some(e) = self.s.recorder.local_error() {
                return Outcome::Failed(format!(
                    "cannot write the local audit log ({e}); pgpilot runs nothing it cannot record"
                ));
            }
            let (text, resolved) = match self.with_values(&step, &a, &rb.text, Part::Rollback) {
                Ok(r) => r,
                Err(o) => return o,
            };
            let a = resolved.as_ref();
            if let Some(phrase) = &a.rollback_confirm
                && let Err(o) = self.confirm(&step, phrase, &a.rollback).await
            {
                return o;
            }
            if let Err(o) = self.rollback_step(&phase, &step, a, &text).await {
                return o;
            }
        }
        Outcome::Done
    }

    async fn rollback_step(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
        sql: &str,
    ) -> Result<(), Outcome> {
        let mut ev = Event::new(Action::RollbackStart);
        ev.phase = Some(phase.id.clone());
        ev.step = Some(step.id.clone());
        ev.sql = Some(sql.to_string());
        self.record(ev).await;
        failpoint::point("rollback-start");
        let settings = step.settings.clone();
        let autocommit = a.rollback.iter().any(|s| !s.transactional);
        let started = Instant::now();
        let of = settings.lock_retries + 1;
        for attempt in 1..=of {
            self.emit(EngineEvent::StepStarted {
                step: step.id.clone(),
                attempt,
                of,
            });
            let w = self.state_params(step, Status::RolledBack, None, None);
            let result: Result<(), SqlFailure> = if autocommit {
                async {
                    self.query(&format!(
                        "SET lock_timeout = '{}ms'",
                        settings.lock_timeout.as_millis()
                    ))
                    .await?;
                    let r = self.query(sql).await;
                    let _ = self.client().batch_execute("RESET lock_timeout").await;
                    r?;
                    failpoint::point("rollback-autocommit-after-statement");
                    self.exec_state(&w).await
                }
                .await
            } else {
                async {
                    self.query(&format!(
                        "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
                        settings.lock_timeout.as_millis(),
                        settings.statement_timeout.as_millis()
                    ))
                    .await?;
                    let r = async {
                        self.query(sql).await?;
                        failpoint::point("rollback-in-transaction");
                        self.exec_state(&w).await
                    }
                    .await;
                    match r {
                        Ok(()) => self.query("COMMIT").await.map(|_| ()),
                        Err(f) => {
                            let _ = self.client().batch_execute("ROLLBACK").await;
                            Err(f)
                        }
                    }
                }
                .await
            };
            self.drain_notices(phase, step).await;
            match result {
                Ok(()) => {
                    failpoint::point("rollback-done");
                    let mut ev = Event::new(Action::RollbackSuccess);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.duration_ms = Some(started.elapsed().as_millis() as u64);
                    self.record(ev).await;
                    self.mark(step, Status::RolledBack);
                    self.emit(EngineEvent::RolledBack {
                        step: step.id.clone(),
                        duration: started.elapsed(),
                    });
                    return Ok(());
                }
                Err(f) if f.sqlstate.as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < of => {
                    let waited = started.elapsed();
                    if self
                        .retry_after(phase, step, &settings, attempt, of, &f, waited)
                        .await
                    {
                        return Err(Outcome::Interrupted);
                    }
                }
                Err(f) => {
                    let mut ev = Event::new(Action::RollbackFailure);
                    ev.phase = Some(phase.id.clone());
                    ev.step = Some(step.id.clone());
                    ev.sqlstate = f.sqlstate.clone();
                    ev.message = Some(f.message.clone());
                    self.record(ev).await;
                    self.emit(EngineEvent::StepFailed {
                        step: step.id.clone(),
                        sqlstate: f.sqlstate.clone(),
                        message: f.message.clone(),
                    });
                    return Err(if f.cancelled_by_operator {
                        Outcome::Interrupted
                    } else {
                        Outcome::Failed(format!("rollback of {} failed: {}", step.id, f.message))
                    });
                }
            }
        }
        Err(Outcome::Failed(format!(
            "rollback of {} did not get its locks",
            step.id
        )))
    }
}

struct StateWrite {
    runbook: String,
    step: String,
    status: &'static str,
    step_sha: String,
    runbook_sha: String,
    operator: String,
    host: String,
    captured: Option<String>,
    rows: Option<i64>,
    duration_ms: Option<i64>,
    /// The server measures the duration (see `UPSERT_SQL`).
    timed_by_server: bool,
}

async fn upsert_state(
    client: &Client,
    upsert: &tokio_postgres::Statement,
    w: &StateWrite,
) -> Result<(), SqlFailure> {
    client
        .execute(
            upsert,
            &[
                &w.runbook,
                &w.step,
                &w.status,
                &w.step_sha,
                &w.runbook_sha,
                &w.operator,
                &w.host,
                &w.captured,
                &w.rows,
                &w.duration_ms,
                &w.timed_by_server,
            ],
        )
        .await
        .map(|_| ())
        .map_err(|e| SqlFailure::from_pg(&e))
}

fn is_production(env: &str) -> bool {
    matches!(env.to_ascii_lowercase().as_str(), "production" | "prod")
}

/// Exponential backoff from `base`, capped at 30 s, with ±25 % jitter so two
/// waiting sessions do not retry in lock step.
fn backoff(base: Duration, attempt: u32) -> Duration {
    crate::backoff::Backoff {
        first: base,
        cap: Duration::from_secs(30),
    }
    .delay(attempt)
}

/// Checks the step's expectation on its last result and keeps its capture.
fn evaluate(
    step: &Step,
    messages: &[SimpleQueryMessage],
    captured: &mut HashMap<String, String>,
    pinned: Option<&str>,
) -> Result<StepResult, SqlFailure> {
    check_expectation(step, last_result(messages), captured, pinned)
}

/// The last result set among a step's results.
fn last_result(messages: &[SimpleQueryMessage]) -> StepResult {
    let mut last = StepResult::default();
    let mut current_rows = 0u64;
    let mut current_first: Option<Option<String>> = None;
    let mut in_rows = false;
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(_) => {
                in_rows = true;
                current_rows = 0;
                current_first = None;
            }
            SimpleQueryMessage::Row(r) => {
                in_rows = true;
                if current_rows == 0 {
                    current_first = Some(r.get(0).map(str::to_string));
                }
                current_rows += 1;
            }
            SimpleQueryMessage::CommandComplete(n) => {
                last = if in_rows {
                    StepResult {
                        rows: current_rows,
                        first_value: current_first.take(),
                        returned_rows: true,
                    }
                } else {
                    StepResult {
                        rows: *n,
                        first_value: None,
                        returned_rows: false,
                    }
                };
                in_rows = false;
                current_rows = 0;
            }
            _ => {}
        }
    }
    last
}

fn check_expectation(
    step: &Step,
    last: StepResult,
    captured: &mut HashMap<String, String>,
    pinned: Option<&str>,
) -> Result<StepResult, SqlFailure> {
    if let Some(expect) = &step.expect {
        let expected_scalar = match expect {
            Expect::Scalar(s) => {
                Some(vars::substitute_plain(s, captured).map_err(SqlFailure::plain)?)
            }
            _ => None,
        };
        let ok = match expect {
            Expect::Rows(n) => last.rows == *n,
            Expect::Empty(true) => last.rows == 0,
            Expect::Empty(false) => last.rows > 0,
            Expect::Scalar(_) => {
                last.first_value.as_ref().and_then(|v| v.as_deref()) == expected_scalar.as_deref()
            }
        };
        if !ok {
            let got = match expect {
                Expect::Scalar(_) => format!(
                    "got {}",
                    last.first_value
                        .as_ref()
                        .map(|v| v.as_deref().unwrap_or("NULL"))
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_else(|| "no rows".into())
                ),
                _ => format!("got {} row(s)", last.rows),
            };
            let want = match expect {
                Expect::Rows(n) => format!("{n} row(s)"),
                Expect::Empty(true) => "no rows".into(),
                Expect::Empty(false) => "at least one row".into(),
                Expect::Scalar(_) => format!("{:?}", expected_scalar.unwrap_or_default()),
            };
            return Err(SqlFailure::plain(format!(
                "expectation not met: expected {want}, {got}"
            )));
        }
    }
    if let Some(name) = step.capture.as_ref().filter(|n| Some(n.as_str()) != pinned) {
        match last.first_value.clone().flatten() {
            Some(v) if last.returned_rows => {
                captured.insert(name.clone(), v);
            }
            _ => {
                return Err(SqlFailure::plain(format!(
                    "capture {name}: the step returned no value to keep"
                )));
            }
        }
    }
    Ok(last)
}
