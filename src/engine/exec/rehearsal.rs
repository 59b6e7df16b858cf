//! What keeps a rehearsal a rehearsal: its locks are announced before it
//! starts, `b` rehearses the rollback of what the rehearsal itself changed
//! (inside its transaction) and refuses anything else, and a rehearsal that
//! makes other sessions queue behind its locks longer than
//! `rehearsal_max_queue` ends itself.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio_postgres::SimpleQueryMessage;

use super::Exec;
use crate::analysis::{self, LockMode, RelationLock};
use crate::audit::record::{Action, Event};
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Mode, Reply, rehearse};
use crate::pg::Severity;
use crate::runbook::{StepKind, format_duration};

/// A rehearsal's own bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Rehearsal {
    /// Change and backup steps run inside the rehearsal's transaction and
    /// not yet undone in it, oldest first: the only steps its `b` touches.
    pub(super) changed: Vec<String>,
    /// When each session now queued behind the rehearsal was first seen so.
    queued_since: HashMap<i32, Instant>,
    /// Why the rehearsal ended itself, once it did.
    pub(super) ended: Option<String>,
}

/// A session waiting for a lock the rehearsal holds.
#[derive(Debug, Clone, PartialEq)]
struct Queued {
    pid: i32,
    application: String,
    user: String,
    mode: String,
    relation: String,
}

/// Who waits behind this session, asked on the executor's own connection
/// while it is idle inside the rehearsal's transaction. In a savepoint, so
/// that a failure here cannot abort the rehearsal; the statistics snapshot is
/// cleared first because inside a transaction `pg_stat_activity` would
/// otherwise show what it showed at its first read (Monitoring Database
/// Activity, 27.2.2 "Viewing Statistics"). `pg_blocking_pids()` only for
/// lock requests not granted, as the monitor does.
const QUEUED_SQL: &str = "SAVEPOINT pgpilot_watch;
SELECT pg_stat_clear_snapshot();
SELECT w.pid::text AS pid, coalesce(a.application_name, '') AS application,
       coalesce(a.usename::text, '') AS usr, w.mode,
       coalesce(w.relation::regclass::text, w.locktype) AS relation
  FROM pg_locks w LEFT JOIN pg_stat_activity a ON a.pid = w.pid
 WHERE NOT w.granted AND pg_backend_pid() = ANY (pg_blocking_pids(w.pid))
 ORDER BY w.pid;
RELEASE SAVEPOINT pgpilot_watch";

fn parse_queued(messages: &[SimpleQueryMessage]) -> Vec<Queued> {
    let mut out = Vec::new();
    for m in messages {
        let SimpleQueryMessage::Row(r) = m else {
            continue;
        };
        let text = |c: &str| r.try_get(c).ok().flatten().unwrap_or_default().to_string();
        let Ok(pid) = text("pid").parse() else {
            // The row of pg_stat_clear_snapshot(): it has no pid.
            continue;
        };
        out.push(Queued {
            pid,
            application: text("application"),
            user: text("usr"),
            mode: text("mode"),
            relation: text("relation"),
        });
    }
    out
}

/// How often the queue behind a rehearsal is looked at: a quarter of the
/// limit, between 100 ms and 1 s.
fn watch_interval(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// The sentence that ends a rehearsal whose locks made others wait.
fn queue_message(queued: &[Queued], waited: Duration, limit: Duration) -> String {
    let mut relations: Vec<&str> = queued.iter().map(|q| q.relation.as_str()).collect();
    relations.sort_unstable();
    relations.dedup();
    let who: Vec<String> = queued
        .iter()
        .map(|q| {
            let mode = LockMode::from_name(&q.mode).map_or(q.mode.clone(), |m| m.name().into());
            format!(
                "pid {} ({}, {}) wants {mode}",
                q.pid,
                crate::text::one_line(&q.application),
                crate::text::one_line(&q.user)
            )
        })
        .collect();
    format!(
        "rehearsal ended: {} session(s) waited {} behind its locks on {} (rehearsal_max_queue = {}); everything was rolled back, nothing was changed; waiting: {}",
        queued.len(),
        format_duration(Duration::from_secs(waited.as_secs())),
        relations.join(", "),
        format_duration(limit),
        who.join("; "),
    )
}

/// Each relation the steps lock and the strongest mode, by name.
fn strongest_locks(locks: impl Iterator<Item = RelationLock>) -> BTreeMap<String, LockMode> {
    let mut out: BTreeMap<String, LockMode> = BTreeMap::new();
    for l in locks {
        let e = out.entry(l.relation.to_string()).or_insert(l.mode);
        *e = (*e).max(l.mode);
    }
    out
}

impl Exec<'_> {
    /// The operator's answer; during a rehearsal, watched for sessions
    /// queued behind it. When they have waited longer than
    /// `rehearsal_max_queue`, the rehearsal is rolled back and ends, and the
    /// question is answered `Quit` (see `execute`, which reports why).
    pub(super) async fn reply(&mut self) -> Reply {
        let limit = self.s.runbook.settings.rehearsal_max_queue;
        if !self.rehearsal_open || limit.is_zero() {
            return self.io.replies.recv().await.unwrap_or(Reply::Quit);
        }
        let every = watch_interval(limit);
        // The first look after one interval: an answer given at once (headless)
        // costs no query.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                r = self.io.replies.recv() => return r.unwrap_or(Reply::Quit),
                _ = tick.tick() => {}
            }
            let Ok(messages) = self.client().simple_query(QUEUED_SQL).await else {
                // The transaction may be aborted: the next step says so.
                let _ = self
                    .client()
                    .batch_execute("ROLLBACK TO SAVEPOINT pgpilot_watch")
                    .await;
                continue;
            };
            let queued = parse_queued(&messages);
            let now = Instant::now();
            let since = &mut self.rehearsal.queued_since;
            since.retain(|pid, _| queued.iter().any(|q| q.pid == *pid));
            for q in &queued {
                since.entry(q.pid).or_insert(now);
            }
            let waited = since.values().map(|t| now - *t).max().unwrap_or_default();
            if !queued.is_empty() && waited > limit {
                self.end_queued(&queued, waited, limit).await;
                return Reply::Quit;
            }
        }
    }

    async fn end_queued(&mut self, queued: &[Queued], waited: Duration, limit: Duration) {
        let _ = self.client().batch_execute("ROLLBACK").await;
        self.rehearsal_open = false;
        let message = queue_message(queued, waited, limit);
        self.emit(EngineEvent::Notice {
            step: None,
            severity: Severity::Warning,
            message: message.clone(),
        });
        let mut ev = Event::new(Action::Guard);
        ev.outcome = Some("fail".into());
        ev.message = Some(format!("rehearsal_max_queue: {message}"));
        self.record(ev).await;
        self.rehearsal.ended = Some(message);
    }

    /// Rolls the rehearsal back at its end (after the end prompt, so that
    /// `b` there is still rehearsed inside it).
    pub(super) async fn finish_rehearsal(&mut self) {
        if !self.rehearsal_open {
            return;
        }
        let _ = self.client().batch_execute("ROLLBACK").await;
        self.rehearsal_open = false;
        self.emit(EngineEvent::Notice {
            step: None,
            severity: Severity::Info,
            message: "rehearsal finished: everything was rolled back, nothing was changed".into(),
        });
    }

    /// Before the first step of a rehearsal: which tables it will lock and
    /// how, held until it ends.
    pub(super) fn announce_locks(&self) {
        if !self.rehearsal_open {
            return;
        }
        let from = match &self.s.options.mode {
            Mode::Run { from } => from.clone(),
            Mode::Rollback { .. } => return,
        };
        let mut started = from.is_none();
        let mut locks = Vec::new();
        for (i, (_, step)) in self.s.runbook.steps().enumerate() {
            started |= from.as_deref() == Some(step.id.as_str());
            let applied = step.kind.changes()
                && self
                    .states
                    .get(&step.id)
                    .is_some_and(|s| s.status == Status::Applied);
            if !started || applied || step.kind == StepKind::Pause {
                continue;
            }
            for st in &self.s.analysis.steps[i].statements {
                if st.transactional {
                    locks.extend(st.locks.iter().cloned());
                } else if let Some(form) = rehearse::transactional_form(&st.sql) {
                    // What runs instead (CREATE INDEX without CONCURRENTLY
                    // takes SHARE, not SHARE UPDATE EXCLUSIVE).
                    let mut ctx = analysis::Context::default();
                    if let Ok(a) = analysis::analyze_sql(&form, &mut ctx) {
                        locks.extend(a.into_iter().flat_map(|s| s.locks));
                    }
                }
            }
        }
        let strongest = strongest_locks(locks.into_iter());
        let message = if strongest.is_empty() {
            "this rehearsal will lock no existing table".to_string()
        } else {
            let each: Vec<String> = strongest
                .iter()
                .map(|(rel, mode)| format!("{rel} ({})", mode.sql_name()))
                .collect();
            let limit = self.s.runbook.settings.rehearsal_max_queue;
            let bound = if limit.is_zero() {
                "rehearsal_max_queue is off".to_string()
            } else {
                format!(
                    "it ends itself once someone has queued behind it for {}",
                    format_duration(limit)
                )
            };
            format!(
                "this rehearsal will lock {}: each held until the rehearsal ends, also while it waits for you; {bound}",
                each.join(", ")
            )
        };
        self.emit(EngineEvent::Notice {
            step: None,
            severity: Severity::Info,
            message,
        });
    }

    /// `b` during a rehearsal: the steps this rehearsal changed, from the
    /// newest down to `target`, undone inside its transaction. A step it did
    /// not change (applied for real on an earlier run, or not run) is
    /// refused: a rehearsal changes nothing outside its transaction.
    pub(super) async fn rehearse_rollback_through(
        &mut self,
        target: &str,
    ) -> Result<(), crate::engine::Outcome> {
        if !self.rehearsal.changed.iter().any(|s| s == target) {
            let applied = self
                .states
                .get(target)
                .is_some_and(|s| s.status == Status::Applied);
            let why = if applied {
                "it was applied for real on an earlier run, and a rehearsal changes nothing outside its transaction: roll it back with `pgpilot rollback`"
            } else {
                "this rehearsal did not change it"
            };
            let message = format!("{target} is not rolled back in this rehearsal: {why}");
            self.emit(EngineEvent::Notice {
                step: Some(target.to_string()),
                severity: Severity::Warning,
                message: message.clone(),
            });
            let mut ev = Event::new(Action::RollbackFailure);
            ev.step = Some(target.to_string());
            ev.outcome = Some("refused".into());
            ev.message = Some(message);
            self.record(ev).await;
            return Ok(());
        }
        match self.rollback_range(None, Some(target), false).await {
            crate::engine::Outcome::Done => Ok(()),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_looks_often_enough_and_not_too_often() {
        assert_eq!(
            watch_interval(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        assert_eq!(
            watch_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            watch_interval(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn the_end_names_who_waited_and_on_what() {
        let q = |pid, rel: &str| Queued {
            pid,
            application: "app\x1b[31m".into(),
            user: "web".into(),
            mode: "RowExclusiveLock".into(),
            relation: rel.into(),
        };
        let m = queue_message(
            &[q(7, "public.t"), q(8, "public.t")],
            Duration::from_millis(31_400),
            Duration::from_secs(30),
        );
        let want = "rehearsal ended: 2 session(s) waited 31s behind its locks on public.t \
            (rehearsal_max_queue = 30s); everything was rolled back, nothing was changed; \
            waiting: pid 7 (app";
        assert!(m.starts_with(want), "{m}");
        assert!(!m.contains('\x1b'), "{m}");
        assert!(m.ends_with(", web) wants RowExclusiveLock"), "{m}");
    }
}
