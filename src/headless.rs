//! `--headless`: the engine's events as lines, typed confirmations read from
//! the terminal, or given by `--confirm STEP=PHRASE` when there is no terminal.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::engine::{Ask, Control, EngineEvent, Outcome, Reply, StepOutcome};

/// A line of output. Notices, values, names and messages come from outside:
/// they reach the terminal as [`shown`] makes them.
// A reader that went away (`pgpilot run … | head`) must not stop a session
// between a statement and its audit record: what cannot be written is
// dropped, and the run goes on to its end with its audit whole.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{}", shown(&format!($($arg)*)));
    }};
}
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{}", shown(&format!($($arg)*)));
    }};
}
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = write!(out, "{}", shown(&format!($($arg)*)));
        let _ = out.flush();
    }};
}

/// Output as the terminal gets it: passwords masked, controls made
/// visible, and each later line of a message that spans lines indented
/// under its first. Every line pgpilot itself writes starts at the margin
/// (`[STEP] applied …`, `pgpilot: done …`); a notice or an error message
/// with line breaks, written by whoever wrote the function that raised it,
/// must not print a line that passes for one of them.
fn shown(text: &str) -> String {
    let redacted = crate::text::redact(text);
    let safe = crate::text::for_terminal(&redacted);
    let mut out = String::with_capacity(safe.len() + 8);
    for (i, line) in safe.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() && !line.starts_with([' ', '\t']) {
                out.push_str("    ");
            }
        }
        out.push_str(line);
    }
    out
}

pub struct Driver {
    pub confirms: HashMap<String, String>,
    /// Read answers from the terminal (stdin is one).
    pub interactive: bool,
    /// Progress lines of long statements, when the runbook has such steps.
    pub progress: Option<crate::headless_progress::ProgressWatch>,
}

impl Driver {
    pub fn new(confirms: HashMap<String, String>) -> Driver {
        Driver {
            confirms,
            interactive: std::io::stdin().is_terminal(),
            progress: None,
        }
    }

    /// Prints events until the engine finishes; answers its questions.
    pub async fn drive(
        mut self,
        mut events: UnboundedReceiver<EngineEvent>,
        replies: UnboundedSender<Reply>,
        control: UnboundedSender<Control>,
    ) -> Outcome {
        let mut applied = 0;
        let mut passed = 0;
        let mut rolled_back = 0;
        let mut cancel_sent = false;
        // One listener for the whole session: a `ctrl_c()` future made anew
        // each turn of the loop misses a Ctrl-C that arrives while an event
        // is being printed, and the run would go on as if none was pressed.
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        // A running backfill's orders: SIGUSR1 pauses or resumes it,
        // SIGUSR2 stops it after the current batch (resumable).
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
        let mut usr2 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()).ok();
        // Events that came while a question was open (see `Asks` below).
        let mut came: std::collections::VecDeque<EngineEvent> = Default::default();
        let mut cadence = crate::engine::progress::Cadence::new();
        let mut progress = self.progress.take();
        loop {
            let progress_due = progress
                .as_ref()
                .filter(|p| p.active())
                .map(crate::headless_progress::ProgressWatch::due);
            let interrupted = async {
                match interrupts.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                biased;
                e = async { came.pop_front() }, if !came.is_empty() => e,
                e = events.recv() => e,
                _ = next_signal(&mut usr1) => {
                    say!("pgpilot: SIGUSR1: pausing or resuming the backfill after the current batch");
                    let _ = control.send(Control::TogglePause);
                    continue;
                }
                _ = next_signal(&mut usr2) => {
                    say!("pgpilot: SIGUSR2: stopping the backfill after the current batch (resumable)");
                    let _ = control.send(Control::StopAfterBatch);
                    continue;
                }
                _ = interrupted, if !cancel_sent => {
                    say!("pgpilot: cancelling the running statement (Ctrl-C)");
                    let _ = control.send(Control::Cancel);
                    cancel_sent = true;
                    continue;
                }
                _ = async {
                    if let Some(due) = progress_due {
                        tokio::time::sleep_until(due).await;
                    }
                }, if progress_due.is_some() => {
                    if let Some(p) = progress.as_mut() {
                        for line in p.poll().await {
                            say!("{line}");
                        }
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                return Outcome::Failed("the engine stopped without a result".into());
            };
            if let Some(p) = progress.as_mut() {
                match &event {
                    EngineEvent::Connected(t) => p.connected(t.pid),
                    EngineEvent::StepStarted { step, .. } => p.step_started(step),
                    EngineEvent::StepDone { .. }
                    | EngineEvent::StepFailed { .. }
                    | EngineEvent::StepSkipped { .. }
                    | EngineEvent::Finished(_) => p.step_ended(),
                    _ => {}
                }
            }
            match event {
                // The window guard's line says how long it stays open.
                EngineEvent::WindowOpen { .. } => {}
                EngineEvent::Connected(t) => say!(
                    "pgpilot: connected to {}:{}/{} as {} (PostgreSQL {}, {}), pid {}",
                    t.host,
                    t.port,
                    t.database,
                    t.role,
                    t.server_version,
                    if t.primary { "primary" } else { "replica" },
                    t.pid
                ),
                EngineEvent::Guard {
                    name,
                    passed,
                    detail,
                } => {
                    say!(
                        "guard {name}: {} ({detail})",
                        if passed { "pass" } else { "FAIL" }
                    )
                }
                EngineEvent::StepStarted { step, attempt, of } => {
                    if attempt == 1 {
                        say!("[{step}] running");
                    } else {
                        say!("[{step}] running (attempt {attempt}/{of})");
                    }
                }
                EngineEvent::Retrying {
                    step,
                    attempt,
                    of,
                    message,
                    ..
                } => say!("[{step}] attempt {attempt}/{of}: {message}"),
                // The yields themselves are lines of their own (Retrying);
                // the queue's growth every 50 ms would drown them.
                EngineEvent::QueueBehind { .. } => {}
                EngineEvent::Notice {
                    step,
                    severity,
                    message,
                } => match step {
                    Some(s) => say!("[{s}] {severity}: {message}"),
                    None => say!("pgpilot: {severity}: {message}"),
                },
                EngineEvent::StepDone {
                    step,
                    outcome,
                    duration,
                    rows,
                    captured,
                } => {
                    let what = match outcome {
                        StepOutcome::Applied => {
                            applied += 1;
                            "applied"
                        }
                        StepOutcome::Passed => {
                            passed += 1;
                            "passed"
                        }
                        StepOutcome::Acknowledged => "acknowledged",
                        StepOutcome::Rehearsed => "rehearsed",
                    };
                    let rows = rows.map(|r| format!(", {r} row(s)")).unwrap_or_default();
                    let cap = captured
                        .map(|(n, v)| format!(", {{{{{n}}}}} = {v}"))
                        .unwrap_or_default();
                    say!("[{step}] {what} in {}{rows}{cap}", human(duration));
                }
                EngineEvent::StepFailed {
                    step,
                    sqlstate,
                    message,
                } => {
                    say!(
                        "[{step}] FAILED{}: {message}",
                        sqlstate.map(|c| format!(" [{c}]")).unwrap_or_default()
                    )
                }
                EngineEvent::StepSkipped { step, reason } => say!("[{step}] skipped: {reason}"),
                EngineEvent::RolledBack { step, duration } => {
                    rolled_back += 1;
                    say!("[{step}] rolled back in {}", human(duration))
                }
                EngineEvent::Blockers { step, holders } => {
                    say!(
                        "[{step}] {} session(s) hold locks this step needs:",
                        holders.len()
                    );
                    for h in holders {
                        let age = h
                            .xact_age_s
                            .map(|a| {
                                format!(
                                    ", transaction open {}",
                                    human(Duration::from_secs_f64(a.max(0.0)))
                                )
                            })
                            .unwrap_or_default();
                        say!(
                            "    pid {}{} {}{age}, holds {} on {}: {}",
                            h.pid,
                            crate::monitor::text::named(&h.name(), true, true),
                            h.state,
                            h.mode,
                            h.relation,
                            one_line(&h.query)
                        );
                    }
                }
                EngineEvent::States(states) => {
                    for k in states {
                        let stale = k
                            .stale_after
                            .as_deref()
                            .map(|u| format!(" (passed before {u} was rolled back)"))
                            .unwrap_or_default();
                        say!(
                            "[{}] on this target: {}{stale}, {} by {}",
                            k.step,
                            crate::engine::truth::label(k.status, k.stale_after.is_some()),
                            k.at,
                            k.operator
                        );
                    }
                }
                EngineEvent::Recaptured {
                    step,
                    name,
                    kept,
                    fresh,
                    because,
                } => say!(
                    "[{step}] {{{{{name}}}}}: this run captured {fresh:?}, but later steps use {kept:?}, captured on an earlier run: {because} was applied with it"
                ),
                EngineEvent::Progress {
                    step,
                    done,
                    total_estimate,
                    rate_per_s,
                    eta,
                    ..
                } => {
                    if cadence.due(std::time::Instant::now()) {
                        say!(
                            "[{step}] progress {}",
                            crate::engine::progress::describe(
                                done,
                                total_estimate,
                                rate_per_s,
                                eta
                            )
                        );
                    }
                }
                EngineEvent::WaitingForBlockers { step, holders } => {
                    say!("[{step}] {}", crate::monitor::text::waiting_for(&holders));
                }
                EngineEvent::Asks(ask) => {
                    // Events that come while the question is open (a
                    // notice from the audit copier) wait their turn: the
                    // answer is never dropped for them, or the engine would
                    // wait for it forever. Only the engine's end makes the
                    // question moot (a rehearsal whose locks made others
                    // queue too long ends itself): that is shown at once.
                    let answer = self.answer(&ask);
                    tokio::pin!(answer);
                    loop {
                        tokio::select! {
                            biased;
                            reply = &mut answer => {
                                let _ = replies.send(reply);
                                break;
                            }
                            e = events.recv() => match e {
                                Some(e @ EngineEvent::Finished(_)) => {
                                    came.push_back(e);
                                    break;
                                }
                                Some(e) => came.push_back(e),
                                None => break,
                            },
                        }
                    }
                }
                EngineEvent::Finished(outcome) => {
                    match &outcome {
                        Outcome::Done => {
                            say!("pgpilot: done ({})", summary(applied, passed, rolled_back))
                        }
                        Outcome::Failed(m) => say_err!("pgpilot: failed: {m}"),
                        Outcome::Refused(m) => say_err!("pgpilot: refused: {m}"),
                        Outcome::Interrupted => say_err!(
                            "pgpilot: interrupted; the running step was cancelled and marked failed"
                        ),
                    }
                    return outcome;
                }
            }
        }
    }

    async fn answer(&self, ask: &Ask) -> Reply {
        match ask {
            Ask::Next { .. } => return Reply::Run,
            // Only an interactive session asks it; no one here to retry.
            Ask::End | Ask::Failed { .. } => return Reply::Quit,
            Ask::RollbackList { steps } => {
                // The command line is the list: `pgpilot rollback [--to STEP]`
                // said how far; each destructive rollback still needs its phrase.
                say!("pgpilot: rolling back, newest first: {}", steps.join(", "));
                return Reply::Run;
            }
            _ => {}
        }
        if let Ask::HealthBreach { step, .. } = ask {
            if !self.interactive {
                say!("[{step}] no terminal to ask: stopping before the step");
                return Reply::Quit;
            }
            say_part!("[{step}] [c]ontinue, roll [b]ack the applied steps, or stop ([x])? ");
            let _ = std::io::stdout().flush();
            return match read_line().await {
                Some(s) => breach_answer(&s),
                None => Reply::Quit,
            };
        }
        if let Ask::PastWindow {
            step,
            expected,
            source,
            left,
        } = ask
        {
            say!("[{step}] may take {expected} ({source}); the change window closes in {left}");
            if !self.interactive {
                say!("[{step}] no terminal to ask: stopping before the step");
                return Reply::Quit;
            }
            say_part!("[{step}] [c]ontinue past the window, or stop ([x])? ");
            let _ = std::io::stdout().flush();
            return match read_line().await {
                Some(s) if s.trim() == "c" => Reply::Run,
                _ => Reply::Quit,
            };
        }
        if let Ask::Blockers { step, .. } = ask {
            if !self.interactive {
                say!("[{step}] no terminal to ask: proceeding; lock_timeout bounds the wait");
                return Reply::Run;
            }
            say_part!(
                "[{step}] [p]roceed (bounded by lock_timeout), [w]ait for them to finish, or [a]bort? "
            );
            let _ = std::io::stdout().flush();
            return match read_line().await {
                Some(s) => blocker_answer(&s),
                None => Reply::Run,
            };
        }
        let prompt = match ask {
            Ask::Confirm { step, phrase, what } => {
                format!("[{step}] destructive: {what}\n  type {phrase:?} to run it: ")
            }
            Ask::Acknowledge { step, instructions } => format!(
                "[{step}] pause: {}\n  type \"done\" when it is done: ",
                instructions.trim()
            ),
            Ask::DatabaseName { database } => {
                format!("production target: type the database name ({database}) to go on: ")
            }
            Ask::Next { .. }
            | Ask::End
            | Ask::Blockers { .. }
            | Ask::Failed { .. }
            | Ask::RollbackList { .. }
            | Ask::HealthBreach { .. }
            | Ask::PastWindow { .. } => String::new(),
        };
        if let Some(given) = self.confirms.get(ask.confirm_key()) {
            say!(
                "{} (answered by --confirm)",
                prompt.lines().next().unwrap_or_default()
            );
            return Reply::Typed(given.clone());
        }
        if !self.interactive {
            say!("{}", prompt.lines().next().unwrap_or_default());
            return Reply::Missing;
        }
        say_part!("{prompt}");
        let _ = std::io::stdout().flush();
        match read_line().await {
            Some(s) => Reply::Typed(s),
            None => Reply::Missing,
        }
    }
}

/// One line from the terminal, without its line ending; `None` at end of input.
async fn read_line() -> Option<String> {
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s).map(|n| (n, s))
    })
    .await;
    match line {
        Ok(Ok((0, _))) | Ok(Err(_)) | Err(_) => None,
        Ok(Ok((_, s))) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
    }
}

fn one_line(q: &str) -> String {
    let s = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// What a session that ended done did: a rollback counts what it rolled back.
fn summary(applied: u32, passed: u32, rolled_back: u32) -> String {
    let mut parts = vec![
        format!("{applied} applied"),
        format!("{passed} checks passed"),
    ];
    if rolled_back > 0 {
        parts.push(format!("{rolled_back} rolled back"));
    }
    parts.join(", ")
}

/// A typed answer to the blocker guard: `p` or an empty line proceeds, `w`
/// waits, anything else (`a`, a typo) aborts: the safe direction.
fn blocker_answer(line: &str) -> Reply {
    let word = line.trim().to_ascii_lowercase();
    match word.as_str() {
        "" | "p" | "proceed" => Reply::Run,
        "w" | "wait" => Reply::Wait,
        _ => Reply::Quit,
    }
}

/// A typed answer to a health gate's breach: only `c` continues and `b`
/// rolls back; anything else stops, the safe direction.
fn breach_answer(line: &str) -> Reply {
    match line.trim().to_ascii_lowercase().as_str() {
        "c" | "continue" => Reply::Run,
        "b" | "rollback" | "roll back" => Reply::RollbackThrough(String::new()),
        _ => Reply::Quit,
    }
}

/// The next delivery of a signal; never, when it could not be listened to.
async fn next_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    match s.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_s_later_lines_stay_under_its_first() {
        assert_eq!(
            shown("[s] NOTICE: ok\n[s] applied\n\n  kept\x1b[2J"),
            "[s] NOTICE: ok\n    [s] applied\n\n  kept\\x1b[2J"
        );
    }

    #[test]
    fn the_summary_counts_rollbacks() {
        assert_eq!(summary(2, 1, 0), "2 applied, 1 checks passed");
        assert_eq!(
            summary(0, 0, 2),
            "0 applied, 0 checks passed, 2 rolled back"
        );
    }

    #[test]
    fn a_typed_blocker_answer_aborts_unless_it_says_proceed_or_wait() {
        for (line, reply) in [
            ("", Reply::Run),
            (" P ", Reply::Run),
            ("proceed", Reply::Run),
            ("w", Reply::Wait),
            ("WAIT", Reply::Wait),
            ("a", Reply::Quit),
            ("abort", Reply::Quit),
            ("wiat", Reply::Quit),
        ] {
            assert_eq!(blocker_answer(line), reply, "{line:?}");
        }
    }
}
