//! The JSON a webhook receives for one event. Its `text` is the one line
//! Slack and Teams incoming webhooks display; every other field is for
//! programs. Text from a runbook or the database is hostile: serde_json
//! escapes it for the JSON, and `text` is made one line with no control
//! characters and no password.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::audit::record::{AuditTarget, Context, Event};
use crate::runbook::NotifyEvent;
use crate::text::{one_line, redact};

/// The longest message (a failure's) carried into `text`.
const MESSAGE_CHARS: usize = 300;

/// One notification's body.
#[derive(Debug, Serialize)]
pub struct Payload {
    pub event: NotifyEvent,
    /// The audit action behind it (`step_success`, `session_end`, …), or
    /// `pause_waiting` while a pause step waits for the operator.
    pub action: String,
    pub runbook: Option<String>,
    pub ticket: Option<String>,
    pub session: String,
    pub phase: Option<String>,
    pub step: Option<String>,
    pub outcome: Option<String>,
    pub message: Option<String>,
    pub duration_ms: Option<u64>,
    /// The OS user running pgpilot.
    pub operator: String,
    /// The database role it connected as.
    pub role: Option<String>,
    /// Host, port and database; a connection's password is never part of it.
    pub target: Option<AuditTarget>,
    pub time: String,
    pub rehearsal: bool,
    pub emergency: Option<String>,
    pub text: String,
}

impl Payload {
    pub fn new(
        ctx: &Context,
        event: NotifyEvent,
        action: &str,
        ev: &Event,
        time: DateTime<Utc>,
    ) -> Payload {
        let clean = |s: &Option<String>| s.as_deref().map(|t| one_line(&redact(t)));
        let mut p = Payload {
            event,
            action: action.to_string(),
            runbook: clean(&ctx.runbook),
            ticket: clean(&ctx.ticket),
            session: ctx.session.clone(),
            phase: clean(&ev.phase),
            step: clean(&ev.step),
            outcome: clean(&ev.outcome),
            message: ev
                .message
                .as_deref()
                .map(|m| shorten(&one_line(&redact(m)))),
            duration_ms: ev.duration_ms,
            operator: one_line(&ctx.operator),
            role: clean(&ctx.role),
            target: ctx.target.as_ref().map(|t| AuditTarget {
                host: one_line(&redact(&t.host)),
                port: t.port,
                database: one_line(&redact(&t.database)),
            }),
            time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
            rehearsal: ctx.rehearsal,
            emergency: clean(&ctx.emergency),
            text: String::new(),
        };
        p.text = p.line();
        p
    }

    /// The JSON text posted.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// What a person reads in the channel, on one line.
    fn line(&self) -> String {
        let runbook = self.runbook.as_deref().unwrap_or("?");
        let step = self.step.as_deref().unwrap_or("?");
        let target = match &self.target {
            Some(t) => format!("{} on {}:{}", t.database, t.host, t.port),
            None => "the target".into(),
        };
        let outcome = self.outcome.as_deref().unwrap_or("");
        let message = self
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let body = match self.event {
            NotifyEvent::Start => {
                format!(
                    "{} started {outcome} of {runbook} on {target}",
                    self.operator
                )
            }
            NotifyEvent::Emergency => format!(
                "EMERGENCY {outcome} of {runbook} on {target} by {}: {}",
                self.operator,
                self.emergency.as_deref().unwrap_or("")
            ),
            NotifyEvent::Step => {
                let took = self
                    .duration_ms
                    .map(|ms| format!(" in {ms} ms"))
                    .unwrap_or_default();
                format!("step {step} of {runbook} done on {target}{took}")
            }
            NotifyEvent::Failure => {
                format!(
                    "FAILED: {} of step {step} of {runbook} on {target}{message}",
                    self.action
                )
            }
            NotifyEvent::Rollback => format!("step {step} of {runbook} rolled back on {target}"),
            NotifyEvent::Paused => format!(
                "{runbook} paused at step {step} on {target}, waiting for {}{message}",
                self.operator
            ),
            NotifyEvent::End => format!("{runbook} on {target} ended: {outcome}{message}"),
        };
        let mut line = String::from("pgpilot: ");
        if self.rehearsal {
            line.push_str("[REHEARSAL] ");
        }
        if let (Some(reason), false) = (&self.emergency, self.event == NotifyEvent::Emergency) {
            line.push_str(&format!("[EMERGENCY: {reason}] "));
        }
        line.push_str(&body);
        one_line(&line)
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Action;

    fn ctx() -> Context {
        Context {
            session: "s1".into(),
            operator: "alice".into(),
            role: Some("app".into()),
            client_host: "box".into(),
            target: Some(AuditTarget {
                host: "db1".into(),
                port: 5432,
                database: "shop".into(),
            }),
            runbook: Some("add-col\n\u{1b}[2J".into()),
            rehearsal: true,
            ..Context::default()
        }
    }

    #[test]
    fn hostile_text_stays_one_line_and_valid_json() {
        let mut ev = Event::new(Action::StepFailure);
        ev.step = Some("s\"1".into());
        ev.message = Some("boom\nALTER ROLE x PASSWORD 'hunter2'\u{202e}".into());
        let p = Payload::new(
            &ctx(),
            NotifyEvent::Failure,
            "step_failure",
            &ev,
            Utc::now(),
        );
        let json = p.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(!json.contains("hunter2"), "{json}");
        assert!(text.starts_with("pgpilot: [REHEARSAL] FAILED"), "{text}");
        assert_eq!(v["rehearsal"], true);
        assert_eq!(v["target"]["database"], "shop");
        assert_eq!(v["step"], "s\"1");
    }
}
