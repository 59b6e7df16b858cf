use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use std::collections::VecDeque;

use super::{cut, one_line, panel};
use crate::monitor::text::{age, disconnected, doing, lost_since, named, poll_failed};
use crate::monitor::{Feed, SessionName, Snapshot};
use crate::tui::app::{App, Panel};
use crate::tui::theme;

/// What the lock panels show, whoever holds the state (a run, or `monitor`).
pub struct LockView<'a> {
    /// The monitor's last poll: a snapshot, or why there is none.
    pub feed: Option<&'a Feed>,
    pub executor_wait: Option<String>,
    pub executor: Option<i32>,
    pub lock_selected: usize,
    pub focused: bool,
    pub history: &'a VecDeque<u64>,
}

impl<'a> LockView<'a> {
    pub fn of(app: &'a App) -> LockView<'a> {
        LockView {
            feed: app.feed.as_ref(),
            executor_wait: app.executor_wait(),
            executor: app.executor_pid(),
            lock_selected: app.lock_selected,
            focused: app.focus == Panel::Locks,
            history: &app.waiting_history,
        }
    }

    fn snapshot(&self) -> Option<&'a Snapshot> {
        self.feed.and_then(Feed::snapshot)
    }
}

/// In place of the server's state, when the last poll made no snapshot:
/// what happened and since when, never an empty or stale panel.
fn no_snapshot(feed: Option<&Feed>, width: usize) -> Vec<Line<'static>> {
    match feed {
        None => vec![Line::from(Span::styled(
            "waiting for the first poll…",
            theme::dim(),
        ))],
        Some(Feed::Snapshot(_)) => Vec::new(),
        Some(Feed::Disconnected {
            attempt,
            since,
            error,
        }) => vec![
            Line::from(Span::styled(
                cut(&disconnected(*attempt), width),
                theme::danger(),
            )),
            Line::from(Span::styled(
                cut(&lost_since(*since, &one_line(error)), width),
                theme::dim(),
            )),
        ],
        Some(Feed::PollFailed { error, since }) => vec![Line::from(Span::styled(
            cut(&poll_failed(*since, &one_line(error)), width),
            theme::warn(),
        ))],
    }
}

pub fn draw_tree(f: &mut Frame, area: Rect, app: &LockView) {
    let title = match (app.feed, app.snapshot()) {
        (_, Some(s)) => format!("Locks — {} waiting", s.summary.waiting),
        (Some(Feed::Disconnected { .. }), None) => "Locks — monitor disconnected".to_string(),
        _ => "Locks".to_string(),
    };
    let block = panel(&title, app.focused);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(snap) = app.snapshot() else {
        f.render_widget(
            Paragraph::new(no_snapshot(app.feed, inner.width as usize)),
            inner,
        );
        return;
    };
    let width = inner.width as usize;
    let mut lines: Vec<Line> = Vec::new();
    if let Some(w) = &app.executor_wait {
        // The most important line on the screen: kept whole, over two lines.
        let (what, who) = w.split_once(" — ").unwrap_or((w.as_str(), ""));
        lines.push(Line::from(Span::styled(
            cut(&format!("pgpilot is {what}"), width),
            theme::danger(),
        )));
        if !who.is_empty() {
            lines.push(Line::from(Span::styled(
                cut(&format!("  {who}"), width),
                theme::danger(),
            )));
        }
    }
    if snap.tree.is_empty() {
        lines.push(Line::from(Span::styled(
            "no session waits for a lock",
            theme::good(),
        )));
    }
    let executor = app.executor;
    // Only the rows that fit are formatted (a busy server has hundreds), and
    // the window follows the selection so a pid about to be signalled is seen.
    let rows = (inner.height as usize).saturating_sub(lines.len()).max(1);
    let first = app.lock_selected.saturating_sub(rows - 1);
    for (i, n) in snap.tree.iter().enumerate().skip(first).take(rows) {
        let mine = Some(n.pid) == executor;
        let pid = if mine {
            format!("{} (pgpilot)", n.pid)
        } else {
            n.pid.to_string()
        };
        let what = doing(n);
        let queued = if n.queued_behind > 0 {
            format!(" [{} queued]", n.queued_behind)
        } else {
            String::new()
        };
        let head = format!("{}{} {what}", "  ".repeat(n.depth), pid);
        let text = fitted(&head, &n.name, &queued, &n.query, width);
        let mut style = if mine {
            theme::executor()
        } else if n.depth == 0 {
            theme::warn()
        } else {
            ratatui::style::Style::new()
        };
        if app.focused && i == app.lock_selected {
            style = style.patch(theme::selected());
        }
        lines.push(Line::from(Span::styled(cut(&text, width), style)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

pub fn draw_long(f: &mut Frame, area: Rect, app: &LockView) {
    let block = panel("Long transactions", false);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [summary_area, spark_area, list_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(1),
    ])
    .areas(inner);
    let Some(snap) = app.snapshot() else {
        f.render_widget(
            Paragraph::new(no_snapshot(app.feed, inner.width as usize)),
            inner,
        );
        return;
    };
    let s = &snap.summary;
    let summary = format!(
        "active {} · idle in tx {} · waiting {} · longest {}",
        s.active,
        s.idle_in_transaction,
        s.waiting,
        s.longest_xact_s.map(age).unwrap_or_else(|| "-".into())
    );
    f.render_widget(
        Paragraph::new(Span::styled(
            cut(&summary, inner.width as usize),
            theme::dim(),
        )),
        summary_area,
    );
    let data: Vec<u64> = app.history.iter().copied().collect();
    let start = data.len().saturating_sub(spark_area.width as usize);
    f.render_widget(
        Sparkline::default()
            .data(&data[start..])
            .style(theme::warn()),
        spark_area,
    );
    let width = list_area.width as usize;
    let lines: Vec<Line> = if snap.long_transactions.is_empty() {
        vec![Line::from(Span::styled(
            "none over the threshold",
            theme::good(),
        ))]
    } else {
        snap.long_transactions
            .iter()
            .take(list_area.height as usize)
            .map(|t| {
                let style = if t.idle_in_transaction {
                    theme::warn()
                } else {
                    ratatui::style::Style::new()
                };
                let head = format!("{} {} {}", t.pid, age(t.xact_age_s), t.state);
                Line::from(Span::styled(
                    cut(&fitted(&head, &t.name, "", &t.query, width), width),
                    style,
                ))
            })
            .collect()
    };
    f.render_widget(Paragraph::new(lines), list_area);
}

/// The query text kept visible, at least, before the session's wait event
/// is given up for it.
const MIN_QUERY: usize = 16;

/// A session's row for `width` columns: `head`, who the session is and
/// what it waits for, `tail`, then its query. The wait event goes first
/// where the row would leave the query less than [`MIN_QUERY`] columns;
/// the name only where it does not fit at all (the query is cut instead).
fn fitted(head: &str, name: &SessionName, tail: &str, query: &str, width: usize) -> String {
    let query = one_line(query);
    let len = |s: &str| s.chars().count();
    let with = |who, wait| format!("{head}{}{tail}", named(name, who, wait));
    let line = [
        (with(true, true), MIN_QUERY.min(len(&query))),
        (with(true, false), 0),
    ]
    .into_iter()
    .find(|(l, room)| len(l) + 2 + room <= width)
    .map_or_else(|| with(false, false), |(l, _)| l);
    format!("{line}: {query}")
}
