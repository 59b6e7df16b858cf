//! How long the TUI takes to draw one frame when the lock panels are full.
//!
//! Run with `scripts/bench-tui` (or `cargo bench --bench tui`); the figures go
//! to docs/benchmarks.md, section "TUI". The script also measures the real
//! binary (idle CPU, peak RSS) against a throwaway server; this file is only
//! the render half, which needs no server.
//!
//! The App is built from a real runbook (runbooks/users-high-risk-change.toml)
//! and put in the state the lock panels matter most in: the earlier steps are
//! done, `drop-legacy-id` runs and its ALTER waits behind an idle-in-transaction
//! session, 10,000 log lines. It is given a snapshot made by `monitor::build`
//! from 1,000 synthetic `Backend` rows: 20 blocking chains of depth 3 (a root
//! holder and three waiters each, pgpilot's executor one of them), 150 long
//! active transactions, 150 long idle-in-transaction sessions and 620 ordinary
//! short ones; a third of the query texts are 2,000 characters (the monitor's
//! `left(query, 2000)` cap), many over several lines.
//!
//! Each scenario has its own `Terminal<TestBackend>`; frames are drawn with
//! `terminal.draw(|f| views::draw(f, &app))` round-robin across scenarios (so
//! that machine drift hits all alike) and timed one by one. A draw of an
//! unchanged state is what the UI loop does on every monitor tick; the "full
//! repaint" rows clear the terminal (untimed) before each draw, so every cell
//! is diffed and written, as after a resize.
//!
//! Knobs (environment): BENCH_TUI_FRAMES (timed frames per scenario, default
//! 1000), BENCH_TUI_SHOW=1 prints the 1,000-backend screens once.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it draws three
//! frames per scenario and checks what they show, without timing anything.

use std::path::Path;
use std::time::{Duration, Instant};

use pgpilot::check::check_file;
use pgpilot::engine::{Ask, EngineEvent, StepOutcome, TargetInfo};
use pgpilot::monitor::{self, Backend, LockWait, Snapshot};
use pgpilot::tui::app::{App, LogLevel, SessionKind};
use pgpilot::tui::{keys, views};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const RUNBOOK: &str = "runbooks/users-high-risk-change.toml";
/// The step that runs, waiting on a lock, in every scenario.
const RUNNING_STEP: &str = "drop-legacy-id";
const BACKENDS: usize = 1000;
const CHAINS: usize = 20;
/// Waiters per chain, below its root holder.
const CHAIN_DEPTH: usize = 3;
const LONG_ACTIVE: usize = 150;
const LONG_IDLE_IN_TX: usize = 150;
const LOG_LINES: usize = 10_000;
/// The executor's backend: chain 0's first waiter.
const EXECUTOR_PID: i32 = 10_001;
const MONITOR_PID: i32 = 9_999;
const SIZES: [(u16, u16); 2] = [(160, 45), (80, 24)];
const TARGET: Duration = Duration::from_millis(2);

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let frames = if bench {
        env_usize("BENCH_TUI_FRAMES", 1000)
    } else {
        3
    };
    let warmup = if bench { 50 } else { 1 };

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RUNBOOK);
    let checked = check_file(&path).unwrap_or_else(|d| {
        panic!(
            "{RUNBOOK} must pass check: {:?}",
            d.first().map(ToString::to_string)
        )
    });
    let long = checked.runbook.settings.long_transaction;
    let new_app = || {
        let mut app = App::new(
            &checked.runbook,
            &checked.analysis,
            SessionKind::Run,
            None,
            "target".into(),
            keys::defaults(),
        );
        mid_run(&mut app);
        app
    };

    let started = Instant::now();
    let full = monitor::build(backends(), long, Some(EXECUTOR_PID), MONITOR_PID, 3.2);
    let build_time = started.elapsed();
    assert_eq!(full.summary.sessions, BACKENDS);
    assert_eq!(full.summary.waiting, CHAINS * CHAIN_DEPTH);
    let empty = monitor::build(Vec::new(), long, Some(EXECUTOR_PID), MONITOR_PID, 0.4);
    let chains_only = monitor::build(
        backends().into_iter().filter(|b| b.pid < 20_000).collect(),
        long,
        Some(EXECUTOR_PID),
        MONITOR_PID,
        1.0,
    );
    let no_chains = monitor::build(
        backends().into_iter().filter(|b| b.pid >= 20_000).collect(),
        long,
        Some(EXECUTOR_PID),
        MONITOR_PID,
        3.0,
    );

    let mut scenarios = Vec::new();
    for (w, h) in SIZES {
        scenarios.push(Scenario::new(
            "empty snapshot (baseline)",
            (w, h),
            new_app(),
            empty.clone(),
            false,
        ));
        scenarios.push(Scenario::new(
            "1,000 backends",
            (w, h),
            new_app(),
            full.clone(),
            false,
        ));
    }
    scenarios.push(Scenario::new(
        "1,000 backends, full repaint",
        SIZES[0],
        new_app(),
        full.clone(),
        true,
    ));
    scenarios.push(Scenario::new(
        "empty snapshot, full repaint",
        SIZES[0],
        new_app(),
        empty.clone(),
        true,
    ));
    scenarios.push(Scenario::new(
        "only the 20 chains (80 backends)",
        SIZES[0],
        new_app(),
        chains_only,
        false,
    ));
    scenarios.push(Scenario::new(
        "only the other 920 (300 long, no waits)",
        SIZES[0],
        new_app(),
        no_chains,
        false,
    ));

    for s in &mut scenarios {
        for _ in 0..warmup {
            s.frame(false);
        }
    }
    check_screens(&scenarios);
    if bench && std::env::var_os("BENCH_TUI_SHOW").is_some() {
        for s in scenarios
            .iter()
            .filter(|s| s.name == "1,000 backends" || s.name.starts_with("empty snapshot ("))
        {
            println!("{} at {}x{}:", s.name, s.size.0, s.size.1);
            println!("{}", screen(&s.terminal));
        }
    }
    let load_before = loadavg();
    for _ in 0..frames {
        for s in &mut scenarios {
            s.frame(true);
        }
    }
    if !bench {
        return;
    }

    println!(
        "TUI render: {RUNBOOK}, step {RUNNING_STEP} running, {LOG_LINES} log lines; \
         {frames} timed frames per scenario after {warmup} warm-up, round-robin"
    );
    println!(
        "snapshot: {} backends ({} tree rows, {} waiting, {} long transactions), \
         monitor::build took {:.2} ms",
        full.summary.sessions,
        full.tree.len(),
        full.summary.waiting,
        full.long_transactions.len(),
        ms(build_time)
    );
    println!("load average before: {load_before}, after: {}", loadavg());
    println!();
    println!(
        "| scenario | size | wall median | wall p99 | wall max | frames over 2 ms | CPU median | CPU p99 | CPU max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &scenarios {
        let (w, c) = (s.stats(), s.cpu_stats());
        println!(
            "| {} | {}×{} | {:.3} ms | {:.3} ms | {:.3} ms | {} of {} | {:.3} ms | {:.3} ms | {:.3} ms |",
            s.name,
            s.size.0,
            s.size.1,
            ms(w.median),
            ms(w.p99),
            ms(w.max),
            s.samples.iter().filter(|d| **d >= TARGET).count(),
            s.samples.len(),
            ms(c.median),
            ms(c.p99),
            ms(c.max)
        );
    }
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let (mut wall_met, mut cpu_met) = (true, true);
    for (w, h) in SIZES {
        let find = |name: &str| {
            scenarios
                .iter()
                .find(|s| s.name == name && s.size == (w, h))
                .expect("scenario")
        };
        let (loaded, base) = (find("1,000 backends"), find("empty snapshot (baseline)"));
        let (lw, bw, lc, bc) = (
            loaded.stats(),
            base.stats(),
            loaded.cpu_stats(),
            base.cpu_stats(),
        );
        let wall_ok = lw.median < TARGET && lw.p99 < TARGET;
        let cpu_ok = lc.median < TARGET && lc.p99 < TARGET;
        wall_met &= wall_ok;
        cpu_met &= cpu_ok;
        println!(
            "{w}×{h}: 1,000 backends / empty snapshot = {:.2}× wall median, {:.2}× CPU median; \
             under 2 ms at median and p99: wall {}, CPU {}",
            ratio(lw.median, bw.median),
            ratio(lc.median, bc.median),
            verdict(wall_ok),
            verdict(cpu_ok)
        );
    }
    println!(
        "render target (median and p99 under 2 ms at both sizes): wall clock {}, thread CPU time {}",
        verdict(wall_met),
        verdict(cpu_met)
    );
}

struct Scenario {
    name: &'static str,
    size: (u16, u16),
    app: App,
    terminal: Terminal<TestBackend>,
    full_repaint: bool,
    /// Wall-clock time of each draw.
    samples: Vec<Duration>,
    /// CPU time of the drawing thread for each draw: what preemption by other
    /// processes on a shared machine does not inflate.
    cpu: Vec<Duration>,
}

struct Stats {
    median: Duration,
    p99: Duration,
    max: Duration,
}

impl Scenario {
    fn new(
        name: &'static str,
        size: (u16, u16),
        mut app: App,
        snapshot: Snapshot,
        full_repaint: bool,
    ) -> Scenario {
        app.on_snapshot(snapshot);
        // A sparkline with some history: waiting counts over the last 120 polls.
        app.waiting_history = (0..120u64).map(|i| (i * 7) % 61).collect();
        let Ok(terminal) = Terminal::new(TestBackend::new(size.0, size.1));
        Scenario {
            name,
            size,
            app,
            terminal,
            full_repaint,
            samples: Vec::new(),
            cpu: Vec::new(),
        }
    }

    fn frame(&mut self, record: bool) {
        if self.full_repaint {
            let Ok(()) = self.terminal.clear();
        }
        let app = &self.app;
        let cpu_started = thread_cpu();
        let started = Instant::now();
        let Ok(_) = self.terminal.draw(|f| views::draw(f, app));
        let took = started.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu_started);
        if record {
            self.samples.push(took);
            self.cpu.push(cpu);
        }
    }

    fn stats(&self) -> Stats {
        stats(&self.samples)
    }

    fn cpu_stats(&self) -> Stats {
        stats(&self.cpu)
    }
}

fn stats(samples: &[Duration]) -> Stats {
    let mut v = samples.to_vec();
    v.sort_unstable();
    let n = v.len();
    let p99 = (n * 99).div_ceil(100).max(1) - 1;
    Stats {
        median: v[n / 2],
        p99: v[p99],
        max: v[n - 1],
    }
}

/// CPU time the calling thread has used (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The screens show what the scenario is about (so a change to the views
/// cannot make the bench time an empty panel without anyone noticing).
fn check_screens(scenarios: &[Scenario]) {
    for s in scenarios {
        let text = screen(&s.terminal);
        let want: &[&str] = match (s.name, s.size.0 >= 120) {
            ("empty snapshot (baseline)" | "empty snapshot, full repaint", true) => &[
                "Locks — 0 waiting",
                "no session waits for a lock",
                "none over the threshold",
                "ALTER TABLE users DROP COLUMN legacy_id",
            ],
            ("empty snapshot (baseline)", false) => &["no session waits for a lock"],
            ("1,000 backends" | "1,000 backends, full repaint", true) => &[
                "Locks — 60 waiting",
                "pgpilot is waiting for AccessExclusiveLock on users",
                "10001 (pgpilot) waits",
                "[3 queued]",
                "waiting 60 · longest",
            ],
            ("1,000 backends", false) => &["Locks — 60 waiting", "pgpilot is waiting"],
            ("only the 20 chains (80 backends)", _) => &["Locks — 60 waiting"],
            ("only the other 920 (300 long, no waits)", _) => {
                &["no session waits for a lock", "waiting 0 · longest"]
            }
            _ => &[],
        };
        for w in want {
            assert!(
                text.contains(w),
                "{} at {:?} should show {w:?}:\n{text}",
                s.name,
                s.size
            );
        }
    }
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buf = terminal.backend().buffer();
    let width = buf.area.width as usize;
    let mut out = String::new();
    for row in buf.content.chunks(width) {
        for cell in row {
            out.push_str(cell.symbol());
        }
        out.push('\n');
    }
    out
}

/// Puts the App where a DBA would watch the lock panels: connected, the
/// pre-checks and backup done, `drop-legacy-id` running (and waiting), a long
/// log behind it.
fn mid_run(app: &mut App) {
    app.on_engine(EngineEvent::Connected(TargetInfo {
        host: "db-staging-1.internal".into(),
        port: 5432,
        database: "diagnosticpro".into(),
        role: "postgres".into(),
        server_version: "15.14 (Debian 15.14-0+deb12u1)".into(),
        primary: true,
        pid: EXECUTOR_PID,
    }));
    for (name, detail) in [
        (
            "environment",
            "staging is one of the runbook's environments",
        ),
        ("database", "connected to diagnosticpro"),
        ("primary", "the server is a primary"),
    ] {
        app.on_engine(EngineEvent::Guard {
            name: name.into(),
            passed: true,
            detail: detail.into(),
        });
    }
    let done: Vec<(String, String)> = app
        .steps
        .iter()
        .take_while(|s| s.id != RUNNING_STEP)
        .map(|s| (s.id.clone(), s.kind.as_str().to_string()))
        .collect();
    assert!(
        done.len() < app.steps.len(),
        "{RUNNING_STEP} is in the runbook"
    );
    for (n, (id, kind)) in done.iter().enumerate() {
        app.on_engine(EngineEvent::Asks(Ask::Next { step: id.clone() }));
        app.on_engine(EngineEvent::StepStarted {
            step: id.clone(),
            attempt: 1,
            of: 1,
        });
        let outcome = match kind.as_str() {
            "pause" => StepOutcome::Acknowledged,
            "backup" | "change" => StepOutcome::Applied,
            _ => StepOutcome::Passed,
        };
        app.on_engine(EngineEvent::StepDone {
            step: id.clone(),
            outcome,
            duration: Duration::from_millis(3 + 17 * n as u64),
            rows: Some(n as u64),
            captured: (id == "rows-before").then(|| ("rows_before".into(), "2000".into())),
        });
    }
    app.on_engine(EngineEvent::Asks(Ask::Next {
        step: RUNNING_STEP.into(),
    }));
    app.on_engine(EngineEvent::StepStarted {
        step: RUNNING_STEP.into(),
        attempt: 1,
        of: 11,
    });
    app.on_engine(EngineEvent::Retrying {
        step: RUNNING_STEP.into(),
        attempt: 2,
        of: 11,
        wait: Duration::from_secs(2),
        message: "canceling statement due to lock timeout".into(),
        yielded: false,
    });
    app.on_engine(EngineEvent::StepStarted {
        step: RUNNING_STEP.into(),
        attempt: 2,
        of: 11,
    });
    // 10,000 log lines: what a long session collects (notices, retries,
    // monitor notes, some longer than any panel) before the lines above.
    let tail = std::mem::take(&mut app.log);
    let mut i = 0;
    while app.log.len() + tail.len() < LOG_LINES {
        let (level, text) = match i % 4 {
            0 => (
                LogLevel::Info,
                format!("[no-long-transactions] NOTICE: relation \"users\" has {i} dead tuples"),
            ),
            1 => (
                LogLevel::Warn,
                format!(
                    "[drop-legacy-id] attempt {}/11: canceling statement due to lock timeout",
                    i % 11 + 1
                ),
            ),
            2 => (
                LogLevel::Warn,
                format!("monitor: poll failed: canceling statement due to statement timeout ({i})"),
            ),
            _ => (
                LogLevel::Info,
                format!(
                    "pg_cancel_backend({}) sent — {}",
                    20_000 + i,
                    "the session held RowExclusiveLock on users for longer than the runbook's \
                     long_transaction threshold and was the root of a chain of waiters; "
                        .repeat(2)
                ),
            ),
        };
        app.log(level, text);
        i += 1;
    }
    app.log.extend(tail);
    assert_eq!(app.log.len(), LOG_LINES);
}

/// 1,000 backends: 20 chains of depth 3 (pids 10,000 + 10·chain + depth),
/// then long active, long idle-in-transaction and ordinary short sessions
/// (pids from 20,000).
fn backends() -> Vec<Backend> {
    let mut rng = fastrand::Rng::with_seed(20_261_123);
    let mut out = Vec::with_capacity(BACKENDS);
    for c in 0..CHAINS {
        let root = 10_000 + 10 * c as i32;
        out.push(backend(
            root,
            "idle in transaction",
            Some(600.0 + 37.0 * c as f64),
            query(&mut rng, c),
        ));
        for d in 1..=CHAIN_DEPTH {
            let pid = root + d as i32;
            let (mode, q) = match d {
                1 if pid == EXECUTOR_PID => (
                    "AccessExclusiveLock",
                    "ALTER TABLE users DROP COLUMN legacy_id".to_string(),
                ),
                1 => (
                    "AccessExclusiveLock",
                    format!("ALTER TABLE users ADD COLUMN c{c} integer"),
                ),
                _ => ("AccessShareLock", query(&mut rng, c + d)),
            };
            let mut b = backend(pid, "active", Some(5.0 + d as f64), q);
            b.wait_event_type = Some("Lock".into());
            b.wait_event = Some("relation".into());
            b.blocked_by = vec![pid - 1];
            b.waiting_for = Some(LockWait {
                mode: mode.into(),
                locktype: "relation".into(),
                relation: Some("users".into()),
                wait_s: Some(1.0 + rng.f64() * 120.0),
            });
            out.push(b);
        }
    }
    let mut pid = 20_000;
    let mut next = |state: &str, age: f64, rng: &mut fastrand::Rng| {
        pid += 1;
        let q = query(rng, pid as usize);
        backend(pid, state, Some(age), q)
    };
    for _ in 0..LONG_ACTIVE {
        let age = 301.0 + rng.f64() * 7200.0;
        out.push(next("active", age, &mut rng));
    }
    for _ in 0..LONG_IDLE_IN_TX {
        let age = 301.0 + rng.f64() * 3600.0;
        out.push(next("idle in transaction", age, &mut rng));
    }
    while out.len() < BACKENDS {
        let (state, age) = if rng.u8(0..4) == 0 {
            ("idle in transaction", rng.f64() * 60.0)
        } else {
            ("active", rng.f64() * 2.0)
        };
        out.push(next(state, age, &mut rng));
    }
    out
}

fn backend(pid: i32, state: &str, xact_age_s: Option<f64>, query: String) -> Backend {
    Backend {
        pid,
        backend_type: "client backend".into(),
        user: Some(if pid % 3 == 0 { "reporting" } else { "app" }.into()),
        application: Some(format!("api-worker-{}", pid % 17)),
        client: format!("10.0.{}.{}", pid % 7, pid % 250),
        state: state.into(),
        wait_event_type: None,
        wait_event: None,
        xact_age_s,
        query_age_s: xact_age_s.map(|a| a / 2.0),
        state_age_s: xact_age_s.map(|a| a / 3.0),
        query,
        blocked_by: Vec::new(),
        waiting_for: None,
    }
}

/// Query texts as pg_stat_activity shows them: a third short, a third a few
/// lines, a third multi-line reports cut at 2,000 characters.
fn query(rng: &mut fastrand::Rng, n: usize) -> String {
    match n % 3 {
        0 => format!(
            "UPDATE users SET last_login_at = now() WHERE id = {}",
            rng.u32(1..2000)
        ),
        1 => format!(
            "SELECT u.id, u.email, u.display_name, count(e.id) AS devices\n  \
             FROM users u\n  LEFT JOIN equipment e ON e.owner_id = u.id\n \
             WHERE u.created_at > now() - interval '{} days'\n \
             GROUP BY u.id\n ORDER BY devices DESC\n LIMIT 50",
            rng.u32(1..400)
        ),
        _ => {
            let mut q = String::from(
                "SELECT e.id, e.make, e.model, e.status, e.last_seen_at, u.email\n  \
                 FROM equipment e\n  JOIN users u ON u.id = e.owner_id\n \
                 WHERE e.status <> 'retired'\n   AND e.id IN (",
            );
            while q.len() < 2000 {
                q.push_str(&rng.u32(1..5000).to_string());
                q.push_str(",\n                ");
            }
            q.truncate(2000);
            q
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
