//! Webhook notifications of a run's events (`[notify]`): a JSON POST per
//! event to a Slack or Teams incoming webhook, or any receiver. Delivery
//! never delays a step (see [`deliver`]); a notification that is not
//! delivered is audited (`notify_failure`) and the first one shown; the URL,
//! which carries a token, is only ever shown as its scheme and host.

pub mod deliver;
pub mod payload;
pub mod url;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use chrono::Utc;

use crate::audit::record::{Action, Context, Event};
use crate::regular_file::read_regular;
use crate::runbook::{NotifyEvent, NotifySection, WebhookSource};
pub use deliver::Failure;
use deliver::{Post, Shared};
use payload::Payload;

/// Notifications waiting to be posted; more are dropped (and counted).
const QUEUE: usize = 64;
/// How long the end of a session waits for the queue to drain.
pub const FLUSH: Duration = Duration::from_secs(2);
/// The largest `webhook_file` read.
const FILE_LIMIT: u64 = 64 * 1024;

pub struct Notifier {
    events: Vec<NotifyEvent>,
    tx: Option<SyncSender<Post>>,
    shared: Arc<Shared>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    shown_url: String,
}

impl Notifier {
    /// Reads the webhook's URL and starts the delivery thread; `show` tells
    /// the operator of the first failure. The error (the URL cannot be had)
    /// never holds the URL.
    pub fn start(
        section: &NotifySection,
        show: Box<dyn Fn(String) + Send + Sync>,
    ) -> Result<Notifier, String> {
        let url = webhook_url(&section.webhook)?;
        url::check(&url)
            .map_err(|why| format!("the webhook {}: {why}", source_name(&section.webhook)))?;
        let shared = Arc::new(Shared::new(show));
        let (tx, rx) = sync_channel(QUEUE);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let shown_url = url::shown(&url);
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("pgpilot-notify".into())
            .spawn(move || deliver::run(rx, url, thread_shared, done_tx))
            .map_err(|e| format!("cannot start the notification thread: {e}"))?;
        Ok(Notifier {
            events: section.events.clone(),
            tx: Some(tx),
            shared,
            done: Some(done),
            shown_url,
        })
    }

    /// The webhook as it may be shown: scheme and host.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Queues the notification an audit event makes, if the runbook wants
    /// it; never waits.
    pub fn audit_event(&self, ctx: &Context, ev: &Event) {
        let wanted = candidates(ctx, ev)
            .iter()
            .copied()
            .find(|e| self.events.contains(e));
        if let Some(event) = wanted {
            self.send(ctx, event, ev.action.as_str(), ev);
        }
    }

    /// Queues a `paused` notification: a pause step waits for the operator
    /// (`instructions` say what for).
    pub fn paused(&self, ctx: &Context, phase: &str, step: &str, instructions: &str) {
        if self.events.contains(&NotifyEvent::Paused) {
            let ev = Event {
                phase: Some(phase.into()),
                step: Some(step.into()),
                outcome: Some("waiting".into()),
                message: Some(instructions.into()),
                ..Event::new(Action::PauseAcknowledged)
            };
            self.send(ctx, NotifyEvent::Paused, "pause_waiting", &ev);
        }
    }

    fn send(&self, ctx: &Context, event: NotifyEvent, action: &str, ev: &Event) {
        let Some(tx) = &self.tx else { return };
        let body = Payload::new(ctx, event, action, ev, Utc::now()).to_json();
        match tx.try_send(Post { event, body }) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::SeqCst);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Failures since the last call, for the audit.
    pub fn take_failures(&self) -> Vec<Failure> {
        self.shared.take_failures()
    }

    /// At the session's end: waits up to `wait` for the queue to drain,
    /// then returns every failure not yet taken, one more for what was left
    /// undelivered, and the line to show if none was shown yet.
    pub async fn finish(&mut self, wait: Duration) -> (Vec<Failure>, Option<String>) {
        drop(self.tx.take());
        let drained = match self.done.take() {
            Some(done) => tokio::time::timeout(wait, done).await.is_ok(),
            None => true,
        };
        let mut failures = self.take_failures();
        let queued = self.shared.queued.load(Ordering::SeqCst);
        let settled = self.shared.settled.load(Ordering::SeqCst);
        let left = if drained {
            0
        } else {
            queued.saturating_sub(settled)
        };
        let dropped = self.shared.dropped.load(Ordering::SeqCst);
        let mut reasons = Vec::new();
        if left > 0 {
            reasons.push(format!(
                "{left} still queued when the session ended (no answer within {} s)",
                wait.as_secs()
            ));
        }
        if dropped > 0 {
            reasons.push(format!("{dropped} dropped: the queue of {QUEUE} was full"));
        }
        let mut note = None;
        if !reasons.is_empty() {
            let reason = format!("notifications not delivered: {}", reasons.join("; "));
            if self.shared.claim_show() {
                note = Some(format!(
                    "{reason}, to {}; the run was not held up by them",
                    self.shown_url
                ));
            }
            failures.push(Failure {
                event: None,
                reason,
            });
        }
        (failures, note)
    }
}

/// The events an audit event may be notified as, the preferred first.
fn candidates(ctx: &Context, ev: &Event) -> &'static [NotifyEvent] {
    match ev.action {
        Action::SessionStart if ctx.emergency.is_some() => {
            &[NotifyEvent::Emergency, NotifyEvent::Start]
        }
        Action::SessionStart => &[NotifyEvent::Start],
        Action::StepSuccess => &[NotifyEvent::Step],
        Action::StepFailure | Action::RollbackFailure => &[NotifyEvent::Failure],
        Action::RollbackSuccess => &[NotifyEvent::Rollback],
        Action::Progress if ev.outcome.as_deref() == Some("paused") => &[NotifyEvent::Paused],
        Action::SessionEnd => &[NotifyEvent::End],
        _ => &[],
    }
}

fn source_name(source: &WebhookSource) -> String {
    match source {
        WebhookSource::Env(name) => format!("in ${name}"),
        WebhookSource::File(path) => format!("in {}", path.display()),
        WebhookSource::Literal(_) => "in the runbook".into(),
    }
}

/// The URL from where the runbook says; errors never hold it.
fn webhook_url(source: &WebhookSource) -> Result<String, String> {
    let url = match source {
        WebhookSource::Env(name) => std::env::var(name).map_err(|_| {
            format!("the environment variable {name} that [notify] webhook_env names is not set; no notification is sent")
        })?,
        WebhookSource::File(path) => {
            let bytes = read_regular(path, FILE_LIMIT).map_err(|e| {
                format!("cannot read the webhook_file {}: {e}; no notification is sent", path.display())
            })?;
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or_default()
                .to_string()
        }
        WebhookSource::Literal(url) => url.clone(),
    };
    let url = url.trim().to_string();
    if url.is_empty() {
        return Err(format!(
            "the webhook {} is empty; no notification is sent",
            source_name(source)
        ));
    }
    Ok(url)
}

/// `plan`'s line for `[notify]`: the events and where they go, never the
/// URL of a file or the environment; a literal's scheme and host, warned.
pub fn plan_line(section: &NotifySection) -> String {
    let events: Vec<&str> = section.events.iter().map(|e| e.as_str()).collect();
    let to = match &section.webhook {
        WebhookSource::Env(name) => format!("the URL in ${}", crate::text::one_line(name)),
        WebhookSource::File(path) => format!(
            "the URL in {}",
            crate::text::one_line(&path.display().to_string())
        ),
        WebhookSource::Literal(url) => format!(
            "{} (warning: the URL is written in the runbook, so its token lives in the reviewed file)",
            url::shown(url)
        ),
    };
    format!("notify: {} posted to {to}", events.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emergency_start_is_posted_as_emergency_when_wanted() {
        let start = Event::new(Action::SessionStart);
        let plain = Context::default();
        assert_eq!(candidates(&plain, &start), [NotifyEvent::Start]);
        let emergency = Context {
            emergency: Some("orders down".into()),
            ..Context::default()
        };
        assert_eq!(
            candidates(&emergency, &start),
            [NotifyEvent::Emergency, NotifyEvent::Start]
        );
        let mut paused = Event::new(Action::Progress);
        assert!(candidates(&plain, &paused).is_empty());
        paused.outcome = Some("paused".into());
        assert_eq!(candidates(&plain, &paused), [NotifyEvent::Paused]);
        for failed in [Action::StepFailure, Action::RollbackFailure] {
            assert_eq!(
                candidates(&plain, &Event::new(failed)),
                [NotifyEvent::Failure]
            );
        }
    }

    #[test]
    fn plan_line_names_where_but_never_the_url() {
        let section = NotifySection {
            webhook: WebhookSource::Literal("https://hooks.example.com/services/SECRET".into()),
            events: vec![NotifyEvent::Start, NotifyEvent::End],
            literal_at: None,
        };
        let line = plan_line(&section);
        assert!(
            line.starts_with("notify: start, end posted to https://hooks.example.com (warning"),
            "{line}"
        );
        assert!(!line.contains("SECRET"), "{line}");
    }
}
