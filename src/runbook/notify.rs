//! `[notify]`: where a run's events are posted (a webhook whose URL carries
//! a token, so it normally comes from outside the reviewed runbook) and
//! which events. Not covered by the approval hash: an incident responder
//! rotates a webhook without asking for new approvals.

use std::path::PathBuf;

use serde::Serialize;

/// Where the webhook's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSource {
    /// `webhook_env = "NAME"`: the environment variable NAME.
    Env(String),
    /// `webhook_file = "…"`: a file in the runbook's folder (canonical
    /// path), read when the session starts, so a rotated URL needs no edit.
    File(PathBuf),
    /// `webhook = "…"`: written in the runbook (a local receiver); `check`
    /// warns, since a token there lives in the reviewed file.
    Literal(String),
}

/// An event a run can notify, named as the runbook names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// The session started (a run, a rehearsal or a rollback).
    Start,
    /// A step succeeded.
    Step,
    /// A step or a rollback failed.
    Failure,
    /// A pause step waits for the operator, or a backfill was paused.
    Paused,
    /// A step was rolled back.
    Rollback,
    /// A session started with `--emergency "REASON"`.
    Emergency,
    /// The session ended, with its outcome.
    End,
}

impl NotifyEvent {
    pub const NAMES: [&'static str; 7] = [
        "start",
        "step",
        "failure",
        "paused",
        "rollback",
        "emergency",
        "end",
    ];

    /// Without `events`: what a channel watching a change wants to hear,
    /// leaving out each step's success (a long runbook would flood it).
    pub const DEFAULT: [NotifyEvent; 6] = [
        NotifyEvent::Start,
        NotifyEvent::Failure,
        NotifyEvent::Paused,
        NotifyEvent::Rollback,
        NotifyEvent::Emergency,
        NotifyEvent::End,
    ];

    pub fn parse(s: &str) -> Option<NotifyEvent> {
        match s {
            "start" => Some(NotifyEvent::Start),
            "step" => Some(NotifyEvent::Step),
            "failure" => Some(NotifyEvent::Failure),
            "paused" => Some(NotifyEvent::Paused),
            "rollback" => Some(NotifyEvent::Rollback),
            "emergency" => Some(NotifyEvent::Emergency),
            "end" => Some(NotifyEvent::End),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// `[notify]` as the runbook says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySection {
    pub webhook: WebhookSource,
    /// The events posted, in the runbook's order.
    pub events: Vec<NotifyEvent>,
    /// Where the literal `webhook` is written (for `check`'s warning).
    pub literal_at: Option<crate::diag::Location>,
}

impl NotifySection {
    pub fn wants(&self, e: NotifyEvent) -> bool {
        self.events.contains(&e)
    }
}
