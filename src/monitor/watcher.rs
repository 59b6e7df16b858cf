//! The monitor's connection kept alive. A [`Watcher`] holds what it needs to
//! connect again (the [`ConnSpec`]); a poll that finds the connection closed
//! or broken (its backend terminated, the server restarted, the network
//! gone) turns into [`Feed::Disconnected`] and reconnect attempts with
//! backoff, each re-running the session setup of [`Monitor::new`]. The run
//! screen's lock panel, `pgpilot monitor`'s screen and its lines mode all
//! poll through it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, timeout};
use tokio_postgres::Client;
use tokio_postgres::error::Severity;

use super::{Monitor, Signal, Snapshot, signal_backend};
use crate::backoff::Backoff;
use crate::pg::{ConnSpec, Notice, redact};

/// The application_name of the monitor's connection (DESIGN.md, Execution).
pub const APPLICATION_NAME: &str = "pgpilot-monitor";

/// A connection attempt (connect and session setup) that takes longer
/// than this counts as failed: the screens stay responsive, and a host that
/// swallows packets is tried again later rather than waited on.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// A poll the server has not answered by now is on a dead connection: the
/// poll's own statement_timeout (500 ms) would have ended it long before.
const POLL_LIMIT: Duration = Duration::from_secs(5);

/// What the lock panels show after a poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// The server as it is now (boxed: it is most of the feed's size).
    Snapshot(Box<Snapshot>),
    /// The connection is up but the poll failed (for example its 500 ms
    /// statement_timeout on a very busy server); the next poll tries again.
    PollFailed { error: String, since: DateTime<Utc> },
    /// The connection is lost; reconnect attempt `attempt` comes next.
    Disconnected {
        attempt: u32,
        since: DateTime<Utc>,
        error: String,
    },
}

impl Feed {
    /// The snapshot, when the feed is one: never a stale one.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        match self {
            Feed::Snapshot(s) => Some(s.as_ref()),
            Feed::PollFailed { .. } | Feed::Disconnected { .. } => None,
        }
    }
}

/// A change worth one log line: said when it happens, not at every poll.
#[derive(Debug, Clone, PartialEq)]
pub enum News {
    /// The first connection could not be made; attempts go on.
    CannotConnect { error: String },
    /// The connection was lost; attempts to reconnect begin.
    Lost { error: String },
    /// Connected again after `attempts` attempts, `after` the loss.
    Reconnected { attempts: u32, after: Duration },
    /// Polls began to fail on a connection that is still up.
    PollFailing { error: String },
}

/// An outage of the monitor's connection.
struct Outage {
    /// The reconnect attempt that comes next (1 for the first).
    attempt: u32,
    since: DateTime<Utc>,
    lost_at: Instant,
    error: String,
}

// One per watcher: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Link {
    /// No connection yet, or one dropped with a poll abandoned midway: the
    /// next poll connects.
    Closed,
    Up {
        session: Monitor,
        /// The connection's server messages: the last one says why it
        /// ended (`pg_terminate_backend` sends FATAL 57P01).
        notices: UnboundedReceiver<Notice>,
        /// The poll failures going on, if any: (error, since).
        failing: Option<(String, DateTime<Utc>)>,
    },
    Down(Outage),
}

/// The monitor's connection, polled through [`Watcher::next`] when
/// [`Watcher::due`] says so, and reconnected when it is lost.
pub struct Watcher {
    spec: ConnSpec,
    long_transaction: Duration,
    interval: Duration,
    executor_pid: Option<i32>,
    link: Link,
    due: Instant,
    /// Each poll also reads the standbys (a second query).
    replicas: bool,
}

impl Watcher {
    /// A watcher that connects (as `pgpilot-monitor`) at its first poll,
    /// and keeps trying if it cannot.
    pub fn new(spec: &ConnSpec, long_transaction: Duration, interval: Duration) -> Watcher {
        Watcher {
            spec: spec.with_application_name(APPLICATION_NAME),
            long_transaction,
            interval,
            executor_pid: None,
            link: Link::Closed,
            due: Instant::now(),
            replicas: false,
        }
    }

    /// A watcher connected now; the error (for the user) if it cannot be.
    pub async fn connect(
        spec: &ConnSpec,
        long_transaction: Duration,
        interval: Duration,
    ) -> Result<Watcher, String> {
        let mut watcher = Watcher::new(spec, long_transaction, interval);
        let (session, notices) = watcher.open().await?;
        watcher.link = Link::Up {
            session,
            notices,
            failing: None,
        };
        Ok(watcher)
    }

    /// When the next poll (or reconnect attempt) is due.
    pub fn due(&self) -> Instant {
        self.due
    }

    /// The executor's backend, marked in snapshots and never signalled.
    /// Kept across reconnects.
    pub fn set_executor(&mut self, pid: Option<i32>) {
        self.executor_pid = pid;
    }

    /// Whether each poll also reads the standbys (`monitor --once`, a
    /// runbook with `max_replica_lag`); the plain poll does not.
    pub fn watch_replicas(&mut self, on: bool) {
        self.replicas = on;
    }

    /// The monitor's own backend pid, while connected.
    pub fn pid(&self) -> Option<i32> {
        self.session().map(Monitor::pid)
    }

    /// The monitor's connection, while connected.
    pub fn client(&self) -> Option<&Client> {
        self.session().map(Monitor::client)
    }

    fn session(&self) -> Option<&Monitor> {
        match &self.link {
            Link::Up { session, .. } => Some(session),
            Link::Closed | Link::Down(_) => None,
        }
    }

    /// One poll, or, while disconnected, one reconnect attempt (and a poll
    /// if it succeeds). Returns what to show and, when the connection's
    /// state changed, the news to log once.
    pub async fn next(&mut self) -> (Feed, Option<News>) {
        let started = Instant::now();
        // Taken out for the poll: if this future is dropped midway, the
        // session goes with it and the next poll connects afresh.
        let link = std::mem::replace(&mut self.link, Link::Closed);
        let ((mut session, mut notices), failing, outage) = match link {
            Link::Up {
                session,
                notices,
                failing,
            } => ((session, notices), failing, None),
            Link::Closed => match self.open().await {
                Ok(opened) => (opened, None, None),
                Err(error) => {
                    let news = News::CannotConnect {
                        error: error.clone(),
                    };
                    return (self.lose(error, None), Some(news));
                }
            },
            Link::Down(outage) => match self.open().await {
                Ok(opened) => (opened, None, Some(outage)),
                Err(error) => return (self.lose(error, Some(outage)), None),
            },
        };
        self.due = started + self.interval;
        session.executor_pid = self.executor_pid;
        let polled = timeout(POLL_LIMIT, session.poll_with(self.replicas)).await;
        let reconnected = outage.as_ref().map(|o| News::Reconnected {
            attempts: o.attempt,
            after: o.lost_at.elapsed(),
        });
        match polled {
            Ok(Ok(snapshot)) => {
                self.link = Link::Up {
                    session,
                    notices,
                    failing: None,
                };
                (Feed::Snapshot(Box::new(snapshot)), reconnected)
            }
            Ok(Err(e)) if !connection_lost(session.client(), &e) => {
                let error = redact(&e.to_string());
                let news = match (&reconnected, &failing) {
                    (Some(_), _) => reconnected,
                    (None, Some((said, _))) if *said == error => None,
                    (None, _) => Some(News::PollFailing {
                        error: error.clone(),
                    }),
                };
                let since = failing.map_or_else(Utc::now, |(_, since)| since);
                self.link = Link::Up {
                    session,
                    notices,
                    failing: Some((error.clone(), since)),
                };
                (Feed::PollFailed { error, since }, news)
            }
            Ok(Err(e)) => {
                drop(session);
                let error = with_reason(redact(&e.to_string()), &mut notices);
                let news = outage.is_none().then(|| News::Lost {
                    error: error.clone(),
                });
                (self.lose(error, outage), news)
            }
            Err(_) => {
                drop(session);
                let error = format!(
                    "no answer to the poll within {} s; the connection is taken for lost",
                    POLL_LIMIT.as_secs()
                );
                let news = outage.is_none().then(|| News::Lost {
                    error: error.clone(),
                });
                (self.lose(error, outage), news)
            }
        }
    }

    /// Cancels or terminates a backend on the monitor's connection — never
    /// the executor's nor the monitor's own, whatever its pid is since the
    /// last reconnect.
    pub async fn signal(&self, pid: i32, signal: Signal) -> Result<bool, String> {
        let Some(session) = self.session() else {
            return Err(
                "the monitor is disconnected and reconnecting; try again once the lock panel \
                 shows sessions"
                    .to_string(),
            );
        };
        let protected: Vec<i32> = [self.executor_pid, Some(session.pid())]
            .into_iter()
            .flatten()
            .collect();
        signal_backend(session.client(), pid, signal, &protected).await
    }

    /// Connects and sets the session up (timeouts, pid, the poll's SQL for
    /// this server's version), within [`CONNECT_LIMIT`].
    async fn open(&self) -> Result<(Monitor, UnboundedReceiver<Notice>), String> {
        let opening = async {
            let conn = self.spec.connect().await.map_err(|e| e.to_string())?;
            let notices = conn.notices;
            let mut session = Monitor::new(conn.client, self.long_transaction)
                .await
                .map_err(|e| {
                    format!(
                        "cannot set up the monitor session: {}",
                        redact(&e.to_string())
                    )
                })?;
            session.executor_pid = self.executor_pid;
            Ok((session, notices))
        };
        timeout(CONNECT_LIMIT, opening).await.unwrap_or_else(|_| {
            Err(format!(
                "{} did not answer within {} s",
                self.spec.redacted(),
                CONNECT_LIMIT.as_secs()
            ))
        })
    }

    /// The connection is down: a new outage, or the next attempt of the
    /// one going on, after its backoff.
    fn lose(&mut self, error: String, outage: Option<Outage>) -> Feed {
        let outage = match outage {
            Some(o) => Outage {
                attempt: o.attempt.saturating_add(1),
                error,
                ..o
            },
            None => Outage {
                attempt: 1,
                since: Utc::now(),
                lost_at: Instant::now(),
                error,
            },
        };
        self.due = Instant::now() + Backoff::MONITOR_RECONNECT.delay(outage.attempt);
        let feed = Feed::Disconnected {
            attempt: outage.attempt,
            since: outage.since,
            error: outage.error.clone(),
        };
        self.link = Link::Down(outage);
        feed
    }
}

/// Whether a failed poll means the connection is gone. An ERROR (a
/// statement_timeout, say) leaves the session usable; a FATAL or PANIC
/// (`pg_terminate_backend` is FATAL 57P01), a closed connection or an I/O
/// error does not.
fn connection_lost(client: &Client, e: &tokio_postgres::Error) -> bool {
    if client.is_closed() || e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => !matches!(db.parsed_severity(), Some(Severity::Error)),
        None => true,
    }
}

/// `error`, with the server's reason when the connection's last message
/// gives one ("connection closed" alone does not say who closed it).
fn with_reason(error: String, notices: &mut UnboundedReceiver<Notice>) -> String {
    let mut reason = None;
    while let Ok(n) = notices.try_recv() {
        if matches!(
            n.severity,
            crate::pg::Severity::Fatal | crate::pg::Severity::Panic | crate::pg::Severity::Error
        ) {
            reason = Some(n);
        }
    }
    match reason {
        Some(n) if !error.contains(&n.message) => format!("{error} ({} [{}])", n.message, n.code),
        _ => error,
    }
}
