use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::panel;
use crate::tui::app::{App, SessionKind, StepState, StepView};
use crate::tui::forecast::ForecastState;
use crate::tui::rollback_view::RollbackView;
use crate::tui::theme;

/// SQL with keywords, strings and comments set apart, from PostgreSQL's own scanner.
pub fn highlight(sql: &str) -> Vec<Line<'static>> {
    let Ok(scan) = pg_query::scan(sql) else {
        return sql.lines().map(|l| Line::raw(l.to_string())).collect();
    };
    let mut styles = vec![Style::new(); sql.len()];
    for t in scan.tokens {
        let (start, end) = (
            t.start.max(0) as usize,
            (t.end.max(0) as usize).min(sql.len()),
        );
        let style = if t.keyword_kind > 1 {
            theme::keyword()
        } else if matches!(
            pg_query::protobuf::Token::try_from(t.token),
            Ok(pg_query::protobuf::Token::Sconst)
        ) {
            theme::string()
        } else if matches!(
            pg_query::protobuf::Token::try_from(t.token),
            Ok(pg_query::protobuf::Token::SqlComment | pg_query::protobuf::Token::CComment)
        ) {
            theme::dim()
        } else {
            continue;
        };
        for s in styles.iter_mut().take(end).skip(start) {
            *s = style;
        }
    }
    let mut lines = Vec::new();
    let mut offset = 0;
    for line in sql.split('\n') {
        let mut spans: Vec<Span<'static>> = Vec::new();
        let mut current = String::new();
        let mut style = Style::new();
        for (i, ch) in line.char_indices() {
            let s = styles.get(offset + i).copied().unwrap_or_default();
            if s != style && !current.is_empty() {
                spans.push(Span::styled(std::mem::take(&mut current), style));
            }
            style = s;
            current.push(ch);
        }
        if !current.is_empty() {
            spans.push(Span::styled(current, style));
        }
        lines.push(Line::from(spans));
        offset += line.len() + 1;
    }
    lines
}

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let Some(s) = app.steps.get(app.selected) else {
        f.render_widget(panel("Step", false), area);
        return;
    };
    let title = format!("{} · {}", s.id, s.kind.as_str());
    let block = panel(&title, false);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(w) = &app.waiting {
        lines.push(Line::from(Span::styled(
            format!("[{}] {}", w.step, w.line(&app.prompts)),
            theme::warn(),
        )));
    }
    if matches!(s.state, StepState::Running { .. })
        && let Some(p) = app.executor_progress()
    {
        lines.extend(super::statement_gauge::statement_gauge(p, &app.bindings));
    }
    if let Some(failed) = app.failed.as_ref().filter(|f| f.step == s.id) {
        lines.push(Line::from(Span::styled(
            failed.choices(&app.prompts),
            theme::warn(),
        )));
    }
    if app.kind == SessionKind::Rollback
        && let (Some(rb), Some(r)) = (&s.rollback, &s.restores)
    {
        restores(&mut lines, s, rb, r);
        f.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false }),
            area,
        );
        return;
    }
    if let Some(t) = &s.title {
        lines.push(Line::from(Span::styled(t.clone(), theme::title())));
    }
    let mut risk = vec![Span::styled(
        format!("{} risk", s.risk.as_str().to_uppercase()),
        theme::risk(s.risk),
    )];
    if s.risk > crate::runbook::Risk::Low {
        risk.push(Span::raw(format!(": {}", s.risk_reason)));
    }
    lines.push(Line::from(risk));
    forecast(&mut lines, app, s);
    if let Some(p) = &s.progress {
        lines.push(super::backfill::backfill_gauge(p));
    }
    if let StepState::Failed(m) = &s.state {
        lines.push(Line::from(Span::styled(
            format!("failed: {m}"),
            theme::danger(),
        )));
    }
    if let StepState::Stale(undone) = &s.state {
        lines.push(Line::from(Span::styled(
            format!("stale: it passed before {undone} was rolled back; run it again to re-check"),
            theme::warn(),
        )));
    }
    if let StepState::Skipped(m) = &s.state {
        lines.push(Line::from(Span::styled(
            format!("skipped: {m}"),
            theme::warn(),
        )));
    }
    if let Some(i) = &s.instructions {
        lines.push(Line::from(Span::styled("pause:", theme::warn())));
        lines.extend(i.lines().map(|l| Line::raw(l.to_string())));
    } else {
        lines.extend(highlight(&s.sql));
    }
    for a in &s.analysis {
        lines.push(Line::from(vec![
            Span::styled("• ", theme::dim()),
            Span::raw(a.clone()),
        ]));
    }
    for (rule, message, advice) in &s.findings {
        lines.push(Line::from(vec![
            Span::styled(format!("! {rule}: "), theme::warn()),
            Span::raw(message.clone()),
        ]));
        lines.push(Line::from(vec![
            Span::styled("  instead: ", theme::dim()),
            Span::raw(advice.clone()),
        ]));
    }
    if let Some(p) = &s.confirm {
        lines.push(Line::from(vec![
            Span::raw("asks you to type: "),
            Span::styled(p.clone(), theme::danger()),
        ]));
    } else if let Some(why) = s.no_phrase {
        lines.push(Line::from(Span::styled(why, theme::dim())));
    }
    if let Some(rb) = &s.rollback {
        lines.push(Line::from(vec![
            Span::styled("rollback: ", theme::dim()),
            Span::raw(super::one_line(rb)),
        ]));
    }
    // A pause runs no SQL: no lock or statement timeout applies to it.
    if s.kind != crate::runbook::StepKind::Pause {
        lines.push(Line::from(Span::styled(s.settings.clone(), theme::dim())));
    }
    lines.extend(super::captured::lines(app, s));
    if let Some(e) = &s.explain {
        lines.push(Line::from(vec![
            Span::styled("why: ", theme::dim()),
            Span::raw(super::one_line(e)),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// The step's forecast (plan --db's, measured when the session opened):
/// how long its rewrite, index build or scan holds which lock, or the sizes
/// of what it touches. Names come from the catalog: made safe here.
fn forecast(lines: &mut Vec<Line<'static>>, app: &App, s: &StepView) {
    if s.kind == crate::runbook::StepKind::Pause {
        return;
    }
    let label = Span::styled("forecast: ", theme::dim());
    let text = match &app.forecast {
        ForecastState::None => return,
        ForecastState::Measuring => {
            lines.push(Line::from(vec![
                label,
                Span::styled("measuring the target…", theme::dim()),
            ]));
            return;
        }
        ForecastState::Unavailable(why) => {
            lines.push(Line::from(vec![
                label,
                Span::styled(
                    format!("none ({})", crate::text::one_line(why)),
                    theme::dim(),
                ),
            ]));
            return;
        }
        ForecastState::Ready(_) => {
            let Some(f) = app
                .steps
                .iter()
                .position(|v| v.id == s.id)
                .and_then(|i| app.forecast.step(i))
            else {
                return;
            };
            f
        }
    };
    for w in &text.work {
        lines.push(Line::from(vec![
            label.clone(),
            Span::styled(crate::text::one_line(&w.sentence()), theme::warn()),
        ]));
    }
    if text.work.is_empty() && !text.tables.is_empty() {
        let sizes: Vec<String> = text
            .tables
            .iter()
            .map(|t| {
                format!(
                    "{} {} + {} indexes, about {} rows",
                    t.relation,
                    crate::forecast::bytes_text(t.table_bytes),
                    crate::forecast::bytes_text(t.index_bytes),
                    t.rows
                )
            })
            .collect();
        lines.push(Line::from(vec![
            label,
            Span::raw(crate::text::one_line(&format!(
                "no rewrite, index build or scan; touches {}",
                sizes.join(", ")
            ))),
        ]));
    }
}

/// The rollback screens' detail: what the rollback runs to restore the
/// step's before-state, its locks, findings and phrase; the forward SQL only
/// as what it undoes.
fn restores(lines: &mut Vec<Line<'static>>, s: &StepView, rb: &str, r: &RollbackView) {
    if let Some(t) = &s.title {
        lines.push(Line::from(Span::styled(t.clone(), theme::title())));
    }
    if let StepState::Failed(m) = &s.state {
        lines.push(Line::from(Span::styled(
            format!("failed: {m}"),
            theme::danger(),
        )));
    }
    lines.push(Line::from(Span::styled(
        format!("rollback: restores what {} changed, by running", s.id),
        theme::warn(),
    )));
    lines.extend(highlight(rb));
    match &r.destroys {
        Some(d) => lines.push(Line::from(vec![
            Span::styled("HIGH risk", theme::risk(crate::runbook::Risk::High)),
            Span::raw(format!(": the rollback is destructive ({d})")),
        ])),
        None => lines.push(Line::from(Span::styled(
            "the rollback destroys no data",
            theme::dim(),
        ))),
    }
    for a in &r.analysis {
        lines.push(Line::from(vec![
            Span::styled("• ", theme::dim()),
            Span::raw(a.clone()),
        ]));
    }
    for (rule, message, advice) in &r.findings {
        lines.push(Line::from(vec![
            Span::styled(format!("! {rule}: "), theme::warn()),
            Span::raw(message.clone()),
        ]));
        lines.push(Line::from(vec![
            Span::styled("  instead: ", theme::dim()),
            Span::raw(advice.clone()),
        ]));
    }
    if let Some(p) = &r.confirm {
        lines.push(Line::from(vec![
            Span::raw("asks you to type: "),
            Span::styled(p.clone(), theme::danger()),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled("undoes: ", theme::dim()),
        Span::raw(super::one_line(&s.sql)),
    ]));
    lines.push(Line::from(Span::styled(s.settings.clone(), theme::dim())));
}
