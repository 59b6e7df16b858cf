//! Driving a session from the command line: the TUI when there is a terminal,
//! else the headless printer ([`crate::headless`]); the connection resolved,
//! the session opened, the engine spawned and driven to its end, its outcome
//! turned into an exit code. Used by `run`, `rollback` and `demo`; the engine
//! knows nothing of it.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use crate::check::Checked;
use crate::engine::{Mode, RunOptions, parse_confirms};
use crate::exit;
use crate::headless::Driver;
use crate::tui::app::SessionKind;
use crate::tui::keys::Binding;

/// How a session will be driven: the TUI or headless lines, and the answers given ahead.
pub struct Driving {
    pub tui: bool,
    pub bindings: Vec<Binding>,
    pub confirms: HashMap<String, String>,
    pub kind: SessionKind,
    /// How often the lock panels poll.
    pub interval: Duration,
}

/// Decides TUI or headless (`headless` asked for, or no terminal) and reads
/// the key map; `confirm` are the `--confirm STEP=PHRASE` values. Errors are
/// printed; the `Err` is the exit code.
pub fn prepare_drive(
    headless: bool,
    confirm: &[String],
    options: &mut RunOptions,
) -> Result<Driving, u8> {
    let confirms = parse_confirms(confirm).map_err(|m| {
        eprintln!("pgpilot: {m}");
        exit::USAGE
    })?;
    let tui = !headless && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if !headless && !tui {
        eprintln!(
            "pgpilot: no terminal for the TUI; running headless (say --headless to silence this)"
        );
    }
    let bindings = if tui {
        crate::tui::keys::load(crate::tui::keys::user_keymap().as_deref()).map_err(|m| {
            eprintln!("pgpilot: {m}");
            exit::USAGE
        })?
    } else {
        Vec::new()
    };
    let kind = match (&options.mode, options.rehearse) {
        (Mode::Rollback { .. }, _) => SessionKind::Rollback,
        (_, true) => SessionKind::Rehearsal,
        _ => SessionKind::Run,
    };
    options.interactive = tui;
    Ok(Driving {
        tui,
        bindings,
        confirms,
        kind,
        interval: Duration::from_secs(1),
    })
}

/// Opens the session and drives it to its end; returns the exit code.
pub async fn drive_session(
    checked: Checked,
    db: Option<String>,
    options: RunOptions,
    driving: Driving,
) -> u8 {
    let spec = match resolve(db.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let reporting = reporting_steps(&checked);
    let session =
        match crate::engine::open::open(checked.runbook, checked.analysis, &spec, options).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pgpilot: {}", crate::text::for_terminal(&e.to_string()));
                return exit::of_open(&e);
            }
        };
    if driving.tui {
        return crate::tui::run(session, driving.kind, driving.bindings, driving.interval).await;
    }
    let engine = crate::engine::spawn(session);
    let mut driver = Driver::new(driving.confirms);
    if !reporting.is_empty() {
        driver.progress = Some(crate::headless_progress::ProgressWatch::new(
            &spec, reporting,
        ));
    }
    let shown = driver
        .drive(engine.events, engine.replies, engine.control)
        .await;
    match engine.outcome.await {
        Ok(outcome) => exit::of(&outcome),
        Err(_) => exit::of(&shown),
    }
}

/// The steps whose statements report progress (headless prints it).
fn reporting_steps(checked: &Checked) -> std::collections::HashSet<String> {
    checked
        .runbook
        .steps()
        .zip(&checked.analysis.steps)
        .filter(|(_, a)| a.statements.iter().any(|s| s.kind.reports_progress()))
        .map(|((_, step), _)| step.id.clone())
        .collect()
}

/// The single-threaded runtime the commands run on; `None` (the error
/// printed) when it cannot start.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("pgpilot: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Resolves --db with libpq's fallbacks. What libpq would warn about (a
/// password file ignored for its permissions, an unsupported option) is
/// printed here, once, before anything connects: a connection that then
/// fails for want of a password is explained. Errors are printed too.
pub fn resolve(db: Option<&str>) -> Result<crate::pg::ConnSpec, u8> {
    let spec = crate::pg::ConnSpec::resolve(db).map_err(|e| {
        eprintln!("pgpilot: {}", crate::text::for_terminal(&e.to_string()));
        exit::FAILED
    })?;
    for warning in spec.warnings() {
        eprintln!("pgpilot: warning: {}", crate::text::for_terminal(warning));
    }
    Ok(spec)
}

/// Resolves --db (see [`resolve`]) and connects; errors are printed.
pub async fn connect(
    db: Option<&str>,
    application: &str,
) -> Result<(crate::pg::ConnSpec, crate::pg::Connection), u8> {
    let spec = resolve(db)?.with_application_name(application);
    let connection = spec.connect().await.map_err(|e| {
        eprintln!("pgpilot: {}", crate::text::for_terminal(&e.to_string()));
        exit::FAILED
    })?;
    Ok((spec, connection))
}
