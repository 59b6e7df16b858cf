//! Progress lines for `--headless`: while a step whose statement reports
//! progress runs (CREATE INDEX, REINDEX, VACUUM, CLUSTER, ANALYZE, COPY:
//! [`crate::analysis::StatementKind::reports_progress`]), a light monitor
//! connection polls the server once a second and the executor's progress
//! is printed at gh-ost's cadence ([`cadence`]); a new phase or a new
//! session waited for is said at once. No other step opens it.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::monitor::{CommandProgress, Feed, Watcher, text};
use crate::pg::ConnSpec;

/// How often a progress line may be printed, `elapsed` after the step
/// started: every second for the first minute, every 5 s up to three
/// minutes, every 30 s after (gh-ost's status cadence).
pub fn cadence(elapsed: Duration) -> Duration {
    match elapsed.as_secs() {
        0..60 => Duration::from_secs(1),
        60..180 => Duration::from_secs(5),
        _ => Duration::from_secs(30),
    }
}

/// What was said last of the running step.
struct Said {
    at: Instant,
    phase: String,
    locker: Option<i32>,
}

struct Running {
    step: String,
    started: Instant,
    said: Option<Said>,
}

pub struct ProgressWatch {
    watcher: Watcher,
    /// The steps that report progress.
    steps: HashSet<String>,
    running: Option<Running>,
}

impl ProgressWatch {
    /// A watch for `steps`; it connects (as `pgpilot-monitor`) at the first
    /// poll, when one of them runs.
    pub fn new(spec: &ConnSpec, steps: HashSet<String>) -> ProgressWatch {
        ProgressWatch {
            watcher: Watcher::new(spec, Duration::from_secs(3600), Duration::from_secs(1)),
            steps,
            running: None,
        }
    }

    /// The executor's backend, whose progress is shown.
    pub fn connected(&mut self, pid: i32) {
        self.watcher.set_executor(Some(pid));
    }

    pub fn step_started(&mut self, step: &str) {
        let same = self.running.as_ref().is_some_and(|r| r.step == step);
        if self.steps.contains(step) && !same {
            self.running = Some(Running {
                step: step.to_string(),
                started: Instant::now(),
                said: None,
            });
        }
    }

    pub fn step_ended(&mut self) {
        self.running = None;
    }

    /// Whether a step that reports progress runs: only then is it polled.
    pub fn active(&self) -> bool {
        self.running.is_some()
    }

    pub fn due(&self) -> Instant {
        self.watcher.due()
    }

    /// One poll; the lines to print now.
    pub async fn poll(&mut self) -> Vec<String> {
        let (feed, _) = self.watcher.next().await;
        let Feed::Snapshot(snap) = feed else {
            return Vec::new();
        };
        let Some(executor) = snap.executor.as_ref().map(|e| e.pid) else {
            return Vec::new();
        };
        let Some(p) = snap.progress.iter().find(|p| p.pid == executor) else {
            return Vec::new();
        };
        match self.running.as_mut() {
            Some(r) => r.lines(p),
            None => Vec::new(),
        }
    }
}

impl Running {
    fn lines(&mut self, p: &CommandProgress) -> Vec<String> {
        let now = Instant::now();
        let locker = p.locker.as_ref().map(|l| l.pid);
        let news = self
            .said
            .as_ref()
            .is_none_or(|s| s.phase != p.phase || s.locker != locker);
        let due = self
            .said
            .as_ref()
            .is_none_or(|s| now.duration_since(s.at) >= cadence(now - self.started));
        if !news && !due {
            return Vec::new();
        }
        let mut lines = vec![format!("[{}] progress: {}", self.step, text::progress(p))];
        let new_locker = self.said.as_ref().is_none_or(|s| s.locker != locker);
        if let (Some(l), true) = (&p.locker, new_locker) {
            lines.push(format!(
                "[{}] the build waits for {} to end its transaction; lock_timeout ends the build first if it runs out \
                 (the INVALID index is dropped and the step fails): end that session to let the build finish \
                 (SELECT pg_terminate_backend({}))",
                self.step,
                l.named(),
                l.pid
            ));
        }
        self.said = Some(Said {
            at: now,
            phase: p.phase.clone(),
            locker,
        });
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_every_second_for_a_minute_then_less_often() {
        assert_eq!(cadence(Duration::from_secs(0)), Duration::from_secs(1));
        assert_eq!(cadence(Duration::from_secs(59)), Duration::from_secs(1));
        assert_eq!(cadence(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(cadence(Duration::from_secs(200)), Duration::from_secs(30));
    }
}
