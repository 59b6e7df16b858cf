use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use std::collections::VecDeque;
use std::time::Duration;

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
    /// Time between two polls: what one point of the sparkline stands for.
    pub interval: Duration,
    /// No long-transaction panel beside the tree (a narrow terminal): the
    /// tree's title counts them instead.
    pub long_in_title: bool,
    /// The executor's session is a rehearsal: its locks are held until it ends.
    pub rehearsal: bool,
    /// The queue behind the running step's lock wait (`max_queue_stall`).
    pub queue: Option<&'a QueueStall>,
}

/// The sessions queued behind a step's lock wait, as the engine's queue
/// watch last saw them, and how often the step has yielded to them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStall {
    pub step: String,
    pub sessions: usize,
    pub oldest: Duration,
    pub limit: Duration,
    pub yields: u32,
}

/// "3 session(s) queued behind pgpilot, oldest 120ms of max_queue_stall
/// 200ms" and "pgpilot yielded 2 time(s) for add-column".
pub fn queue_lines(q: &QueueStall, width: usize) -> Vec<Line<'static>> {
    let ms =
        |d: Duration| crate::runbook::format_duration(Duration::from_millis(d.as_millis() as u64));
    let mut out = Vec::new();
    if q.sessions > 0 {
        let style = if q.oldest > q.limit / 2 {
            theme::danger()
        } else {
            theme::warn()
        };
        out.push(Line::from(Span::styled(
            cut(
                &format!(
                    "{} session(s) queued behind pgpilot, oldest {} of max_queue_stall {}",
                    q.sessions,
                    ms(q.oldest),
                    ms(q.limit)
                ),
                width,
            ),
            style,
        )));
    }
    if q.yields > 0 {
        out.push(Line::from(Span::styled(
            cut(
                &format!(
                    "pgpilot yielded {} time(s) for {} to let them through",
                    q.yields,
                    one_line(&q.step)
                ),
                width,
            ),
            theme::warn(),
        )));
    }
    out
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
            interval: app.poll_interval,
            long_in_title: false,
            rehearsal: app.kind == crate::tui::app::SessionKind::Rehearsal,
            queue: app.queue_stall.as_ref(),
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
        (_, Some(s)) if app.long_in_title && !s.long_transactions.is_empty() => format!(
            "Locks — {} waiting · {} long transaction(s), longest {}",
            s.summary.waiting,
            s.long_transactions.len(),
            s.summary
                .longest_xact_s
                .map(age)
                .unwrap_or_else(|| "-".into())
        ),
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
    if let Some(q) = app.queue {
        lines.extend(queue_lines(q, width));
    }
    lines.extend(queued_behind(snap, app.executor, app.rehearsal, width));
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

/// What the sparkline below it shows: waiting sessions per poll, over how
/// long, and the highest count in that time.
fn spark_label(shown: &[u64], interval: Duration) -> String {
    if shown.is_empty() {
        return "waiting sessions per poll:".into();
    }
    let span = interval.saturating_mul(shown.len() as u32);
    let max = shown.iter().max().copied().unwrap_or(0);
    format!(
        "waiting sessions, last {} (max {max}):",
        age(span.as_secs_f64())
    )
}

/// Who queues behind a rehearsal (it holds its locks until it ends, also
/// while it waits for the operator): each waiter's pid, application, user,
/// how long and for what — the sessions `rehearsal_max_queue` counts. In a
/// real run the tree below already shows them under pgpilot's own row.
pub fn queued_behind(
    snap: &Snapshot,
    executor: Option<i32>,
    rehearsal: bool,
    width: usize,
) -> Vec<Line<'static>> {
    let Some(me) = executor.filter(|_| rehearsal) else {
        return Vec::new();
    };
    let behind: Vec<String> = snap
        .blocking
        .iter()
        .filter(|b| b.blocked_by.contains(&me))
        .map(|b| {
            let about = snap.backends.iter().find(|x| x.pid == b.pid);
            let app = about
                .and_then(|x| x.application.as_deref())
                .filter(|a| !a.is_empty())
                .unwrap_or("?");
            let user = about.and_then(|x| x.user.as_deref()).unwrap_or("?");
            format!(
                "pid {} ({}, {}) waits {} for {} on {}",
                b.pid,
                one_line(app),
                one_line(user),
                b.wait_s.map(age).unwrap_or_else(|| "?".into()),
                b.mode.as_deref().unwrap_or("?"),
                b.relation
                    .as_deref()
                    .map(one_line)
                    .unwrap_or_else(|| "?".into())
            )
        })
        .collect();
    if behind.is_empty() {
        return Vec::new();
    }
    let whom = if rehearsal {
        "the rehearsal"
    } else {
        "pgpilot"
    };
    let mut out = vec![Line::from(Span::styled(
        cut(
            &format!("{} session(s) queued behind {whom}:", behind.len()),
            width,
        ),
        theme::danger(),
    ))];
    out.extend(
        behind
            .iter()
            .take(2)
            .map(|b| Line::from(Span::styled(cut(&format!("  {b}"), width), theme::warn()))),
    );
    if behind.len() > 2 {
        out.push(Line::from(Span::styled(
            format!("  … and {} more", behind.len() - 2),
            theme::dim(),
        )));
    }
    out
}

pub fn draw_long(f: &mut Frame, area: Rect, app: &LockView) {
    let block = panel("Long transactions", false);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let spark_rows = if inner.height >= 7 { 2 } else { 1 };
    let [summary_area, label_area, spark_area, list_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(spark_rows),
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
        Paragraph::new(Span::styled(
            cut(
                &spark_label(&data[start..], app.interval),
                inner.width as usize,
            ),
            theme::dim(),
        )),
        label_area,
    );
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
/// then user@client (the application's name alone stays, or the user's);
/// the name only where not even that fits (the query is cut instead).
fn fitted(head: &str, name: &SessionName, tail: &str, query: &str, width: usize) -> String {
    let query = one_line(query);
    let len = |s: &str| s.chars().count();
    let with = |who, wait| format!("{head}{}{tail}", named(name, who, wait));
    let short = name
        .application
        .as_deref()
        .filter(|a| !a.is_empty())
        .or(name.user.as_deref())
        .map(|n| format!("{head} ({n}){tail}"));
    let line = [
        Some((with(true, true), MIN_QUERY.min(len(&query)))),
        Some((with(true, false), 0)),
        short.map(|l| (l, 0)),
    ]
    .into_iter()
    .flatten()
    .find(|(l, room)| len(l) + 2 + room <= width)
    .map_or_else(|| with(false, false), |(l, _)| l);
    format!("{line}: {query}")
}
