//! The pre-step blocker guard's question to the server: which sessions hold
//! a lock on a relation that conflicts with the lock a step is about to take.

use serde::Serialize;
use tokio_postgres::Client;

use super::{SessionName, query, shown};
use crate::analysis::{LockMode, RelationName};

/// A session holding a lock that a step is about to need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    pub pid: i32,
    /// pg_stat_activity.backend_type: an autovacuum worker holds locks too.
    pub backend_type: String,
    pub user: Option<String>,
    pub application: String,
    pub client: String,
    pub state: String,
    /// What it waits for now, if anything (`Client` / `ClientRead`: idle,
    /// waiting for its client to send the next command).
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub mode: String,
    /// The relation in SQL form (`public."Orders"`), as the step names it.
    pub relation: String,
    pub xact_age_s: Option<f64>,
    pub query: String,
}

impl Holder {
    /// `pid 123 (nightly-report)`: the pid and the name the session gave
    /// itself (application_name), else its user.
    pub fn named(&self) -> String {
        let name = if self.application.is_empty() {
            self.user.as_deref().unwrap_or("?")
        } else {
            &self.application
        };
        format!("pid {} ({name})", self.pid)
    }

    /// Who it is, as the lock panels name a session.
    pub fn name(&self) -> SessionName {
        SessionName {
            application: Some(self.application.clone()).filter(|a| !a.is_empty()),
            user: self.user.clone(),
            client: self.client.clone(),
            backend_type: self.backend_type.clone(),
            wait_event_type: self.wait_event_type.clone(),
            wait_event: self.wait_event.clone(),
        }
    }

    /// As [`super::Backend::made_safe`].
    fn made_safe(mut self) -> Holder {
        self.query = shown(&self.query);
        self.user = self.user.as_deref().map(shown);
        self.application = shown(&self.application);
        self.client = shown(&self.client);
        self.state = shown(&self.state);
        self.backend_type = shown(&self.backend_type);
        self.wait_event_type = self.wait_event_type.as_deref().map(shown);
        self.wait_event = self.wait_event.as_deref().map(shown);
        self.relation = shown(&self.relation);
        self
    }
}

/// Sessions that hold locks on `relation` conflicting with `mode`: they would
/// make a step wait, and every later query on the table wait behind it.
pub async fn holders(
    client: &Client,
    relation: &RelationName,
    mode: LockMode,
) -> Result<Vec<Holder>, tokio_postgres::Error> {
    let conflicting: Vec<String> = LockMode::ALL
        .into_iter()
        .filter(|m| m.conflicts_with(mode))
        .map(|m| m.name().to_string())
        .collect();
    // The SQL form is what to_regclass reads back to this very relation.
    let relation = relation.to_string();
    let rows = client
        .query(query::HOLDERS_SQL, &[&relation, &conflicting])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Holder {
                pid: r.try_get("pid")?,
                backend_type: r
                    .try_get::<_, Option<String>>("backend_type")?
                    .unwrap_or_default(),
                user: r.try_get("user_name")?,
                application: r.try_get("application")?,
                client: r.try_get("client")?,
                state: r.try_get("state")?,
                wait_event_type: r.try_get("wait_event_type")?,
                wait_event: r.try_get("wait_event")?,
                mode: r.try_get("mode")?,
                relation: relation.clone(),
                xact_age_s: r.try_get("xact_age_s")?,
                query: r.try_get::<_, Option<String>>("query")?.unwrap_or_default(),
            })
        })
        .map(|h| h.map(Holder::made_safe))
        .collect()
}
