//! The forecast in the TUI: measured once when the session opens, on a
//! connection of its own (never the executor's, which must be free for the
//! steps; never the monitor's, whose polls keep their cadence), off the UI
//! loop; the step detail shows it before `r`.

use tokio::sync::mpsc::UnboundedSender;

use super::AppEvent;
use crate::analysis::StepAnalysis;
use crate::forecast::{Forecast, forecast_step, measure_tables};
use crate::pg::ConnSpec;

/// Where the session's forecast is.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ForecastState {
    /// No forecast is made (a screen without a session): nothing shown.
    #[default]
    None,
    /// Measuring the target.
    Measuring,
    /// One forecast per step, in runbook order.
    Ready(Vec<Forecast>),
    /// Why there is none: the plan goes on without it.
    Unavailable(String),
}

impl ForecastState {
    pub fn step(&self, index: usize) -> Option<&Forecast> {
        match self {
            ForecastState::Ready(f) => f.get(index),
            _ => None,
        }
    }
}

/// Measures every step's tables and sends the result to the UI loop.
pub async fn measure(spec: ConnSpec, steps: Vec<StepAnalysis>, tx: UnboundedSender<AppEvent>) {
    let state = match spec
        .with_application_name("pgpilot-forecast")
        .connect()
        .await
    {
        Ok(conn) => match measure_tables(&conn.client, &steps).await {
            Ok(sizes) => {
                ForecastState::Ready(steps.iter().map(|a| forecast_step(a, &sizes)).collect())
            }
            Err(e) => ForecastState::Unavailable(crate::text::redact(&e.to_string())),
        },
        Err(e) => ForecastState::Unavailable(e.to_string()),
    };
    let _ = tx.send(AppEvent::Forecast(state));
}
