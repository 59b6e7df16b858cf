//! Posting notifications on a thread of their own, so that no step ever
//! waits for a webhook: the engine hands each one to a bounded queue
//! (dropped and counted when it is full), and this thread posts them in
//! order, each with a timeout and a few retries. The thread is detached: a
//! receiver that hangs cannot keep pgpilot from exiting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::runbook::NotifyEvent;

/// Per request, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the second and third attempt.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1500)];

/// One notification in the queue.
pub struct Post {
    pub event: NotifyEvent,
    pub body: String,
}

/// A notification that was not delivered, for the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The event not delivered; `None` for those left when the session ended.
    pub event: Option<NotifyEvent>,
    /// Why, with the URL reduced to its scheme and host.
    pub reason: String,
}

/// What the engine and the thread share.
pub struct Shared {
    /// Failures not yet audited.
    pub failures: Mutex<Vec<Failure>>,
    /// Handed to the queue, and delivered or failed (settled).
    pub queued: AtomicU64,
    pub settled: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// A failure has been shown to the operator (only the first one is).
    shown: AtomicBool,
    show: Box<dyn Fn(String) + Send + Sync>,
}

impl Shared {
    pub fn new(show: Box<dyn Fn(String) + Send + Sync>) -> Shared {
        Shared {
            failures: Mutex::new(Vec::new()),
            queued: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            shown: AtomicBool::new(false),
            show,
        }
    }

    /// Shows `message` if no failure has been shown yet; true if it was.
    pub fn show_once(&self, message: String) {
        if self.claim_show() {
            (self.show)(message);
        }
    }

    /// True the first time only: the caller shows a failure itself.
    pub fn claim_show(&self) -> bool {
        !self.shown.swap(true, Ordering::SeqCst)
    }

    pub fn take_failures(&self) -> Vec<Failure> {
        match self.failures.lock() {
            Ok(mut f) => std::mem::take(&mut *f),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn fail(&self, f: Failure, shown_url: &str) {
        self.show_once(format!(
            "notification of {} to {shown_url} failed: {}; the run goes on, and each notification not delivered is audited (notify_failure)",
            f.event.map_or("events", NotifyEvent::as_str),
            f.reason
        ));
        match self.failures.lock() {
            Ok(mut list) => list.push(f),
            Err(poisoned) => poisoned.into_inner().push(f),
        }
    }
}

/// The thread's body: posts each notification until the queue closes.
pub fn run(
    rx: Receiver<Post>,
    url: String,
    shared: Arc<Shared>,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("pgpilot/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent: ureq::Agent = config.into();
    let shown = super::url::shown(&url);
    for post in rx {
        if let Err(reason) = post_with_retries(&agent, &url, &post.body) {
            shared.fail(
                Failure {
                    event: Some(post.event),
                    reason,
                },
                &shown,
            );
        }
        shared.settled.fetch_add(1, Ordering::SeqCst);
    }
    let _ = done.send(());
}

/// Posts `body`; retries what may pass on a second try (no answer, a
/// server error, 429). The error names the scheme and host only.
fn post_with_retries(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        let (reason, retry) = match agent.post(url).content_type("application/json").send(body) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                (
                    format!("the receiver answered HTTP {status}"),
                    status >= 500 || status == 429,
                )
            }
            Err(e) => (reason_of(&e, url), true),
        };
        match BACKOFF.get(attempt) {
            Some(wait) if retry => std::thread::sleep(*wait),
            _ => {
                let tries = attempt + 1;
                return Err(if tries > 1 {
                    format!("{reason} ({tries} attempts)")
                } else {
                    reason
                });
            }
        }
        attempt += 1;
    }
}

fn reason_of(e: &ureq::Error, url: &str) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer within {} s", TIMEOUT.as_secs()),
        ureq::Error::HostNotFound => "the host was not found".into(),
        ureq::Error::ConnectionFailed => "the connection failed".into(),
        ureq::Error::Io(io) => super::url::scrub(&io.to_string(), url),
        other => super::url::scrub(&other.to_string(), url),
    }
}
