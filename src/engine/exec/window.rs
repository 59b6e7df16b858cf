//! The change-window guard: a run starts only inside one of the runbook's
//! `[target] windows`, by the database server's clock. A rehearsal and a
//! rollback are never held, and `--emergency` waives it (loudly).

use chrono::{DateTime, Utc};

use super::Exec;
use super::sql::SqlFailure;
use crate::engine::{EngineEvent, Mode, Outcome};
use crate::governance::window::{WindowStatus, describe_inside, describe_next, status};

impl Exec<'_> {
    pub(super) async fn window_guard(&mut self) -> Result<(), Outcome> {
        let target = &self.s.runbook.target;
        let (Some(tz), false) = (target.timezone, target.windows.is_empty()) else {
            return Ok(());
        };
        if self.s.options.rehearse || !matches!(self.s.options.mode, Mode::Run { .. }) {
            return Ok(());
        }
        if self.s.options.emergency.is_some() {
            return self
                .guard("window", true, "waived by --emergency".into())
                .await;
        }
        let windows = target.windows.clone();
        let now = self.server_now().await?;
        match status(&windows, tz, now) {
            WindowStatus::Inside(o) => {
                let closes_in = (o.end - now).to_std().unwrap_or_default();
                self.window_end = Some(o.end);
                self.emit(EngineEvent::WindowOpen {
                    window: format!("{} {}", o.window, tz.name()),
                    closes_in,
                });
                self.guard("window", true, describe_inside(&o, tz, now))
                    .await
            }
            WindowStatus::Outside(next) => {
                let detail = match next {
                    Some(o) => format!(
                        "outside every change window; {}; --emergency \"REASON\" waives it",
                        describe_next(&o, tz, now)
                    ),
                    None => "outside every change window".into(),
                };
                self.guard("window", false, detail).await
            }
        }
    }

    /// The database server's clock (in test builds, `PGPILOT_TEST_NOW`).
    pub(super) async fn server_now(&self) -> Result<DateTime<Utc>, Outcome> {
        let at = crate::governance::store::clock_override();
        let text: String = self
            .client()
            .query_one(
                "SELECT to_char(coalesce($1::text::timestamptz, now()) AT TIME ZONE 'UTC',
                                'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS now",
                &[&at],
            )
            .await
            .and_then(|r| r.try_get("now"))
            .map_err(|e| {
                Outcome::Failed(format!(
                    "cannot read the server's clock: {}",
                    SqlFailure::from_pg(&e).message
                ))
            })?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Outcome::Failed(format!("cannot read the server's clock {text:?}: {e}")))
    }
}
