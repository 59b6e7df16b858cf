//! Crash points for the crash-safety tests: with `PGPILOT_TEST_KILL_AT=N` set,
//! the process sends itself SIGKILL at the N-th point it passes (counting from
//! 1). Unset, a point costs one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static KILL_AT: OnceLock<Option<u64>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

fn kill_at() -> Option<u64> {
    *KILL_AT.get_or_init(|| {
        std::env::var("PGPILOT_TEST_KILL_AT")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// Whether a crash point may kill this process (a test asked for it).
pub fn armed() -> bool {
    kill_at().is_some()
}

/// Marks a point where a crash must leave the target and the audit consistent.
pub fn point(_name: &str) {
    if let Some(n) = kill_at() {
        let passed = PASSED.fetch_add(1, Ordering::Relaxed) + 1;
        if passed == n {
            // SAFETY: kill(2) on our own pid with a valid signal number.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
