//! Inside a change window, before a step that would outlast it: the step's
//! last known duration (an earlier run's or a rehearsal's, from
//! `pgpilot.audit_log` and the step's state) or its forecast (sizes and
//! throughput measured on the target, `crate::forecast`) against the time
//! the window has left by the server's clock. Longer: ask (continue or
//! stop); with no one to ask, stop before the step (refused, exit 3).
//! This is a question, not a destructive confirmation: no phrase, no flag.

use std::time::Duration;

use super::{Exec, step_event};
use crate::analysis::StepAnalysis;
use crate::audit::record::Action;
use crate::engine::{Ask, Outcome, Reply};
use crate::runbook::{Phase, Step, format_duration};

/// The latest successful run of the step on this target, rehearsals too.
const LAST_DURATION_SQL: &str = "
SELECT duration_ms FROM pgpilot.audit_log
 WHERE runbook = $1 AND step = $2 AND action = 'step_success' AND duration_ms IS NOT NULL
 ORDER BY ts DESC LIMIT 1";

impl Exec<'_> {
    pub(super) async fn window_left_check(
        &mut self,
        phase: &Phase,
        step: &Step,
        a: &StepAnalysis,
    ) -> Result<(), Outcome> {
        let Some(end) = self.window_end else {
            return Ok(());
        };
        if self.rehearsal_open || !step.kind.changes() {
            return Ok(());
        }
        let Some((expected, source)) = self.expected_duration(step, a).await else {
            return Ok(());
        };
        let now = self.server_now().await?;
        let left = (end - now).to_std().unwrap_or_default();
        if expected <= left {
            return Ok(());
        }
        let (expected_text, left_text) = (round(expected), round(left));
        let reply = self
            .ask(Ask::PastWindow {
                step: step.id.clone(),
                expected: expected_text.clone(),
                source: source.clone(),
                left: left_text.clone(),
            })
            .await;
        let go_on = matches!(reply, Reply::Run);
        let said = format!(
            "window: {} may take {expected_text} ({source}); the window closes in {left_text}",
            step.id
        );
        let mut ev = step_event(Action::Guard, phase, step);
        ev.outcome = Some(if go_on { "continue" } else { "stop" }.into());
        ev.message = Some(said.clone());
        self.record(ev).await;
        if go_on {
            Ok(())
        } else {
            Err(Outcome::Refused(format!(
                "{said}: stopped before the step; run it in the next window"
            )))
        }
    }

    /// The longer of the step's last known duration and its forecast.
    async fn expected_duration(&self, step: &Step, a: &StepAnalysis) -> Option<(Duration, String)> {
        let mut best: Option<(Duration, String)> = None;
        let mut offer = |d: Duration, why: String| {
            if best.as_ref().is_none_or(|(b, _)| d > *b) {
                best = Some((d, why));
            }
        };
        let present = self
            .client()
            .query_one(
                "SELECT to_regclass('pgpilot.audit_log') IS NOT NULL AS present",
                &[],
            )
            .await
            .and_then(|r| r.try_get::<_, bool>("present"))
            .unwrap_or(false);
        if present
            && let Ok(Some(row)) = self
                .client()
                .query_opt(LAST_DURATION_SQL, &[&self.s.runbook.id, &step.id])
                .await
            && let Ok(ms) = row.try_get::<_, i64>("duration_ms")
        {
            offer(
                Duration::from_millis(ms.max(0) as u64),
                "its last run on this target".into(),
            );
        }
        if let Some(ms) = self.states.get(&step.id).and_then(|s| s.duration_ms) {
            offer(
                Duration::from_millis(ms.max(0) as u64),
                "its recorded state".into(),
            );
        }
        if let Ok(sizes) = crate::forecast::measure_tables(self.client(), [a]).await
            && let Some(s) = crate::forecast::forecast_step(a, &sizes).seconds
            && s.is_finite()
            && s > 0.0
        {
            offer(Duration::from_secs_f64(s), "forecast".into());
        }
        best
    }
}

/// Whole seconds (a window is minutes long; milliseconds say nothing).
fn round(d: Duration) -> String {
    format_duration(Duration::from_secs(d.as_secs().max(1)))
}
