//! A snapshot as lines, for `monitor --once --format text` and the
//! terminal-less monitor loop.

use std::fmt::Write as _;

use super::{Snapshot, TreeNode};

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
                "{indent}{} {what}{queued}: {}",
                n.pid,
                short(&n.query, 70)
            );
        }
    }
    if !snap.long_transactions.is_empty() {
        let _ = writeln!(out, "long transactions:");
        for t in &snap.long_transactions {
            let _ = writeln!(
                out,
                "  {} {} {} ({}): {}",
                t.pid,
                age(t.xact_age_s),
                t.state,
                t.user.as_deref().unwrap_or("?"),
                short(&t.query, 70)
            );
        }
    }
    out
}
