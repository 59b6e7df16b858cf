//! The waits the monitor already knows, so that a poll reads `pg_locks`
//! only when a wait is new.
//!
//! `pg_locks` (`pg_lock_status()`) walks the whole lock table and every
//! backend's fast-path slots, whatever few locks are held: it is most of a
//! poll's cost on a server with many connections. What a waiter waits for
//! (mode, lock type, relation, since when) does not change while it waits
//! for that lock, so a wait read once is kept under its key — the waiter's
//! pid, its statement's start and the lock type it waits on — and the poll
//! is told the keys it need not read again. A wait is read again when its
//! key changes (a new statement, another lock type), when its blockers
//! change (it may have moved on to another lock of the same type), and at
//! least every [`REREAD_AFTER`] polls.

use std::collections::HashMap;

use super::{Backend, LockWait};

/// A known wait is read from `pg_locks` again at every REREAD_AFTER-th
/// poll, whatever else: bounds how long a wait that moved on unnoticed is
/// shown (at 1 s polls, 10 s).
pub const REREAD_AFTER: u32 = 10;

#[derive(Debug, Clone)]
struct Known {
    wait: LockWait,
    /// When the wait began (epoch seconds, the server's clock).
    start_s: Option<f64>,
    blocked_by: Vec<i32>,
    polls: u32,
}

/// A poll's row as far as its wait goes.
pub struct Row {
    pub backend: Backend,
    pub key: Option<String>,
    pub start_s: Option<f64>,
}

#[derive(Debug, Default)]
pub struct KnownWaits {
    by_key: HashMap<String, Known>,
}

impl KnownWaits {
    /// The keys to give the next poll.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.by_key.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// The poll's rows with every known wait filled in; what was read now is
    /// kept for the next polls, what no longer waits is forgotten.
    pub fn update(&mut self, rows: Vec<Row>, now_s: f64) -> Vec<Backend> {
        let mut before = std::mem::take(&mut self.by_key);
        rows.into_iter()
            .map(
                |Row {
                     mut backend,
                     key,
                     start_s,
                 }| {
                    let Some(key) = key else {
                        return backend;
                    };
                    match (&backend.waiting_for, before.remove(&key)) {
                        (Some(wait), _) => {
                            self.by_key.insert(
                                key,
                                Known {
                                    wait: wait.clone(),
                                    start_s,
                                    blocked_by: backend.blocked_by.clone(),
                                    polls: 0,
                                },
                            );
                        }
                        (None, Some(known)) => {
                            backend.waiting_for = Some(LockWait {
                                wait_s: known.start_s.map(|s| (now_s - s).max(0.0)),
                                ..known.wait.clone()
                            });
                            let polls = known.polls + 1;
                            // One read, then REREAD_AFTER - 1 polls from here.
                            if known.blocked_by == backend.blocked_by && polls + 1 < REREAD_AFTER {
                                self.by_key.insert(key, Known { polls, ..known });
                            }
                        }
                        // Not waiting any more by the time pg_locks was read.
                        (None, None) => {}
                    }
                    backend
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(blocked_by: &[i32], read: bool) -> Backend {
        Backend {
            pid: 7,
            backend_type: "client backend".into(),
            user: None,
            application: None,
            client: "local".into(),
            state: "active".into(),
            wait_event_type: Some("Lock".into()),
            wait_event: Some("relation".into()),
            xact_age_s: None,
            query_age_s: None,
            state_age_s: None,
            query: String::new(),
            blocked_by: blocked_by.to_vec(),
            waiting_for: read.then(|| LockWait {
                mode: "AccessExclusiveLock".into(),
                locktype: "relation".into(),
                relation: Some("t".into()),
                wait_s: Some(1.0),
            }),
        }
    }

    fn row(blocked_by: &[i32], read: bool) -> Row {
        Row {
            backend: waiter(blocked_by, read),
            key: Some("7/t0/relation".into()),
            start_s: read.then_some(100.0),
        }
    }

    #[test]
    fn a_wait_read_once_is_filled_in_with_its_age_until_its_blockers_change() {
        let mut k = KnownWaits::default();
        let first = k.update(vec![row(&[1], true)], 101.0);
        assert_eq!(
            first[0].waiting_for.as_ref().map(|w| w.mode.as_str()),
            Some("AccessExclusiveLock")
        );
        assert_eq!(k.keys(), ["7/t0/relation"]);
        let second = k.update(vec![row(&[1], false)], 105.0);
        let w = second[0].waiting_for.as_ref().expect("filled in");
        assert_eq!((w.relation.as_deref(), w.wait_s), (Some("t"), Some(5.0)));
        assert_eq!(k.keys(), ["7/t0/relation"]);
        // Other blockers: shown this once, read again at the next poll.
        let third = k.update(vec![row(&[2], false)], 106.0);
        assert!(third[0].waiting_for.is_some());
        assert!(k.keys().is_empty());
    }

    #[test]
    fn a_known_wait_is_read_again_after_a_number_of_polls_and_forgotten_when_it_ends() {
        let mut k = KnownWaits::default();
        k.update(vec![row(&[1], true)], 101.0);
        for _ in 1..REREAD_AFTER {
            k.update(vec![row(&[1], false)], 102.0);
        }
        assert!(k.keys().is_empty(), "read again after {REREAD_AFTER} polls");
        k.update(vec![row(&[1], true)], 101.0);
        let mut idle = waiter(&[], false);
        idle.wait_event_type = None;
        k.update(
            vec![Row {
                backend: idle,
                key: None,
                start_s: None,
            }],
            103.0,
        );
        assert!(k.keys().is_empty());
    }
}
