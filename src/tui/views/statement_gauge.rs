//! The gauge of a running statement that reports progress (CREATE INDEX,
//! REINDEX, VACUUM, CLUSTER, ANALYZE, COPY), from the monitor's snapshot
//! for the executor's pid: phase, done/total, percent and ETA; in a
//! waiting phase, the session it waits for and the keys that end it.
//! Backfill steps have a gauge of their own.

use ratatui::text::{Line, Span};

use crate::monitor::CommandProgress;
use crate::monitor::text::age;
use crate::tui::keys::{Action, Binding, label};
use crate::tui::theme;

/// Cells of the bar.
const BAR: usize = 20;

/// The gauge's lines for `p` (its texts made safe by the monitor).
pub fn statement_gauge(p: &CommandProgress, bindings: &[Binding]) -> Vec<Line<'static>> {
    let filled = p
        .percent
        .map_or(0, |pc| ((pc / 100.0) * BAR as f64).round() as usize)
        .min(BAR);
    let mut head = vec![
        Span::styled(
            format!("{}{}", "█".repeat(filled), "░".repeat(BAR - filled)),
            theme::good(),
        ),
        Span::raw(match p.percent {
            Some(pc) => format!(" {pc:5.1} % "),
            None => " ".to_string(),
        }),
        Span::styled(p.phase.clone(), theme::title()),
    ];
    if let (Some(d), Some(t)) = (p.done, p.total) {
        head.push(Span::raw(format!(" {d}/{t}")));
    }
    head.push(Span::styled(
        match p.eta_s {
            Some(e) => format!(", ETA {}", age(e)),
            None if p.waiting() => ", waiting".to_string(),
            None => ", ETA …".to_string(),
        },
        theme::dim(),
    ));
    let mut lines = vec![Line::from(head)];
    if let Some(l) = &p.locker {
        let open = l
            .xact_age_s
            .map(|a| format!(", transaction open {}", age(a)))
            .unwrap_or_default();
        lines.push(Line::from(Span::styled(
            format!(
                "waits for {}{open}: {}",
                l.named(),
                super::one_line(&l.query)
            ),
            theme::warn(),
        )));
        lines.push(Line::from(Span::styled(
            format!(
                "lock_timeout ends the build if it runs out first; to let it finish, end that session: \
                 {} to the lock panel, select pid {}, {} cancels its query, {} ends its session",
                label(bindings, Action::NextPanel),
                l.pid,
                label(bindings, Action::CancelBackend),
                label(bindings, Action::TerminateBackend),
            ),
            theme::dim(),
        )));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Locker;

    fn text(lines: &[Line]) -> String {
        lines
            .iter()
            .map(|l| {
                l.spans
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn progress(phase: &str, percent: f64, eta_s: Option<f64>) -> CommandProgress {
        CommandProgress {
            pid: 77,
            command: "CREATE INDEX CONCURRENTLY".into(),
            relation: Some("t".into()),
            phase: phase.into(),
            done: Some((percent * 10.0) as i64),
            total: Some(1000),
            percent: Some(percent),
            eta_s,
            locker: None,
            byval_key: false,
        }
    }

    #[test]
    fn a_working_phase_shows_its_bar_counts_and_eta() {
        let keys = crate::tui::keys::defaults();
        let shown = text(&statement_gauge(
            &progress("building index: scanning table", 50.0, Some(75.0)),
            &keys,
        ));
        assert_eq!(
            shown,
            "██████████░░░░░░░░░░  50.0 % building index: scanning table 500/1000, ETA 1m15s"
        );
    }

    #[test]
    fn a_wait_names_the_session_and_the_keys_that_end_it() {
        let keys = crate::tui::keys::defaults();
        let mut p = progress("waiting for old snapshots", 0.0, None);
        p.locker = Some(Locker {
            pid: 4242,
            application: Some("nightly-report".into()),
            user: Some("alice".into()),
            state: Some("idle in transaction".into()),
            xact_age_s: Some(372.0),
            query: "SELECT count(*)\n  FROM t".into(),
        });
        let shown = text(&statement_gauge(&p, &keys));
        assert!(shown.contains(", waiting"), "{shown}");
        assert!(
            shown.contains(
                "waits for pid 4242 (nightly-report, alice), transaction open 6m12s: SELECT count(*) FROM t"
            ),
            "{shown}"
        );
        assert!(
            shown.contains(
                "Tab to the lock panel, select pid 4242, C cancels its query, K ends its session"
            ),
            "{shown}"
        );
    }
}
