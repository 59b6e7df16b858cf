//! `pgpilot plan` in words, for a trainee reading it before the change
//! window: each step's statements, locks and what they block, findings,
//! timeouts, rollback and the phrase to type; with `--db`, each step's
//! forecast under it. Runbook and server text is shown through
//! `crate::text` (controls and bidi overrides visible, passwords masked).

use std::fmt::Write as _;

use crate::analysis::{LockMode, StepAnalysis};
use crate::check::{Checked, risk_reason};
use crate::forecast::Forecast;
use crate::runbook::{Expect, Risk, Runbook, Step, format_duration};
use crate::style::Style;

use super::BackfillPlan;

impl BackfillPlan<'_> {
    /// "walks equipment_readings by id in batches of 5000 (adapted toward 500ms per batch), 50ms between batches".
    fn line(&self) -> String {
        let mut s = format!(
            "walks {} by {} in batches of {}",
            self.table, self.key, self.batch_size
        );
        if let Some(t) = &self.target_batch_time {
            s.push_str(&format!(" (adapted toward {t} per batch)"));
        }
        if self.batch_pause != "0" {
            s.push_str(&format!(", {} between batches", self.batch_pause));
        }
        s.push_str("; each batch its own transaction, $1/$2 its first and last key, the cursor saved with it");
        if self.rollback_batched {
            s.push_str("; the rollback is walked in batches too");
        }
        s
    }
}

/// The plan in words, for a person reading it before the change window.
pub fn to_text(c: &Checked, st: Style) -> String {
    to_text_with(c, None, st)
}

/// The plan in words with each step's forecast (`plan --db`).
pub fn to_text_with(c: &Checked, forecasts: Option<&[Forecast]>, st: Style) -> String {
    let r = &c.runbook;
    let mut out = String::new();
    let steps = r.steps().count();
    let _ = writeln!(
        out,
        "{} {}",
        st.bold(&title(&r.title)),
        st.dim(&format!("({})", safe(&r.id)))
    );
    let mut facts = vec![
        format!("change {}", r.change_type.as_str()),
        if c.effective_risk() > c.analysis.risk {
            format!(
                "risk {} (declared; computed {})",
                st.risk(c.effective_risk()),
                c.analysis.risk.as_str()
            )
        } else {
            format!("risk {}", st.risk(c.analysis.risk))
        },
        format!("{} phases, {steps} steps", r.phases.len()),
    ];
    if let Some(t) = &r.ticket {
        facts.insert(2, format!("ticket {}", title(t)));
    }
    let _ = writeln!(out, "  {}", facts.join(" · "));
    if let Some(d) = &r.description {
        out.push_str(&wrap(&safe(d), "  ", 88));
    }
    target_line(&mut out, r);
    if let Some(n) = &r.notify {
        let _ = writeln!(out, "  {}", crate::notify::plan_line(n));
    }
    let _ = writeln!(
        out,
        "  {}",
        crate::governance::plan::PlanApprovals::new(c).line()
    );
    let s = &r.settings;
    let _ = writeln!(
        out,
        "  settings: lock_timeout {}, statement_timeout {}, {} lock retries {} apart, long transactions over {}",
        format_duration(s.lock_timeout),
        format_duration(s.statement_timeout),
        s.lock_retries,
        format_duration(s.retry_backoff),
        format_duration(s.long_transaction),
    );
    if let Some(lag) = s.max_replica_lag {
        let _ = writeln!(
            out,
            "  standbys: a step warns before it starts while one replays more than {} behind",
            format_duration(lag)
        );
    }
    for g in &r.health {
        let bounds: Vec<String> = [
            g.max.map(|m| format!("max {m}")),
            g.min.map(|m| format!("min {m}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = writeln!(
            out,
            "  health gate {} ({}), before each step: {}",
            title(&g.name),
            bounds.join(", "),
            one_line(&crate::text::redact(&g.sql.text), 80)
        );
    }
    let mut n = 0;
    let mut forecasts = forecasts.map(|f| f.iter());
    let mut steps_iter = r.steps().zip(&c.analysis.steps).peekable();
    for phase in &r.phases {
        let _ = writeln!(
            out,
            "\n{} {} {}",
            st.bold("Phase"),
            st.bold(&safe(&phase.id)),
            st.dim(&format!("— {}", title(&phase.title)))
        );
        while let Some(((p, step), a)) = steps_iter.peek() {
            if p.id != phase.id {
                break;
            }
            n += 1;
            step_text(&mut out, n, step, a, st);
            if let Some(f) = forecasts.as_mut().and_then(Iterator::next) {
                forecast_text(&mut out, f, st);
            }
            steps_iter.next();
        }
    }
    out
}

fn target_line(out: &mut String, r: &Runbook) {
    let t = &r.target;
    let mut parts = Vec::new();
    if let Some(db) = &t.database {
        parts.push(format!("database {}", title(db)));
    }
    if t.require_primary {
        parts.push("primary only".into());
    }
    if !t.environments.is_empty() {
        parts.push(format!(
            "environments {}",
            title(&t.environments.join(", "))
        ));
    }
    if !parts.is_empty() {
        let _ = writeln!(out, "  target: {}", parts.join(", "));
    }
}

fn step_text(out: &mut String, n: usize, step: &Step, a: &StepAnalysis, st: Style) {
    let step_title = step
        .title
        .as_deref()
        .map(|t| format!(" — {}", title(t)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n  {n}. {} [{}]{step_title}  {} risk{}",
        st.bold(&safe(&step.id)),
        step.kind.as_str(),
        st.risk(a.risk),
        if a.risk > Risk::Low {
            format!(": {}", risk_reason(a))
        } else {
            String::new()
        },
    );
    if let Some(text) = step.instructions() {
        let _ = write!(out, "     {} ", st.cyan("pause:"));
        out.push_str(wrap(&safe(text), "            ", 88).trim_start());
        return;
    }
    for s in &a.statements {
        let _ = writeln!(out, "     {}", st.cyan(&one_line(&s.sql, 100)));
        let reads: Vec<String> = s
            .locks
            .iter()
            .filter(|l| l.mode == LockMode::AccessShare)
            .map(|l| l.relation.to_string())
            .collect();
        if !reads.is_empty() {
            let _ = writeln!(
                out,
                "       reads {} (ACCESS SHARE: only ACCESS EXCLUSIVE waits for it)",
                safe(&reads.join(", "))
            );
        }
        for l in s.locks.iter().filter(|l| l.mode != LockMode::AccessShare) {
            let _ = writeln!(
                out,
                "       lock {} on {}: {}",
                st.bold(l.mode.sql_name()),
                safe(&l.relation.to_string()),
                l.mode.blocks()
            );
        }
        let mut facts = Vec::new();
        if !s.transactional {
            facts.push("cannot run in a transaction block: runs in autocommit".to_string());
        }
        if s.rewrites {
            facts.push("rewrites the table".into());
        }
        if s.destructive {
            facts.push(match &s.at_risk {
                Some(r) => format!("destructive: {}", r.phrase()),
                None => "destructive: its effects cannot be analyzed".into(),
            });
        }
        if s.breaking {
            facts.push("breaks clients that use the old shape".into());
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "       {}", safe(&facts.join("; ")));
        }
        for f in &s.findings {
            let _ = writeln!(
                out,
                "       {} {}: {}",
                st.yellow("!"),
                st.yellow(f.rule),
                safe(&f.message)
            );
            let _ = writeln!(out, "         instead: {}", safe(&f.advice));
        }
    }
    if let Some(b) = BackfillPlan::of(step) {
        let _ = writeln!(out, "     {}", safe(&b.line()));
    }
    if a.lock.is_some_and(|l| l > LockMode::AccessShare) {
        let _ = writeln!(
            out,
            "     waits at most {} for its locks, retried {} times; runs at most {}",
            format_duration(step.settings.lock_timeout),
            step.settings.lock_retries,
            if step.settings.statement_timeout.is_zero() {
                "without limit".to_string()
            } else {
                format_duration(step.settings.statement_timeout)
            },
        );
    }
    if a.lock.is_some_and(|l| l > LockMode::AccessShare) {
        let _ = writeln!(out, "     {}", queue_stall_line(&step.settings));
    }
    if a.statements.iter().any(|s| concurrently(&s.sql)) {
        // PostgreSQL waits for older transactions through their virtual
        // transaction id locks (CREATE INDEX, "Building Indexes Concurrently"),
        // so lock_timeout ends each of those waits too.
        let _ = writeln!(
            out,
            "     CONCURRENTLY also waits for every transaction older than it to end; each such wait is a lock wait, so lock_timeout ({}) ends it too, and the step is retried",
            format_duration(step.settings.lock_timeout),
        );
    }
    match &step.expect {
        Some(Expect::Rows(n)) => {
            let _ = writeln!(out, "     expects {n} row(s)");
        }
        Some(Expect::Scalar(v)) => {
            let _ = writeln!(out, "     expects the value {:?}", safe(v));
        }
        Some(Expect::Empty(e)) => {
            let _ = writeln!(
                out,
                "     expects {}",
                if *e { "no rows" } else { "at least one row" }
            );
        }
        None => {}
    }
    if let Some(c) = &step.capture {
        let _ = writeln!(out, "     keeps the result as {{{{{c}}}}}");
    }
    if let Some(rb) = &step.rollback {
        let _ = writeln!(
            out,
            "     rollback: {}",
            one_line(&crate::text::redact(&rb.text), 100)
        );
        if let Some(phrase) = &a.rollback_confirm {
            let _ = writeln!(
                out,
                "     {} {}",
                st.bold("to roll back, type:"),
                st.red(&safe(phrase))
            );
        }
    } else if let Some(why) = &step.irreversible {
        let _ = writeln!(out, "     {} {}", st.red("irreversible:"), title(why));
    }
    if let Some(phrase) = &a.confirm {
        let _ = writeln!(
            out,
            "     {} {}",
            st.bold("type to confirm:"),
            st.red(&safe(phrase))
        );
        if !a.confirm_depends_on.is_empty() {
            let names: Vec<String> = a
                .confirm_depends_on
                .iter()
                .map(|n| format!("{{{{{n}}}}}"))
                .collect();
            let _ = writeln!(
                out,
                "       the phrase names {} captured at run time: the run shows the final phrase before you type it",
                names.join(", ")
            );
        }
    }
    if let Some(why) = crate::check::no_phrase_reason(a) {
        let _ = writeln!(out, "     {why}");
    }
    if let Some(e) = &step.explain {
        let _ = write!(out, "     {} ", st.dim("why:"));
        out.push_str(wrap(&safe(e), "          ", 88).trim_start());
    }
}

/// The forecast of `plan --db` under a step: sizes, then each long work.
fn forecast_text(out: &mut String, f: &Forecast, st: Style) {
    for t in &f.tables {
        let _ = writeln!(
            out,
            "     {} {}: {} heap, {} indexes, about {} rows",
            st.dim("size:"),
            safe(&t.relation),
            crate::forecast::bytes_text(t.table_bytes),
            crate::forecast::bytes_text(t.index_bytes),
            t.rows
        );
    }
    for m in &f.missing {
        let _ = writeln!(
            out,
            "     {} {} is not on the target (yet): not counted",
            st.dim("size:"),
            safe(m)
        );
    }
    for w in &f.work {
        let _ = writeln!(out, "     {} {}", st.bold("forecast:"), safe(&w.sentence()));
    }
}

/// Whether the statement is a CONCURRENTLY form, by PostgreSQL's own scanner.
fn concurrently(sql: &str) -> bool {
    pg_query::scan(sql).is_ok_and(|scan| {
        scan.tokens
            .iter()
            .any(|t| t.token == pg_query::protobuf::Token::Concurrently as i32)
    })
}

/// A title or a name on one line, controls visible: a line break in a
/// runbook under review must not print a line that passes for the plan's
/// own (a step that is not there, a risk that is not its).
fn title(text: &str) -> String {
    crate::text::one_line(text)
}

/// Runbook text as the plan shows it: controls and bidi overrides visible.
fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::for_terminal(text)
}

fn one_line(sql: &str, max: usize) -> String {
    let s = crate::text::one_line(sql);
    if s.chars().count() > max {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Reflows text into lines of at most `width` characters, each starting with
/// `indent`; blank lines and list items ("- …") keep their own lines.
fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    let flush = |line: &mut String, out: &mut String| {
        if !line.is_empty() {
            out.push_str(indent);
            out.push_str(line);
            out.push('\n');
            line.clear();
        }
    };
    for raw in text.trim().lines() {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with("- ") || raw.starts_with("* ") {
            flush(&mut line, &mut out);
        }
        for word in raw.split_whitespace() {
            if !line.is_empty()
                && line.chars().count() + 1 + word.chars().count()
                    > width.saturating_sub(indent.len())
            {
                flush(&mut line, &mut out);
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    flush(&mut line, &mut out);
    out
}

/// For trainees: what `max_queue_stall` does while the step waits for a
/// lock (every later query on its tables queues behind that wait).
fn queue_stall_line(s: &crate::runbook::Settings) -> String {
    if s.max_queue_stall.is_zero() {
        return format!(
            "while it waits, later queries on its tables queue behind it for up to {} (max_queue_stall is off)",
            format_duration(s.lock_timeout)
        );
    }
    format!(
        "while it waits, later queries on its tables queue behind it; once one has waited {} (max_queue_stall), pgpilot cancels its own statement, lets them through and retries (counted in the retries)",
        format_duration(s.max_queue_stall)
    )
}
