//! Named crash points for the crash-safety suite (tests/engine_safety.rs).
//!
//! Built with the cargo feature `failpoints` (scripts/test enables it), a
//! point kills this process with SIGKILL when `PGPILOT_TEST_KILL_AT` names it:
//! `NAME` kills at its first pass, `NAME:N` at its N-th (counting from 1).
//! Passes of other points are not counted, so a test can aim at one place of
//! the run. A malformed value aborts the process (SIGABRT, not SIGKILL), so a
//! suite that expects a kill cannot mistake a typo for one.
//!
//! Call a point as `failpoint::point("name")`, with a literal name: the suite
//! reads the names from the source in that form and kills at every one.
//! Points on the rollback path are named `rollback-…`, which tells the suite
//! to reach them with `pgpilot rollback`.
//!
//! Without the feature (every build a user runs) `point` is an empty inline
//! function and `armed` is `false`: the environment is never read. `cfg(test)`
//! would not do, since the suite drives the `pgpilot` binary, which is built
//! without it.

#[cfg(feature = "failpoints")]
mod hook {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The point to kill at and at which of its passes.
    pub(super) struct KillAt {
        pub(super) name: String,
        pub(super) pass: u64,
    }

    static KILL_AT: OnceLock<Option<KillAt>> = OnceLock::new();
    static PASSED: AtomicU64 = AtomicU64::new(0);

    /// `NAME` or `NAME:N` with N ≥ 1.
    pub(super) fn parse(spec: &str) -> Result<KillAt, String> {
        let (name, pass) = match spec.rsplit_once(':') {
            Some((name, n)) => match n.parse::<u64>() {
                Ok(pass) if pass >= 1 => (name, pass),
                _ => return Err(format!("{n:?} is not a pass number (1, 2, …)")),
            },
            None => (spec, 1),
        };
        // A letter first: the old form, a bare count (`=5`), is refused
        // rather than taken for a point that is never reached.
        let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !well_formed {
            return Err(format!("{name:?} is not a crash point name"));
        }
        Ok(KillAt {
            name: name.to_string(),
            pass,
        })
    }

    fn kill_at() -> Option<&'static KillAt> {
        KILL_AT
            .get_or_init(|| {
                let spec = std::env::var("PGPILOT_TEST_KILL_AT").ok()?;
                match parse(&spec) {
                    Ok(k) => Some(k),
                    Err(why) => {
                        eprintln!(
                            "pgpilot: PGPILOT_TEST_KILL_AT={spec:?}: {why}; expected NAME or NAME:N (see src/engine/failpoint.rs)"
                        );
                        std::process::abort();
                    }
                }
            })
            .as_ref()
    }

    pub fn armed() -> bool {
        kill_at().is_some()
    }

    pub fn point(name: &str) {
        let Some(k) = kill_at() else { return };
        if k.name != name {
            return;
        }
        if PASSED.fetch_add(1, Ordering::Relaxed) + 1 == k.pass {
            // SAFETY: kill(2) on our own pid with a valid signal number.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Whether a crash point may kill this process (a test asked for it).
#[cfg(feature = "failpoints")]
pub fn armed() -> bool {
    hook::armed()
}

/// Whether a crash point may kill this process: never without the
/// `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed() -> bool {
    false
}

/// Marks a place where a crash must leave the target and the audit
/// consistent. The name is what `PGPILOT_TEST_KILL_AT` aims at; the suite
/// finds every name in the source and kills at each.
#[cfg(feature = "failpoints")]
pub fn point(name: &str) {
    hook::point(name);
}

/// Marks a place where a crash must leave the target and the audit
/// consistent; without the `failpoints` feature it does nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// `PGPILOT_TEST_YIELD_AT=NAME` (tests/queue_yield.rs): true at the first
/// pass of the place NAME, where the engine then acts as if its queue watch
/// had yielded at that moment, its cancel arriving there (a cancel racing
/// the grant). Never true without the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn yield_at(name: &str) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    std::env::var("PGPILOT_TEST_YIELD_AT").is_ok_and(|v| v == name)
        && !DONE.swap(true, Ordering::Relaxed)
}

/// Never true without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn yield_at(_name: &str) -> bool {
    false
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::hook::parse;

    #[test]
    fn a_name_alone_is_its_first_pass_and_a_number_picks_another() {
        let k = parse("commit-sent").map_err(|e| e.to_string());
        assert_eq!(
            k.map(|k| (k.name, k.pass)),
            Ok(("commit-sent".to_string(), 1))
        );
        let k = parse("commit-sent:3").map_err(|e| e.to_string());
        assert_eq!(
            k.map(|k| (k.name, k.pass)),
            Ok(("commit-sent".to_string(), 3))
        );
    }

    #[test]
    fn a_malformed_spec_is_refused() {
        for bad in [
            "",
            "commit-sent:0",
            "commit-sent:",
            "commit-sent:x",
            ":2",
            "3",
            "Commit",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
