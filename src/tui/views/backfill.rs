//! A running backfill's gauge on its step: a bar, then percent, keys walked
//! of the estimate, rate and ETA (the same words as the headless line), the
//! next batch's size, whether the operator paused it and whether it waits
//! by itself (a standby's lag).

use ratatui::text::{Line, Span};

use crate::engine::progress::describe;
use crate::tui::step_view::BackfillProgress;
use crate::tui::theme;

/// Cells in the bar.
const BAR: usize = 20;

pub fn backfill_gauge(p: &BackfillProgress) -> Line<'static> {
    let filled = (p.done.saturating_mul(BAR as u64))
        .checked_div(p.total_estimate)
        .map_or(BAR, |n| (n as usize).min(BAR));
    Line::from(vec![
        Span::styled("█".repeat(filled), theme::good()),
        Span::styled("░".repeat(BAR - filled), theme::dim()),
        Span::raw(format!(
            " {}, batch {}",
            // While it waits by itself the rate and ETA of its batches say
            // nothing of when it ends.
            describe(
                p.done,
                p.total_estimate,
                p.rate_per_s,
                if p.waiting.is_some() { None } else { p.eta }
            ),
            p.batch_size
        )),
        if p.paused {
            Span::styled(" PAUSED", theme::warn())
        } else {
            Span::raw("")
        },
        match &p.waiting {
            Some(why) => Span::styled(
                format!(" WAITING: {}", crate::text::one_line(why)),
                theme::warn(),
            ),
            None => Span::raw(""),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_gauge_fills_with_the_percent_and_says_the_eta() {
        let line = backfill_gauge(&BackfillProgress {
            done: 5000,
            total_estimate: 20000,
            rate_per_s: 1000.0,
            eta: Some(Duration::from_secs(15)),
            batch_size: 1000,
            paused: false,
            waiting: None,
        });
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(
            text,
            format!(
                "{}{} 25% (5000 of about 20000 rows), 1000 rows/s, ETA 15s, batch 1000",
                "█".repeat(5),
                "░".repeat(15)
            )
        );
    }

    #[test]
    fn a_paused_gauge_says_so() {
        let line = backfill_gauge(&BackfillProgress {
            done: 5000,
            total_estimate: 20000,
            rate_per_s: 0.0,
            eta: None,
            batch_size: 2000,
            paused: true,
            waiting: None,
        });
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(text.ends_with(", batch 2000 PAUSED"), "{text}");
    }

    #[test]
    fn a_walk_waiting_on_a_standby_says_so() {
        let line = backfill_gauge(&BackfillProgress {
            done: 5000,
            total_estimate: 20000,
            rate_per_s: 900.0,
            eta: Some(Duration::from_secs(16)),
            batch_size: 2000,
            paused: false,
            waiting: Some("standby lag".into()),
        });
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(
            text.ends_with("ETA unknown, batch 2000 WAITING: standby lag"),
            "{text}"
        );
    }
}
