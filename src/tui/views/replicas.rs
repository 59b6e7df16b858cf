//! The standbys in one header line, when the runbook watches them
//! (`max_replica_lag`): "replicas: standby1 0.2 s · standby2 12.0 s ⚠".
//! One line, so the lock panel keeps its rows at 80×24.

use ratatui::text::{Line, Span};

use crate::tui::app::App;
use crate::tui::theme;

/// The line, or `None` when the runbook does not watch the standbys.
pub fn replicas(app: &App) -> Option<Line<'static>> {
    let limit = app.replica_limit?;
    let Some(snap) = app.snapshot() else {
        return Some(Line::styled("replicas: (no poll yet)", theme::dim()));
    };
    if snap.replicas.is_empty() {
        return Some(Line::styled("replicas: none streaming", theme::dim()));
    }
    let mut spans = vec![Span::styled("replicas: ", theme::dim())];
    for (i, r) in snap.replicas.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme::dim()));
        }
        let style = if r.over(limit).is_some() {
            theme::danger()
        } else {
            theme::good()
        };
        spans.push(Span::styled(r.brief(Some(limit)), style));
    }
    Some(Line::from(spans))
}
