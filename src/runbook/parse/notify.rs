//! `[notify]`: the webhook's source (environment, a file in the runbook's
//! folder, or a literal) and the events posted.

use std::path::Path;

use toml::Spanned;

use super::Parser;
use super::raw::RawNotify;
use crate::runbook::{NotifyEvent, NotifySection, WebhookSource};

const SOURCES_HELP: &str = "say where the URL comes from with one of: webhook_env = \"PGPILOT_WEBHOOK_URL\" (an environment variable), webhook_file = \"webhook.url\" (a file in the runbook's folder), webhook = \"http://localhost:9000/hook\" (a local receiver)";

impl Parser {
    pub(super) fn notify(&mut self, raw: Spanned<RawNotify>) -> Option<NotifySection> {
        let at = raw.span().start;
        let raw = raw.into_inner();
        let events = match &raw.events {
            None => NotifyEvent::DEFAULT.to_vec(),
            Some(list) => {
                let mut events = Vec::new();
                for e in list {
                    if let Some(ev) =
                        self.choice(e, &NotifyEvent::NAMES, "notify event", NotifyEvent::parse)
                        && !events.contains(&ev)
                    {
                        events.push(ev);
                    }
                }
                events
            }
        };
        let given: Vec<&Spanned<String>> = [&raw.webhook_env, &raw.webhook_file, &raw.webhook]
            .into_iter()
            .flatten()
            .collect();
        if given.len() != 1 {
            let (offset, message) = match given.get(1) {
                Some(second) => (
                    second.span().start,
                    "[notify] names its webhook twice".to_string(),
                ),
                None => (at, "[notify] has no webhook".to_string()),
            };
            self.error(offset, message, Some(SOURCES_HELP.into()));
            return None;
        }
        let mut literal_at = None;
        let webhook = if let Some(name) = &raw.webhook_env {
            let valid = !name.get_ref().is_empty()
                && name
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    name.span().start,
                    format!(
                        "webhook_env {:?} is not an environment variable name",
                        name.get_ref()
                    ),
                    Some("use letters, digits and '_', e.g. \"PGPILOT_WEBHOOK_URL\"".into()),
                );
                return None;
            }
            WebhookSource::Env(name.get_ref().clone())
        } else if let Some(file) = &raw.webhook_file {
            WebhookSource::File(self.webhook_path(file)?)
        } else if let Some(url) = &raw.webhook {
            if let Err(why) = crate::notify::url::check(url.get_ref()) {
                self.error(
                    url.span().start,
                    format!("webhook: {why}"),
                    Some(
                        "write an http:// or https:// URL, e.g. \"http://localhost:9000/hook\""
                            .into(),
                    ),
                );
                return None;
            }
            literal_at = Some(self.at(url.span().start));
            WebhookSource::Literal(url.get_ref().clone())
        } else {
            return None;
        };
        Some(NotifySection {
            webhook,
            events,
            literal_at,
        })
    }

    /// `webhook_file`: relative to the runbook, inside its folder (or
    /// `sql_root`), like a step's SQL file. Read when a session starts.
    fn webhook_path(&mut self, file: &Spanned<String>) -> Option<std::path::PathBuf> {
        let at = file.span().start;
        let written = Path::new(file.get_ref());
        let help = "keep the file that holds the webhook's URL in the runbook's folder and name it relative to the runbook, e.g. webhook_file = \"webhook.url\"";
        if written.as_os_str().is_empty() || written.is_absolute() {
            self.error(
                at,
                format!(
                    "webhook_file {:?} is not a file relative to the runbook's folder",
                    file.get_ref()
                ),
                Some(help.into()),
            );
            return None;
        }
        let shown = self.folder().join(written);
        let real = match std::fs::canonicalize(&shown) {
            Ok(r) => r,
            Err(e) => {
                self.error(
                    at,
                    format!("webhook_file: cannot find {}: {e}", shown.display()),
                    Some(help.into()),
                );
                return None;
            }
        };
        if !self.sql_roots.iter().any(|root| real.starts_with(root)) {
            self.error(
                at,
                format!(
                    "webhook_file {} is outside the runbook's folder (it resolves to {})",
                    shown.display(),
                    real.display()
                ),
                Some(help.into()),
            );
            return None;
        }
        if !real.is_file() {
            self.error(
                at,
                format!("webhook_file {} is not a file", shown.display()),
                Some(help.into()),
            );
            return None;
        }
        Some(real)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::runbook::{NotifyEvent, WebhookSource, parse_str};

    const BODY: &str = "[runbook]\nid = \"r\"\ntitle = \"T\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"check\"\nsql = \"SELECT 1\"\n";

    fn with(notify: &str) -> String {
        BODY.replace("[[phase]]", &format!("[notify]\n{notify}\n[[phase]]"))
    }

    #[test]
    fn env_webhook_with_default_events() {
        let r = parse_str(
            Path::new("t.toml"),
            with("webhook_env = \"PGPILOT_WEBHOOK_URL\""),
        )
        .unwrap();
        let n = r.notify.unwrap();
        assert_eq!(n.webhook, WebhookSource::Env("PGPILOT_WEBHOOK_URL".into()));
        assert_eq!(n.events, NotifyEvent::DEFAULT);
        assert!(!n.wants(NotifyEvent::Step));
        assert!(n.literal_at.is_none());
    }

    #[test]
    fn unknown_event_names_its_place() {
        let errs = parse_str(
            Path::new("t.toml"),
            with("webhook_env = \"X\"\nevents = [\"start\", \"finsh\"]"),
        )
        .unwrap_err();
        assert_eq!(
            (errs[0].location.line, errs[0].location.col),
            (6, 20),
            "{}",
            errs[0]
        );
        assert!(errs[0].message.contains("\"finsh\""), "{}", errs[0]);
        assert!(
            errs[0].help.as_deref().unwrap_or("").contains("end"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn exactly_one_webhook_source() {
        let errs = parse_str(Path::new("t.toml"), with("events = [\"end\"]")).unwrap_err();
        assert!(errs[0].message.contains("has no webhook"), "{}", errs[0]);
        let errs = parse_str(
            Path::new("t.toml"),
            with("webhook_env = \"X\"\nwebhook = \"http://localhost:1/h\""),
        )
        .unwrap_err();
        assert_eq!(errs[0].location.line, 6, "{}", errs[0]);
        let errs = parse_str(Path::new("t.toml"), with("webhook = \"ftp://h/x\"")).unwrap_err();
        assert!(errs[0].message.contains("webhook"), "{}", errs[0]);
        let r = parse_str(
            Path::new("t.toml"),
            with("webhook = \"http://localhost:9/h\""),
        )
        .unwrap();
        assert_eq!(r.notify.unwrap().literal_at.map(|l| l.line), Some(5));
    }

    #[test]
    fn webhook_file_stays_in_the_runbooks_folder() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("rb");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(inner.join("hook.url"), "http://localhost:9/h\n").unwrap();
        std::fs::write(dir.path().join("outside.url"), "http://localhost:9/h\n").unwrap();
        let path = inner.join("r.toml");
        let r = parse_str(&path, with("webhook_file = \"hook.url\"")).unwrap();
        assert!(matches!(r.notify.unwrap().webhook, WebhookSource::File(_)));
        let errs = parse_str(&path, with("webhook_file = \"../outside.url\"")).unwrap_err();
        assert!(
            errs[0].message.contains("outside the runbook's folder"),
            "{}",
            errs[0]
        );
        assert_eq!(errs[0].location.line, 5);
    }
}
