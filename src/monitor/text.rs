//! A snapshot as lines, for `monitor --once --format text` and the
//! terminal-less monitor loop; and the words for the monitor's connection
//! state, which the screens use too.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{CLIENT_BACKEND, Feed, News, SessionName, Snapshot, TreeNode};

pub fn age(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn short(q: &str, max: usize) -> String {
    let s = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    } else {
        s
    }
}

/// Who a step waits for, in one line: `waiting for pid 123 (nightly-report) to finish`.
pub fn waiting_for(holders: &[super::Holder]) -> String {
    let who: Vec<String> = holders.iter().map(super::Holder::named).collect();
    format!("waiting for {} to finish", who.join(", "))
}

/// Who a session is, in one phrase: its application_name, its backend type
/// when it is not a client's session, and user@client —
/// `nightly-report, alice@10.0.0.5`. The texts are made safe already.
pub fn who(n: &SessionName) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(app) = n.application.as_deref().filter(|a| !a.is_empty()) {
        parts.push(app.to_string());
    }
    if !n.backend_type.is_empty() && n.backend_type != CLIENT_BACKEND {
        parts.push(n.backend_type.clone());
    }
    match n.user.as_deref() {
        Some(user) => parts.push(format!("{user}@{}", n.client)),
        None if n.client != "local" => parts.push(n.client.clone()),
        None => {}
    }
    parts.join(", ")
}

/// What the session waits for, when it is not a heavyweight lock (which
/// the lock panel says in its own words): `wait Client:ClientRead`.
pub fn wait_event(n: &SessionName) -> Option<String> {
    match (n.wait_event_type.as_deref(), n.wait_event.as_deref()) {
        (Some("Lock"), _) | (None, None) => None,
        (Some(t), Some(e)) => Some(format!("wait {t}:{e}")),
        (Some(t), None) => Some(format!("wait {t}")),
        (None, Some(e)) => Some(format!("wait {e}")),
    }
}

/// Who, and what it waits for, in parentheses (` (nightly-report,
/// alice@local; wait Client:ClientRead)`), or nothing when the server
/// names neither; `who` and `wait` leave out either part.
pub fn named(n: &SessionName, with_who: bool, with_wait: bool) -> String {
    let parts: Vec<String> = [
        with_who.then(|| who(n)).filter(|w| !w.is_empty()),
        with_wait.then(|| wait_event(n)).flatten(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// What a node of the blocking tree is doing: the lock it waits for, or (a
/// root blocker) its state and how long its transaction has been open.
pub fn doing(n: &TreeNode) -> String {
    match (&n.mode, &n.relation) {
        (Some(m), Some(r)) => format!(
            "waits {} for {m} on {r}",
            n.wait_s.map(age).unwrap_or_default()
        ),
        (Some(m), None) => format!("waits for {m}"),
        _ => format!(
            "{}{}",
            n.state,
            n.xact_age_s
                .map(|a| format!(" {}", age(a)))
                .unwrap_or_default()
        ),
    }
}

pub fn to_text(snap: &Snapshot) -> String {
    let mut out = String::new();
    let s = &snap.summary;
    let _ = writeln!(
        out,
        "{}  sessions {}  active {}  idle in transaction {}  waiting {}  longest transaction {}",
        snap.at.format("%H:%M:%S"),
        s.sessions,
        s.active,
        s.idle_in_transaction,
        s.waiting,
        s.longest_xact_s.map(age).unwrap_or_else(|| "-".into()),
    );
    if snap.tree.is_empty() {
        let _ = writeln!(out, "no session waits for a lock");
    } else {
        let _ = writeln!(out, "blocking:");
        for n in &snap.tree {
            let indent = "  ".repeat(n.depth + 1);
            let what = doing(n);
            let queued = if n.queued_behind > 0 {
                format!(" [{} queued behind]", n.queued_behind)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{indent}{} {what}{}{queued}: {}",
                n.pid,
                named(&n.name, true, true),
                short(&n.query, 70)
            );
        }
    }
    for p in &snap.progress {
        let _ = writeln!(out, "progress: {}", progress(p));
    }
    if !snap.long_transactions.is_empty() {
        let _ = writeln!(out, "long transactions:");
        for t in &snap.long_transactions {
            let _ = writeln!(
                out,
                "  {} {} {}{}: {}",
                t.pid,
                age(t.xact_age_s),
                t.state,
                named(&t.name, true, true),
                short(&t.query, 70)
            );
        }
    }
    out
}

/// A long statement's progress in one line: `pid 77 CREATE INDEX
/// CONCURRENTLY on public.t: building index: scanning table 1200/4000
/// (30.0 %), ETA 12s`; in a waiting phase, who it waits for and the keys
/// that end that session (the lock panel's cancel and terminate).
pub fn progress(p: &super::CommandProgress) -> String {
    let mut line = format!("pid {} {}", p.pid, p.command);
    if let Some(r) = &p.relation {
        let _ = write!(line, " on {r}");
    }
    let _ = write!(line, ": {}", p.phase);
    if let (Some(d), Some(t)) = (p.done, p.total) {
        let _ = write!(line, " {d}/{t}");
    }
    if let Some(pc) = p.percent {
        let _ = write!(line, " ({pc:.1} %)");
    }
    if let Some(e) = p.eta_s {
        let _ = write!(line, ", ETA {}", age(e));
    }
    if let Some(l) = &p.locker {
        let age = l
            .xact_age_s
            .map(|a| format!(", transaction open {}", age(a)))
            .unwrap_or_default();
        let _ = write!(
            line,
            " — waits for {}{age}: {}",
            l.named(),
            short(&l.query, 70)
        );
    }
    line
}

/// The headline of a lost connection, in every panel and line that would
/// otherwise show the server.
pub fn disconnected(attempt: u32) -> String {
    format!("monitor disconnected — reconnecting (attempt {attempt})")
}

/// Since when, and why: the detail under [`disconnected`].
pub fn lost_since(since: DateTime<Utc>, error: &str) -> String {
    format!("lost at {} UTC: {error}", since.format("%H:%M:%S"))
}

/// The headline of polls failing on a live connection.
pub fn poll_failed(since: DateTime<Utc>, error: &str) -> String {
    format!(
        "poll failing since {} UTC — trying again at the next poll: {error}",
        since.format("%H:%M:%S")
    )
}

/// The one log line for a change of the monitor's connection.
pub fn news(n: &News) -> String {
    match n {
        News::CannotConnect { error } => {
            format!("monitor cannot connect: {error} — trying again with backoff")
        }
        News::Lost { error } => {
            format!("monitor lost its connection: {error} — reconnecting with backoff")
        }
        News::Reconnected { attempts, after } => format!(
            "monitor reconnected (attempt {attempts}, {:.1} s after the loss)",
            after.as_secs_f64()
        ),
        News::PollFailing { error } => format!("monitor: poll failed: {error}"),
    }
}

/// A feed as lines, for the terminal-less monitor loop: the snapshot, or
/// what stands in for it, stamped `now`.
pub fn feed_to_text(feed: &Feed, now: DateTime<Utc>) -> String {
    let at = now.format("%H:%M:%S");
    match feed {
        Feed::Snapshot(s) => to_text(s),
        Feed::Disconnected {
            attempt,
            since,
            error,
        } => format!(
            "{at}  {}; {}\n",
            disconnected(*attempt),
            lost_since(*since, error)
        ),
        Feed::PollFailed { error, since } => format!("{at}  {}\n", poll_failed(*since, error)),
    }
}

/// A feed as pretty JSON: a snapshot as `monitor --once --format json`
/// prints it, or an object saying why there is none.
pub fn feed_to_json(feed: &Feed, now: DateTime<Utc>) -> String {
    let text = match feed {
        Feed::Snapshot(s) => serde_json::to_string_pretty(s),
        Feed::Disconnected {
            attempt,
            since,
            error,
        } => serde_json::to_string_pretty(&serde_json::json!({
            "at": now, "monitor": "disconnected", "attempt": attempt,
            "since": since, "error": error,
        })),
        Feed::PollFailed { error, since } => serde_json::to_string_pretty(&serde_json::json!({
            "at": now, "monitor": "poll failed", "since": since, "error": error,
        })),
    };
    text.unwrap_or_default()
}
