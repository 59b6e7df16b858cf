use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::{App, SessionKind};
use crate::tui::theme;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let mut first = vec![
        Span::styled("pgpilot ", theme::dim()),
        Span::styled(app.title.clone(), theme::title()),
        Span::styled(format!("  ({})", app.runbook_id), theme::dim()),
    ];
    match app.kind {
        SessionKind::Rehearsal => first.push(Span::styled(
            "  REHEARSAL — everything is rolled back at the end  ",
            theme::banner_rehearsal(),
        )),
        SessionKind::Rollback => first.push(Span::styled(
            "  ROLLBACK — applied steps are undone in reverse order  ",
            theme::banner_rollback(),
        )),
        SessionKind::Run => {}
    }
    if let Some(reason) = &app.emergency {
        first.push(Span::styled(
            format!("  EMERGENCY — {}  ", crate::text::one_line(reason)),
            theme::banner_rollback(),
        ));
    }
    let second = match &app.target {
        Some(t) => {
            let mut s = vec![
                Span::raw(format!("{}:{}/{}", t.host, t.port, t.database)),
                Span::styled(format!(" as {}", t.role), theme::dim()),
                Span::raw(format!(
                    " · PostgreSQL {} · ",
                    t.server_version.split_whitespace().next().unwrap_or("")
                )),
                if t.primary {
                    Span::styled("primary", theme::good())
                } else {
                    Span::styled("REPLICA", theme::danger())
                },
                Span::styled(format!(" · executor pid {}", t.pid), theme::executor()),
            ];
            if let Some(e) = &app.env {
                s.push(Span::raw(" · env "));
                s.push(Span::styled(
                    e.clone(),
                    if e.starts_with("prod") {
                        theme::danger()
                    } else {
                        theme::title()
                    },
                ));
            }
            s
        }
        None => vec![Span::styled(
            format!("connecting to {}…", app.target_label),
            theme::dim(),
        )],
    };
    let mut lines = vec![Line::from(first), Line::from(second)];
    if app.approvals.is_some() || app.window.is_some() {
        let mut third = Vec::new();
        if let Some((window, closes)) = &app.window {
            let left = closes.saturating_duration_since(std::time::Instant::now());
            third.push(Span::styled(
                format!(
                    "window {window}: {} left",
                    crate::governance::window::span(
                        chrono::Duration::from_std(left).unwrap_or_default()
                    )
                ),
                if left.as_secs() < 15 * 60 {
                    theme::danger()
                } else {
                    theme::title()
                },
            ));
            third.push(Span::raw("  "));
        }
        if let Some(a) = &app.approvals {
            third.push(Span::styled(crate::text::one_line(a), theme::good()));
        }
        lines.push(Line::from(third));
    }
    lines.extend(super::replicas::replicas(app));
    f.render_widget(Paragraph::new(lines), area);
}
