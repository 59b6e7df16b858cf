//! One attempt loop for forward steps and rollbacks: each attempt bounded by
//! `lock_timeout` and `statement_timeout`, retried on 55P03 after a backoff
//! the operator may cancel, every end audited.

use std::time::{Duration, Instant};

use super::expect::StepResult;
use super::queue::Yielded;
use super::sql::{LOCK_NOT_AVAILABLE, NO_ACTIVE_TRANSACTION, QUERY_CANCELED, SqlFailure};
use super::{Exec, step_event};
use crate::analysis::StatementAnalysis;
use crate::audit::record::Action;
use crate::engine::{EngineEvent, Outcome, failpoint};
use crate::runbook::{Phase, Settings, Step, format_duration};

/// What each attempt runs.
#[derive(Clone, Copy)]
pub(super) enum Work<'w> {
    /// A forward step's SQL, in a transaction or, when it cannot be in one,
    /// in autocommit.
    Step {
        sql: &'w str,
        autocommit: bool,
        statements: &'w [StatementAnalysis],
    },
    /// A step's rollback SQL; its state row becomes `rolled_back`.
    Rollback { sql: &'w str, autocommit: bool },
}

impl Work<'_> {
    fn autocommit(self) -> bool {
        match self {
            Work::Step { autocommit, .. } | Work::Rollback { autocommit, .. } => autocommit,
        }
    }

    fn failure_action(self) -> Action {
        match self {
            Work::Step { .. } => Action::StepFailure,
            Work::Rollback { .. } => Action::RollbackFailure,
        }
    }

    fn failed_message(self, step: &Step, f: &SqlFailure) -> String {
        match self {
            Work::Step { .. } => {
                let code = f
                    .sqlstate
                    .as_ref()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default();
                format!("step {} failed{code}: {}", step.id, f.message)
            }
            Work::Rollback { .. } => format!("rollback of {} failed: {}", step.id, f.message),
        }
    }
}

/// Why an attempt is retried.
pub(super) enum RetryCause<'f> {
    /// lock_timeout expired (55P03).
    LockTimeout(&'f SqlFailure),
    /// pgpilot cancelled its own lock wait: sessions queued behind it
    /// waited longer than `max_queue_stall`.
    Yielded(&'f Yielded),
}

/// Whether a failure is the cancel of a yield: 57014 after pgpilot sent one,
/// not the operator's, and before statement_timeout could have fired.
fn is_yield(f: &SqlFailure, yielded: bool, ran: Duration, settings: &Settings) -> bool {
    yielded
        && f.sqlstate.as_deref() == Some(QUERY_CANCELED)
        && !f.cancelled_by_operator
        && (settings.statement_timeout.is_zero() || ran < settings.statement_timeout)
}

/// The attempt that succeeded.
pub(super) struct Succeeded {
    pub(super) result: StepResult,
    pub(super) attempt: u32,
    /// From the first attempt's start, backoffs included.
    pub(super) duration: Duration,
}

/// How the server must read a step's SQL: as pg_query read it for the
/// analysis (standard_conforming_strings on, UTF-8). A step may change
/// either for the session (`SET standard_conforming_strings = off`); the
/// next step would then be read differently, `'a\'` + newline + `'; DROP
/// TABLE t; --'` becoming a literal and a DROP no one was asked about.
/// Sent before every step's SQL, in its own message: a message is parsed
/// whole before any of it runs, so a step cannot change how it is read.
fn as_analysed(local: &str) -> String {
    format!("SET {local}standard_conforming_strings = on; SET {local}client_encoding = 'UTF8'")
}

/// Session-level timeouts for SQL that runs in autocommit, and their reset.
pub(super) fn session_timeouts(settings: &Settings) -> String {
    format!(
        "{}; SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
        as_analysed(""),
        settings.lock_timeout.as_millis(),
        settings.statement_timeout.as_millis()
    )
}

pub(super) const RESET_TIMEOUTS: &str = "RESET lock_timeout; RESET statement_timeout";

/// Opens a transaction (or savepoint) whose timeouts end with it.
pub(super) fn local_timeouts(begin: &str, settings: &Settings) -> String {
    format!(
        "{begin}; {}; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
        as_analysed("LOCAL "),
        settings.lock_timeout.as_millis(),
        settings.statement_timeout.as_millis()
    )
}

impl Exec<'_> {
    /// Runs `work` up to `lock_retries + 1` times. A failure other than
    /// 55P03, the last 55P03, or a cancel (during an attempt or its backoff)
    /// is audited and ends it; the caller records the success.
    pub(super) async fn attempts(
        &mut self,
        phase: &Phase,
        step: &Step,
        work: Work<'_>,
    ) -> Result<Succeeded, Outcome> {
        let settings = step.settings.clone();
        let of = settings.lock_retries + 1;
        let started = Instant::now();
        let mut yields = 0u32;
        let mut last_yield: Option<Yielded> = None;
        // A rehearsal holds every earlier step's locks until it ends:
        // cancelling the current statement would not drain the queue;
        // rehearsal_max_queue bounds it instead.
        let stall = if self.rehearsal_open {
            Duration::ZERO
        } else {
            settings.max_queue_stall
        };
        for attempt in 1..=of {
            self.emit(EngineEvent::StepStarted {
                step: step.id.clone(),
                attempt,
                of,
            });
            if attempt == 1 {
                self.record_start(phase, step, work).await;
            }
            if let Some(e) = self.s.recorder.local_error() {
                return Err(Outcome::Failed(format!(
                    "cannot write the local audit log ({e}); pgpilot runs nothing it cannot record"
                )));
            }
            if let Work::Step { .. } = work {
                failpoint::point("step-start");
            }
            let attempt_started = Instant::now();
            self.queue.begin(&step.id, stall, work.autocommit(), yields);
            let result = self.attempt(step, work, &settings).await;
            self.queue.end(&self.io.events);
            let yielded = self.queue.yielded.take();
            self.drain_notices(phase, step).await;
            match result {
                Ok(result) => {
                    if yields > 0 {
                        self.emit(EngineEvent::Notice {
                            step: Some(step.id.clone()),
                            severity: crate::pg::Severity::Info,
                            message: format!(
                                "got its locks after {yields} yield{} to sessions queued behind it (max_queue_stall = {})",
                                if yields == 1 { "" } else { "s" },
                                format_duration(stall)
                            ),
                        });
                    }
                    return Ok(Succeeded {
                        result,
                        attempt,
                        duration: started.elapsed(),
                    });
                }
                Err(f) if is_yield(&f, yielded.is_some(), attempt_started.elapsed(), &settings) => {
                    let Some(y) = yielded else {
                        return Err(self.failed(phase, step, work, started, f).await);
                    };
                    yields += 1;
                    self.emit(EngineEvent::QueueBehind {
                        step: step.id.clone(),
                        sessions: 0,
                        oldest: Duration::ZERO,
                        limit: stall,
                        yields,
                    });
                    let waited = attempt_started.elapsed();
                    if attempt == of {
                        let held = y.held_by();
                        let f = SqlFailure {
                            sqlstate: f.sqlstate,
                            message: format!(
                                "did not get its locks in {of} attempts: yielded {yields} time{} to sessions queued behind it longer than max_queue_stall = {}; the table was held by {held}",
                                if yields == 1 { "" } else { "s" },
                                format_duration(stall)
                            ),
                            cancelled_by_operator: false,
                        };
                        self.record_retry(
                            phase,
                            step,
                            attempt,
                            RetryCause::Yielded(&y),
                            &f,
                            waited,
                            None,
                        )
                        .await;
                        return Err(self.failed(phase, step, work, started, f).await);
                    }
                    let cause = RetryCause::Yielded(&y);
                    let cancelled = self
                        .retry_after(phase, step, &settings, attempt, of, cause, &f, waited)
                        .await;
                    last_yield = Some(y);
                    if cancelled {
                        return Err(self.cancelled_in_backoff(phase, step, work, started).await);
                    }
                }
                Err(f) if f.sqlstate.as_deref() == Some(LOCK_NOT_AVAILABLE) && attempt < of => {
                    let waited = attempt_started.elapsed();
                    let cause = RetryCause::LockTimeout(&f);
                    if self
                        .retry_after(phase, step, &settings, attempt, of, cause, &f, waited)
                        .await
                    {
                        return Err(self.cancelled_in_backoff(phase, step, work, started).await);
                    }
                }
                Err(f) => return Err(self.failed(phase, step, work, started, f).await),
            }
        }
        let held = last_yield
            .map(|y| format!("; the table was held by {}", y.held_by()))
            .unwrap_or_default();
        Err(Outcome::Failed(match work {
            Work::Step { .. } => format!("step {} did not get its locks{held}", step.id),
            Work::Rollback { .. } => {
                format!("rollback of {} did not get its locks{held}", step.id)
            }
        }))
    }

    /// The operator cancelled while the work waited to retry.
    async fn cancelled_in_backoff(
        &mut self,
        phase: &Phase,
        step: &Step,
        work: Work<'_>,
        started: Instant,
    ) -> Outcome {
        let cancelled = SqlFailure {
            sqlstate: Some(QUERY_CANCELED.into()),
            message: "cancelled by the operator while waiting to retry".into(),
            cancelled_by_operator: true,
        };
        self.failed(phase, step, work, started, cancelled).await
    }

    /// The record that the work starts, once, before its first attempt.
    async fn record_start(&mut self, phase: &Phase, step: &Step, work: Work<'_>) {
        match work {
            Work::Step {
                sql, autocommit, ..
            } => {
                let mut ev = step_event(Action::StepStart, phase, step);
                ev.sql = Some(sql.to_string());
                ev.attempt = Some(1);
                if autocommit {
                    // It commits itself: on disk before it is sent.
                    self.record(ev).await;
                } else {
                    // Synced while the statements run; COMMIT waits for it.
                    self.s.recorder.write_ahead(ev).await;
                }
            }
            Work::Rollback { sql, .. } => {
                let mut ev = step_event(Action::RollbackStart, phase, step);
                ev.sql = Some(sql.to_string());
                self.record(ev).await;
                failpoint::point("rollback-start");
            }
        }
    }

    /// One attempt of `work`.
    async fn attempt(
        &mut self,
        step: &Step,
        work: Work<'_>,
        settings: &Settings,
    ) -> Result<StepResult, SqlFailure> {
        // A migration tool's history (`[runbook] history`) is written in
        // the step's transaction, or right after a step in autocommit.
        match work {
            Work::Step {
                sql,
                autocommit: true,
                statements,
            } => {
                let r = self
                    .autocommit_once(step, sql, settings, statements)
                    .await?;
                self.history_after(step, true).await?;
                Ok(r)
            }
            Work::Step {
                sql,
                autocommit: false,
                ..
            } => {
                let with = self.with_history(step, sql, true)?;
                self.transaction_once(step, with.as_deref().unwrap_or(sql), settings)
                    .await
            }
            Work::Rollback {
                sql,
                autocommit: true,
            } => {
                let r = self.rollback_autocommit_once(step, sql, settings).await?;
                self.history_after(step, false).await?;
                Ok(r)
            }
            Work::Rollback {
                sql,
                autocommit: false,
            } => {
                let with = self.with_history(step, sql, false)?;
                self.rollback_transaction_once(step, with.as_deref().unwrap_or(sql), settings)
                    .await
            }
        }
    }

    /// A lock_timeout (55P03) or a yield after `waited` in this attempt:
    /// audited and shown, then the backoff is slept (the operator may
    /// cancel it: true). A yield's backoff doubles from `retry_backoff` up
    /// to four times it: the queue drained at once, and a holder that
    /// leaves is followed within a few seconds.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn retry_after(
        &mut self,
        phase: &Phase,
        step: &Step,
        settings: &Settings,
        attempt: u32,
        of: u32,
        cause: RetryCause<'_>,
        f: &SqlFailure,
        waited: Duration,
    ) -> bool {
        let yielded = matches!(cause, RetryCause::Yielded(_));
        let wait = match cause {
            RetryCause::LockTimeout(_) => backoff(settings.retry_backoff, attempt),
            RetryCause::Yielded(_) => crate::backoff::Backoff {
                first: settings.retry_backoff,
                cap: settings.retry_backoff.saturating_mul(4),
            }
            .delay(attempt),
        };
        let message = self
            .record_retry(phase, step, attempt, cause, f, waited, Some(wait))
            .await;
        self.emit(EngineEvent::Retrying {
            step: step.id.clone(),
            attempt,
            of,
            wait,
            message,
            yielded,
        });
        self.sleep_or_cancel(wait).await
    }

    /// The audit record of a retry (or of the last yield, `wait` None) and
    /// its message.
    #[allow(clippy::too_many_arguments)]
    async fn record_retry(
        &mut self,
        phase: &Phase,
        step: &Step,
        attempt: u32,
        cause: RetryCause<'_>,
        f: &SqlFailure,
        waited: Duration,
        wait: Option<Duration>,
    ) -> String {
        let then = match wait {
            Some(w) => format!("retrying in {:.1}s", w.as_secs_f64()),
            None => "no attempt left".into(),
        };
        let message = match cause {
            RetryCause::LockTimeout(f) => format!(
                "waited {} for a lock ({}); {then}",
                format_duration(step.settings.lock_timeout),
                f.message,
            ),
            RetryCause::Yielded(y) => {
                format!("{}; {then}", y.describe(step.settings.max_queue_stall))
            }
        };
        let mut ev = step_event(Action::Retry, phase, step);
        ev.attempt = Some(attempt);
        ev.sqlstate = f.sqlstate.clone();
        ev.message = Some(message.clone());
        ev.duration_ms = Some(waited.as_millis() as u64);
        self.record(ev).await;
        message
    }

    /// Audits and shows how the work failed; a cancel is recorded as one.
    async fn failed(
        &mut self,
        phase: &Phase,
        step: &Step,
        work: Work<'_>,
        started: Instant,
        f: SqlFailure,
    ) -> Outcome {
        self.last_failed = Some(step.id.clone());
        let mut ev = step_event(work.failure_action(), phase, step);
        ev.duration_ms = Some(started.elapsed().as_millis() as u64);
        ev.sqlstate = f.sqlstate.clone();
        ev.message = Some(f.message.clone());
        if f.cancelled_by_operator {
            let c = step_event(Action::Cancel, phase, step);
            self.record(c).await;
        }
        self.record(ev).await;
        if let Work::Step {
            autocommit: false, ..
        } = work
        {
            self.record_failed(step).await;
        }
        self.emit(EngineEvent::StepFailed {
            step: step.id.clone(),
            sqlstate: f.sqlstate.clone(),
            message: f.message.clone(),
        });
        if f.cancelled_by_operator {
            Outcome::Interrupted
        } else {
            Outcome::Failed(work.failed_message(step, &f))
        }
    }

    /// The server's notices and warnings during an attempt: shown and audited.
    async fn drain_notices(&mut self, phase: &Phase, step: &Step) {
        while let Ok(n) = self.s.conn.notices.try_recv() {
            if n.code == NO_ACTIVE_TRANSACTION {
                // pgpilot's own ROLLBACK after a transaction its COMMIT had
                // already ended (see `one_trip`); steps cannot hold ROLLBACK.
                continue;
            }
            self.emit(EngineEvent::Notice {
                step: Some(step.id.clone()),
                severity: n.severity,
                message: n.message.clone(),
            });
            let mut ev = step_event(Action::Notice, phase, step);
            ev.outcome = Some(n.severity.as_str().into());
            ev.sqlstate = Some(n.code.clone());
            ev.message = Some(n.message.clone());
            self.record(ev).await;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocommit_and_transactions_set_both_timeouts() {
        let settings = Settings {
            lock_timeout: Duration::from_millis(1500),
            statement_timeout: Duration::from_secs(60),
            ..Settings::default()
        };
        assert_eq!(
            session_timeouts(&settings),
            "SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; SET lock_timeout = '1500ms'; SET statement_timeout = '60000ms'"
        );
        assert_eq!(
            local_timeouts("BEGIN", &settings),
            "BEGIN; SET LOCAL standard_conforming_strings = on; SET LOCAL client_encoding = 'UTF8'; SET LOCAL lock_timeout = '1500ms'; SET LOCAL statement_timeout = '60000ms'"
        );
        for setting in ["lock_timeout", "statement_timeout"] {
            assert!(RESET_TIMEOUTS.contains(&format!("RESET {setting}")));
        }
    }
}
