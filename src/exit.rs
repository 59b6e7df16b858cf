//! Exit codes (a contract, see DESIGN.md, "Commands"): scripts and CI depend
//! on them. The engine reports how a run ended ([`Outcome`]) and why a session
//! could not open ([`OpenError`]); this module alone turns those into codes,
//! so the engine knows nothing of processes and their exit statuses.

use crate::engine::Outcome;
use crate::engine::open::OpenError;

/// Done: every step applied or checked, or nothing was asked.
pub const OK: u8 = 0;
/// A validation error, a failed step, or pgpilot could not do its work.
pub const FAILED: u8 = 1;
/// The command line was wrong.
pub const USAGE: u8 = 2;
/// Refused: a guard failed, a confirmation was missing or wrong, another
/// operator holds the runbook.
pub const REFUSED: u8 = 3;
/// Interrupted (Ctrl-C): 128 + SIGINT, as shells report it.
pub const INTERRUPTED: u8 = 130;

/// The exit code of a run that ended with `outcome`.
pub fn of(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Done => OK,
        Outcome::Failed(_) => FAILED,
        Outcome::Refused(_) => REFUSED,
        Outcome::Interrupted => INTERRUPTED,
    }
}

/// The exit code of a session that could not be opened.
pub fn of_open(error: &OpenError) -> u8 {
    match error {
        OpenError::AuditLog(_) | OpenError::Connect(_) => FAILED,
    }
}

/// Lets a closed stdout end the process as it ends any Unix filter
/// (`pgpilot status … | head`): Rust ignores SIGPIPE, so a write to a pipe
/// whose reader is gone fails and `println!` panics with a backtrace. Only
/// for commands whose work is to print: a `run` keeps ignoring it, so a
/// closed pipe never kills a session between a statement and its audit.
pub fn end_quietly_when_stdout_closes() {
    // SAFETY: sets a signal's disposition to the default, before any thread
    // that could be writing exists; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_onto_the_documented_codes() {
        assert_eq!(of(&Outcome::Done), 0);
        assert_eq!(of(&Outcome::Failed("x".into())), 1);
        assert_eq!(of(&Outcome::Refused("x".into())), 3);
        assert_eq!(of(&Outcome::Interrupted), 130);
    }
}
