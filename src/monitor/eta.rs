//! The ETA of a long statement, computed across polls.
//!
//! Method (docs/architecture.md, "Progress"): for each backend and command the
//! tracker keeps the first sample of the phase it is in (time, fraction of
//! the phase done). At the next poll the phase's rate is the fraction done
//! since that sample over the time since it; what is left of the phase
//! takes `(1 - fraction) / rate`. The phases still to come take their
//! weight relative to the current phase's: a phase of weight `w` took
//! `1 / rate` in all, so a later phase of weight `w'` is expected to take
//! `w' / w / rate`. A phase that waits for other sessions has no rate and
//! weight 0: no ETA is given while a statement waits (it may wait forever).
//!
//! The weights are rough shares of the work of a typical build, from the
//! order of the phases in the PostgreSQL documentation ("Progress
//! Reporting"): for CREATE INDEX CONCURRENTLY the table scan of the build
//! is about half, its sort and load 15 % each, and the validation (index
//! scan, sort, second table scan) the last 20 %.

use std::collections::HashMap;

use super::CommandProgress;

/// A phase, its share of the statement's work, and which of two
/// alternative paths it belongs to (0: every path). CLUSTER scans the heap
/// either sequentially then sorts, or through the index; ANALYZE samples a
/// table or an inheritance tree.
type Phase = (&'static str, f64, u8);

const CONCURRENT_INDEX: &[Phase] = &[
    ("initializing", 0.0, 0),
    ("waiting for writers before build", 0.0, 0),
    ("building index: scanning table", 0.5, 0),
    ("building index: sorting live tuples", 0.15, 0),
    ("building index: loading tuples in tree", 0.15, 0),
    ("waiting for writers before validation", 0.0, 0),
    ("index validation: scanning index", 0.05, 0),
    ("index validation: sorting tuples", 0.05, 0),
    ("index validation: scanning table", 0.1, 0),
    ("waiting for old snapshots", 0.0, 0),
    ("waiting for readers before marking dead", 0.0, 0),
    ("waiting for readers before dropping", 0.0, 0),
];

const INDEX: &[Phase] = &[
    ("initializing", 0.0, 0),
    ("building index: scanning table", 0.6, 0),
    ("building index: sorting live tuples", 0.2, 0),
    ("building index: loading tuples in tree", 0.2, 0),
];

const VACUUM: &[Phase] = &[
    ("initializing", 0.0, 0),
    ("scanning heap", 0.6, 0),
    ("vacuuming indexes", 0.2, 0),
    ("vacuuming heap", 0.15, 0),
    ("cleaning up indexes", 0.03, 0),
    ("truncating heap", 0.01, 0),
    ("performing final cleanup", 0.01, 0),
];

const CLUSTER: &[Phase] = &[
    ("initializing", 0.0, 0),
    ("seq scanning heap", 0.5, 1),
    ("sorting tuples", 0.2, 1),
    ("index scanning heap", 0.7, 2),
    ("writing new heap", 0.2, 0),
    ("swapping relation files", 0.02, 0),
    ("rebuilding index", 0.08, 0),
    ("performing final cleanup", 0.0, 0),
];

const ANALYZE: &[Phase] = &[
    ("initializing", 0.0, 0),
    ("acquiring sample rows", 0.8, 1),
    ("acquiring inherited sample rows", 0.8, 2),
    ("computing statistics", 0.15, 0),
    ("computing extended statistics", 0.05, 0),
    ("finalizing analyze", 0.0, 0),
];

fn phases(command: &str) -> Option<&'static [Phase]> {
    match command {
        "CREATE INDEX CONCURRENTLY" | "REINDEX CONCURRENTLY" => Some(CONCURRENT_INDEX),
        "CREATE INDEX" | "REINDEX" => Some(INDEX),
        "VACUUM" => Some(VACUUM),
        "CLUSTER" | "VACUUM FULL" => Some(CLUSTER),
        "ANALYZE" => Some(ANALYZE),
        _ => None,
    }
}

/// The weight of `phase` of `command` and the weight of the phases after
/// it on the same path. A phase not in the table (an index access method
/// with phases of its own, a command without phases such as COPY) counts
/// as the whole of what is left: `(1, 0)`.
pub fn weights(command: &str, phase: &str) -> (f64, f64) {
    let Some(table) = phases(command) else {
        return (1.0, 0.0);
    };
    // An access method other than btree names its build phase
    // `building index` alone, or with words of its own.
    let found = table.iter().position(|p| p.0 == phase).or_else(|| {
        phase
            .starts_with("building index")
            .then(|| {
                table
                    .iter()
                    .rposition(|p| p.0.starts_with("building index"))
            })
            .flatten()
    });
    let Some(i) = found else {
        return (1.0, 0.0);
    };
    let (name, w, path) = table[i];
    let w = if name == phase {
        w
    } else {
        // The whole build under one name.
        table
            .iter()
            .filter(|p| p.0.starts_with("building index"))
            .map(|p| p.1)
            .sum()
    };
    let after = table[i + 1..]
        .iter()
        .filter(|p| p.2 == 0 || path == 0 || p.2 == path)
        .map(|p| p.1)
        .sum();
    (w, after)
}

/// Seconds left, from the first sample of the phase `(t0, f0)` and the
/// latest `(t, f)` (fractions of the phase, times in seconds).
pub fn eta(command: &str, phase: &str, first: (f64, f64), now: (f64, f64)) -> Option<f64> {
    if phase.starts_with("waiting") {
        return None;
    }
    let (w, after) = weights(command, phase);
    let ((t0, f0), (t, f)) = (first, now);
    if w <= 0.0 || t <= t0 || f <= f0 {
        return None;
    }
    let rate = (f - f0) / (t - t0);
    Some(((1.0 - f).max(0.0) + after / w) / rate)
}

/// The first sample of each statement's current phase, by backend.
#[derive(Debug, Default)]
pub struct Tracker {
    started: HashMap<(i32, String), (String, f64, f64)>,
}

impl Tracker {
    /// Fills `eta_s` of each entry read at `t` (seconds on a monotonic
    /// clock), and forgets statements that ended.
    pub fn update(&mut self, progress: &mut [CommandProgress], t: f64) {
        self.started
            .retain(|k, _| progress.iter().any(|p| p.pid == k.0 && p.command == k.1));
        for p in progress.iter_mut() {
            let f = p.percent.map(|x| x / 100.0);
            let key = (p.pid, p.command.clone());
            let entry = self.started.get(&key);
            let keep = match (entry, f) {
                (Some((phase, _, f0)), Some(f)) => *phase == p.phase && f >= *f0,
                _ => false,
            };
            match (keep, f, entry) {
                (true, Some(f), Some((_, t0, f0))) => {
                    p.eta_s = eta(&p.command, &p.phase, (*t0, *f0), (t, f));
                }
                (_, f, _) => {
                    self.started
                        .insert(key, (p.phase.clone(), t, f.unwrap_or(0.0)));
                    p.eta_s = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIC: &str = "CREATE INDEX CONCURRENTLY";

    #[test]
    fn the_table_scan_of_a_concurrent_build_counts_the_phases_after_it() {
        // Half the table scanned in 10 s: 10 s more for the scan, and the
        // rest of the build (0.5 of the work against the scan's 0.5) as long
        // as the whole scan: 20 s.
        let eta = eta(
            CIC,
            "building index: scanning table",
            (0.0, 0.0),
            (10.0, 0.5),
        );
        assert_eq!(eta.map(|e| e.round()), Some(30.0));
    }

    #[test]
    fn the_last_working_phase_counts_only_itself() {
        let e = eta(
            CIC,
            "index validation: scanning table",
            (100.0, 0.2),
            (110.0, 0.6),
        );
        assert_eq!(e.map(|e| e.round()), Some(10.0));
    }

    #[test]
    fn a_plain_build_weights_its_own_phases() {
        assert_eq!(
            weights("CREATE INDEX", "building index: scanning table"),
            (0.6, 0.4)
        );
        let (w, after) = weights(CIC, "building index: sorting live tuples");
        assert_eq!(w, 0.15);
        assert!((after - 0.35).abs() < 1e-9);
    }

    #[test]
    fn no_eta_while_waiting_or_before_the_phase_moved() {
        assert_eq!(
            eta(CIC, "waiting for old snapshots", (0.0, 0.0), (5.0, 0.5)),
            None
        );
        assert_eq!(
            eta(
                CIC,
                "building index: scanning table",
                (0.0, 0.3),
                (5.0, 0.3)
            ),
            None
        );
    }

    #[test]
    fn a_cluster_by_index_skips_the_sort_of_the_other_path() {
        let (w, after) = weights("CLUSTER", "index scanning heap");
        assert_eq!(w, 0.7);
        assert!((after - 0.3).abs() < 1e-9);
        let (_, after) = weights("VACUUM FULL", "seq scanning heap");
        assert!((after - 0.5).abs() < 1e-9);
    }

    #[test]
    fn an_unknown_command_is_one_phase() {
        assert_eq!(weights("COPY FROM", "copying"), (1.0, 0.0));
        let e = eta("COPY FROM", "copying", (0.0, 0.0), (4.0, 0.25));
        assert_eq!(e.map(|e| e.round()), Some(12.0));
    }

    fn sample(phase: &str, percent: f64) -> CommandProgress {
        CommandProgress {
            pid: 7,
            command: CIC.into(),
            relation: Some("t".into()),
            phase: phase.into(),
            done: None,
            total: None,
            percent: Some(percent),
            eta_s: None,
            locker: None,
        }
    }

    #[test]
    fn the_tracker_measures_the_rate_across_polls_and_restarts_per_phase() {
        let mut t = Tracker::default();
        let scan = "building index: scanning table";
        let mut first = [sample(scan, 10.0)];
        t.update(&mut first, 0.0);
        assert_eq!(first[0].eta_s, None, "one sample gives no rate");
        let mut second = [sample(scan, 30.0)];
        t.update(&mut second, 2.0);
        // 10 %/s: 7 s left of the scan, and 10 s for the rest of the build.
        assert_eq!(second[0].eta_s.map(|e| e.round()), Some(17.0));
        let mut next = [sample("building index: sorting live tuples", 0.0)];
        t.update(&mut next, 3.0);
        assert_eq!(next[0].eta_s, None, "a new phase starts a new rate");
        t.update(&mut [], 4.0);
        assert!(t.started.is_empty(), "an ended statement is forgotten");
    }
}
