//! `[runbook] version` and `requires_version` (see `engine::versions`):
//! drift refused before the first change, the version recorded when every
//! change step is applied, and marked rolled back when none is any more.

use super::Exec;
use crate::audit::record::{Action, Event};
use crate::engine::state::Status;
use crate::engine::{EngineEvent, Outcome, versions};
use crate::pg::Severity;

impl Exec<'_> {
    /// `requires_version`: the database's current version must be exactly
    /// it (or already this runbook's own version, recorded by this runbook:
    /// a run again after completion).
    pub(super) async fn version_guard(&mut self) -> Result<(), Outcome> {
        let Some(required) = self.s.runbook.requires_version.clone() else {
            return Ok(());
        };
        let current = versions::current(self.client())
            .await
            .map_err(|e| Outcome::Failed(crate::pg::redact(&e.to_string())))?;
        let own = self.s.runbook.version.as_ref().map(|v| v.to_string());
        let ok = match &current {
            Some(c) => {
                c.version == required.to_string()
                    || (Some(&c.version) == own.as_ref() && c.runbook == self.s.runbook.id)
            }
            None => false,
        };
        let detail = match (&current, ok) {
            (Some(c), true) => format!("database is at {}", c.version),
            (Some(c), false) => format!(
                "database is at {}, this runbook requires {required}",
                c.version
            ),
            (None, _) => {
                format!("database has no recorded schema version, this runbook requires {required}")
            }
        };
        self.guard("schema version", ok, detail).await
    }

    /// Every change step applied: the runbook's version becomes the
    /// database's (once; a run again adds no row).
    pub(super) async fn record_version(&mut self) {
        let Some(version) = self.s.runbook.version.as_ref().map(|v| v.to_string()) else {
            return;
        };
        if self.rehearsal_open || !self.all_applied() {
            return;
        }
        let client = &self.s.conn.client;
        let before = match versions::current(client).await {
            Ok(c) => c,
            Err(e) => return self.version_warning(e),
        };
        if before
            .as_ref()
            .is_some_and(|c| c.runbook == self.s.runbook.id && c.version == version)
        {
            return;
        }
        if let Err(e) = versions::record(
            client,
            &self.s.runbook.id,
            &self.s.runbook.sha256,
            &version,
            self.s.runbook.change_type.as_str(),
            self.s.recorder.operator(),
            before.as_ref().map(|b| b.version.as_str()),
        )
        .await
        {
            return self.version_warning(e);
        }
        let message = match &before {
            Some(b) => format!("schema version {version} recorded (was {})", b.version),
            None => format!("schema version {version} recorded"),
        };
        self.version_notice(message).await;
    }

    /// After a rollback: when no change step is applied any more, the
    /// runbook's version row is marked rolled back.
    pub(super) async fn version_after_rollback(&mut self) {
        if self.rehearsal_open || self.s.runbook.version.is_none() || self.any_applied() {
            return;
        }
        match versions::roll_back(&self.s.conn.client, &self.s.runbook.id).await {
            Ok(0) => {}
            Ok(_) => {
                let now = versions::current(&self.s.conn.client)
                    .await
                    .ok()
                    .flatten()
                    .map_or("none".to_string(), |c| c.version);
                self.version_notice(format!(
                    "schema version of {} marked rolled back; the database is at {now}",
                    self.s.runbook.id
                ))
                .await;
            }
            Err(e) => self.version_warning(e),
        }
    }

    fn all_applied(&self) -> bool {
        self.s.runbook.steps().all(|(_, s)| {
            !s.kind.changes()
                || self
                    .states
                    .get(&s.id)
                    .is_some_and(|st| st.status == Status::Applied)
        })
    }

    fn any_applied(&self) -> bool {
        self.s.runbook.steps().any(|(_, s)| {
            s.kind.changes()
                && self
                    .states
                    .get(&s.id)
                    .is_some_and(|st| st.status == Status::Applied)
        })
    }

    async fn version_notice(&mut self, message: String) {
        self.emit(EngineEvent::Notice {
            step: None,
            severity: Severity::Info,
            message: message.clone(),
        });
        let mut ev = Event::new(Action::Notice);
        ev.outcome = Some("info".into());
        ev.message = Some(message);
        self.record(ev).await;
    }

    fn version_warning(&self, e: tokio_postgres::Error) {
        self.emit(EngineEvent::Notice {
            step: None,
            severity: Severity::Warning,
            message: format!(
                "cannot record the schema version: {}",
                crate::pg::redact(&e.to_string())
            ),
        });
    }
}
