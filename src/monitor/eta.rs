//! The ETA of a long statement, computed across polls.
//!
//! Method (docs/architecture.md, "Progress"): a statement's progress is
//! the weights of the phases behind it plus its current phase's weight times
//! the fraction of the phase done. The rate is that progress made since the
//! statement's first sample over the time it took, across phases: a phase
//! too short for two polls, or a counter that stands still for seconds
//! (the table scan of a build while its sort spills a run to disk), does not
//! swing it. While the counter stands still, the ETA of its last move counts
//! down, since the work goes on unseen; when that reaches 0, the rate over
//! the whole statement so far says what is left. What is left takes
//! `(weights left) / rate`. A phase that waits for other sessions has
//! weight 0: no ETA while a statement waits (it may wait forever), and
//! neither the time nor the progress across a wait counts in the rate.
//!
//! The weights are rough shares of the work of a typical build, from the
//! order of the phases in the PostgreSQL documentation ("Progress
//! Reporting"): for CREATE INDEX CONCURRENTLY the table scan of the build
//! is about half, its sort and load 15 % each, and the validation (index
//! scan, sort, second table scan) the last 20 %. A key passed by value
//! (integers, timestamps) compares so much faster than text under a
//! collation that its build's table scan is about a third of the work and
//! the validation as much (measured on 8M rows, docs/benchmarks.md):
//! [`CONCURRENT_INDEX_BYVAL`].

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

/// A concurrent build whose key columns are all passed by value.
const CONCURRENT_INDEX_BYVAL: &[Phase] = &[
    ("initializing", 0.0, 0),
    ("waiting for writers before build", 0.0, 0),
    ("building index: scanning table", 0.35, 0),
    ("building index: sorting live tuples", 0.1, 0),
    ("building index: loading tuples in tree", 0.2, 0),
    ("waiting for writers before validation", 0.0, 0),
    ("index validation: scanning index", 0.15, 0),
    ("index validation: sorting tuples", 0.05, 0),
    ("index validation: scanning table", 0.15, 0),
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

/// Phases that count nothing of their own: the view still shows the
/// blocks of the table scan before them (100 %), which is not their
/// progress. They count as just begun; the ETA counts down through them.
const NO_COUNTER: &[&str] = &[
    "building index: sorting live tuples",
    "index validation: sorting tuples",
];

fn phases(command: &str, byval_key: bool) -> Option<&'static [Phase]> {
    match command {
        "CREATE INDEX CONCURRENTLY" | "REINDEX CONCURRENTLY" if byval_key => {
            Some(CONCURRENT_INDEX_BYVAL)
        }
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
    let (_, w, after) = position(command, phase);
    (w, after)
}

/// The weights of the phases of `command` before `phase` on its path, of
/// `phase` itself, and of the phases after it. A phase not in the table is
/// the whole statement: `(0, 1, 0)`.
pub fn position(command: &str, phase: &str) -> (f64, f64, f64) {
    position_by(command, phase, false)
}

/// [`position`] for a build whose key is passed by value or not.
fn position_by(command: &str, phase: &str, byval_key: bool) -> (f64, f64, f64) {
    let Some(table) = phases(command, byval_key) else {
        return (0.0, 1.0, 0.0);
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
        return (0.0, 1.0, 0.0);
    };
    let (name, w, path) = table[i];
    let on_path = |p: &&Phase| p.2 == 0 || path == 0 || p.2 == path;
    let (w, before) = if name == phase {
        (w, before_on(&table[..i], path))
    } else {
        // The whole build under one name.
        let build = |p: &&Phase| p.0.starts_with("building index");
        let first = table.iter().position(|p| build(&p)).unwrap_or(i);
        (
            table.iter().filter(build).map(|p| p.1).sum(),
            before_on(&table[..first], path),
        )
    };
    let after = table[i + 1..].iter().filter(on_path).map(|p| p.1).sum();
    (before, w, after)
}

/// The weight of `phases` (those before one) on `path`; after a fork
/// (path 0 past phases of paths 1 and 2), the heavier of the two ways.
fn before_on(phases: &[Phase], path: u8) -> f64 {
    let way = |k: u8| -> f64 {
        phases
            .iter()
            .filter(|p| p.2 == 0 || p.2 == k)
            .map(|p| p.1)
            .sum()
    };
    if path == 0 {
        way(1).max(way(2))
    } else {
        way(path)
    }
}

/// One statement followed across polls.
#[derive(Debug)]
struct Run {
    /// Time and progress (in weights) of the latest sample.
    t: f64,
    progress: f64,
    /// Whether the latest sample was in a phase that works (weight > 0, not
    /// waiting): only the time after such a sample counts in the rate.
    working: bool,
    /// Progress made and time spent in counted intervals.
    made: f64,
    spent: f64,
    /// When the progress last moved, and the ETA then.
    moved: Option<(f64, f64)>,
}

impl Run {
    fn new(t: f64, progress: f64, working: bool) -> Run {
        Run {
            t,
            progress,
            working,
            made: 0.0,
            spent: 0.0,
            moved: None,
        }
    }

    /// Takes the sample `(t, progress)` and returns the seconds left, `left`
    /// being the weights still to do.
    fn sample(&mut self, t: f64, progress: f64, left: f64, working: bool) -> Option<f64> {
        let moved = progress > self.progress;
        if self.working {
            self.spent += t - self.t;
            self.made += progress - self.progress;
        }
        self.t = t;
        self.progress = progress;
        self.working = working;
        if !working {
            self.moved = None;
            return None;
        }
        let average =
            (self.spent > 0.0 && self.made > 0.0).then(|| left.max(0.0) / (self.made / self.spent));
        if moved || self.moved.is_none() {
            self.moved = average.map(|e| (t, e));
            return average;
        }
        match self.moved {
            Some((t0, e0)) if e0 - (t - t0) > 0.0 => Some(e0 - (t - t0)),
            _ => average,
        }
    }
}

/// Each statement followed, by backend and command.
#[derive(Debug, Default)]
pub struct Tracker {
    runs: HashMap<(i32, String), Run>,
}

impl Tracker {
    /// Fills `eta_s` of each entry read at `t` (seconds on a monotonic
    /// clock), and forgets statements that ended. A statement's progress
    /// going back (VACUUM's rounds of heap and index passes) starts its
    /// rate anew.
    pub fn update(&mut self, progress: &mut [CommandProgress], t: f64) {
        self.runs
            .retain(|k, _| progress.iter().any(|p| p.pid == k.0 && p.command == k.1));
        for p in progress.iter_mut() {
            let (before, w, after) = position_by(&p.command, &p.phase, p.byval_key);
            let f = if NO_COUNTER.contains(&p.phase.as_str()) {
                0.0
            } else {
                p.percent.map_or(0.0, |x| (x / 100.0).clamp(0.0, 1.0))
            };
            let now = before + w * f;
            let left = w * (1.0 - f) + after;
            let working = w > 0.0 && !p.phase.starts_with("waiting");
            let key = (p.pid, p.command.clone());
            p.eta_s = match self.runs.get_mut(&key) {
                Some(run) if now >= run.progress - 1e-9 => run.sample(t, now, left, working),
                _ => {
                    self.runs.insert(key, Run::new(t, now, working));
                    None
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIC: &str = "CREATE INDEX CONCURRENTLY";
    const SCAN: &str = "building index: scanning table";

    fn sample(command: &str, phase: &str, percent: Option<f64>) -> CommandProgress {
        CommandProgress {
            pid: 7,
            command: command.into(),
            relation: Some("t".into()),
            phase: phase.into(),
            done: None,
            total: None,
            percent,
            eta_s: None,
            locker: None,
            byval_key: false,
        }
    }

    /// The ETA the tracker gives at each poll `(t, phase, percent)`.
    fn etas(command: &str, polls: &[(f64, &str, Option<f64>)]) -> Vec<Option<f64>> {
        let mut tracker = Tracker::default();
        polls
            .iter()
            .map(|(t, phase, percent)| {
                let mut p = [sample(command, phase, *percent)];
                tracker.update(&mut p, *t);
                p[0].eta_s
            })
            .collect()
    }

    fn within(eta: Option<f64>, truth: f64, band: f64) -> bool {
        eta.is_some_and(|e| (e - truth).abs() <= band * truth)
    }

    #[test]
    fn the_table_scan_of_a_concurrent_build_counts_the_phases_after_it() {
        // Half the table scanned in 10 s: 10 s more for the scan, and the
        // rest of the build (0.5 of the work against the scan's 0.5) as long
        // as the whole scan: 30 s.
        let e = etas(CIC, &[(0.0, SCAN, Some(0.0)), (10.0, SCAN, Some(50.0))]);
        assert_eq!(e[1].map(|e| e.round()), Some(30.0));
    }

    #[test]
    fn the_last_working_phase_counts_only_itself() {
        let e = etas(
            CIC,
            &[
                (100.0, "index validation: scanning table", Some(20.0)),
                (110.0, "index validation: scanning table", Some(60.0)),
            ],
        );
        assert_eq!(e[1].map(|e| e.round()), Some(10.0));
    }

    /// The polls of a CREATE INDEX CONCURRENTLY on an int column of 8M
    /// rows (scripts/bench-backfill, 36.98 s to the end): the ETA at the
    /// table scan and at half the time within ±30 % of what remained. The
    /// text-key weights gave 8 s for the 18.65 s left at half the time.
    #[test]
    fn an_integer_key_build_is_weighted_by_its_measured_phases() {
        const SORT: &str = "building index: sorting live tuples";
        const LOAD: &str = "building index: loading tuples in tree";
        let polls = [
            (3.27, SCAN, Some(21.5)),
            (5.26, SCAN, Some(37.0)),
            (7.30, SCAN, Some(50.6)),
            (9.24, SCAN, Some(70.3)),
            (10.30, SCAN, Some(75.6)),
            (12.31, SCAN, Some(99.0)),
            (13.35, SORT, Some(100.0)),
            (15.39, SORT, Some(100.0)),
            (17.32, LOAD, Some(1.6)),
            (18.33, LOAD, Some(14.6)),
        ];
        let run = |byval_key: bool| {
            let mut tracker = Tracker::default();
            polls
                .iter()
                .map(|(t, phase, percent)| {
                    let mut p = [sample(CIC, phase, *percent)];
                    p[0].byval_key = byval_key;
                    tracker.update(&mut p, *t);
                    p[0].eta_s
                })
                .collect::<Vec<_>>()
        };
        let (int, text) = (run(true), run(false));
        assert!(within(int[3], 36.98 - 9.24, 0.3), "{int:?}");
        assert!(within(int[9], 36.98 - 18.33, 0.3), "{int:?}");
        assert!(!within(text[9], 36.98 - 18.33, 0.3), "{text:?}");
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
        let (before, _, _) = position(CIC, "index validation: scanning index");
        assert!((before - 0.8).abs() < 1e-9);
    }

    #[test]
    fn no_eta_while_waiting_or_before_anything_moved() {
        let e = etas(
            CIC,
            &[
                (0.0, SCAN, Some(30.0)),
                (5.0, SCAN, Some(30.0)),
                (6.0, SCAN, Some(40.0)),
                (7.0, "waiting for old snapshots", Some(50.0)),
            ],
        );
        assert_eq!(e[0], None, "one sample gives no rate");
        assert_eq!(e[1], None, "nothing moved yet");
        assert!(e[2].is_some());
        assert_eq!(e[3], None, "a wait may last forever");
    }

    #[test]
    fn a_cluster_by_index_skips_the_sort_of_the_other_path() {
        let (w, after) = weights("CLUSTER", "index scanning heap");
        assert_eq!(w, 0.7);
        assert!((after - 0.3).abs() < 1e-9);
        let (_, after) = weights("VACUUM FULL", "seq scanning heap");
        assert!((after - 0.5).abs() < 1e-9);
        let (before, _, _) = position("CLUSTER", "writing new heap");
        assert!((before - 0.7).abs() < 1e-9, "{before}");
    }

    #[test]
    fn an_unknown_command_is_one_phase() {
        assert_eq!(weights("COPY FROM", "copying"), (1.0, 0.0));
        let e = etas(
            "COPY FROM",
            &[(0.0, "copying", Some(0.0)), (4.0, "copying", Some(25.0))],
        );
        assert_eq!(e[1].map(|e| e.round()), Some(12.0));
    }

    /// A concurrent build of 20 s of work at an even pace: the table scan
    /// (weight 0.5) the first 10 s, its counter standing still from 3 s to
    /// 5 s and catching up at 6 s (the sort spilling a run), the sort
    /// (no counter) from 10 s, the load from 13 s, its counter standing
    /// still at 15 s. The ETA stays within 30 % of what really remains at
    /// every poll, and does not climb while a counter stands still.
    #[test]
    fn a_stall_of_the_counter_does_not_swing_the_eta() {
        let mut polls: Vec<(f64, &str, Option<f64>)> = [
            0.0, 10.0, 20.0, 30.0, 30.0, 30.0, 60.0, 70.0, 80.0, 90.0, 100.0,
        ]
        .iter()
        .enumerate()
        .map(|(t, p)| (t as f64, SCAN, Some(*p)))
        .collect();
        let sort = "building index: sorting live tuples";
        let load = "building index: loading tuples in tree";
        polls.extend([
            (11.0, sort, None),
            (12.0, sort, None),
            (13.0, load, Some(0.0)),
            (14.0, load, Some(100.0 / 3.0)),
            (15.0, load, Some(100.0 / 3.0)),
        ]);
        let e = etas(CIC, &polls);
        for t in 1..polls.len() {
            assert!(
                within(e[t], 20.0 - t as f64, 0.3),
                "at {t} s the ETA {:?} is not within 30 % of {} s: {e:?}",
                e[t],
                20 - t
            );
        }
        for t in [4, 5, 11, 12, 15] {
            assert!(e[t] <= e[t - 1], "the ETA climbed at {t} s: {e:?}");
        }
    }

    /// Phases shorter than a poll: each poll lands in a new phase, and an
    /// ETA is shown from the second poll on, within 30 % of the truth
    /// (10 s of work, the scan the first half).
    #[test]
    fn short_phases_still_get_an_eta() {
        let e = etas(
            CIC,
            &[
                (0.0, SCAN, Some(0.0)),
                (1.0, SCAN, Some(20.0)),
                (5.0, "building index: sorting live tuples", None),
                (7.0, "building index: loading tuples in tree", Some(40.0)),
            ],
        );
        assert_eq!(e[0], None);
        for (i, truth) in [(1, 9.0), (2, 5.0), (3, 3.0)] {
            assert!(within(e[i], truth, 0.3), "poll {i}: {e:?}");
        }
    }

    /// The sort of a build shows the table scan's blocks, 100 %: that is
    /// not the sort done. 10 s of work, the scan the first half: at the
    /// sort's first poll 5 s remain, not 3.5 s.
    #[test]
    fn the_sort_does_not_count_the_scan_blocks_as_its_own() {
        let sort = "building index: sorting live tuples";
        let e = etas(
            CIC,
            &[
                (0.0, SCAN, Some(0.0)),
                (1.0, SCAN, Some(20.0)),
                (5.0, sort, Some(100.0)),
            ],
        );
        assert!(within(e[2], 5.0, 0.1), "{e:?}");
    }

    /// A wait in the middle of a build (for writers, for old snapshots)
    /// counts neither its time nor the rate: after it, the ETA is the rate
    /// of the work before it.
    #[test]
    fn the_time_of_a_wait_does_not_slow_the_rate() {
        let e = etas(
            CIC,
            &[
                (0.0, SCAN, Some(0.0)),
                (5.0, "building index: loading tuples in tree", Some(100.0)),
                (6.0, "waiting for writers before validation", None),
                (60.0, "waiting for writers before validation", None),
                (61.0, "index validation: scanning index", Some(50.0)),
            ],
        );
        assert_eq!(e[2], None);
        // 0.8 done in 6 s of work (what moved across the wait not counted):
        // 0.175 left at 0.133/s.
        assert!(within(e[4], 1.31, 0.02), "{e:?}");
    }

    #[test]
    fn the_tracker_keeps_the_rate_across_phases_and_forgets_ended_statements() {
        let mut t = Tracker::default();
        let mut first = [sample(CIC, SCAN, Some(10.0))];
        t.update(&mut first, 0.0);
        assert_eq!(first[0].eta_s, None, "one sample gives no rate");
        let mut second = [sample(CIC, SCAN, Some(30.0))];
        t.update(&mut second, 2.0);
        // 10 %/s of the scan: 7 s left of the scan, and 10 s for the rest.
        assert_eq!(second[0].eta_s.map(|e| e.round()), Some(17.0));
        let mut next = [sample(CIC, "building index: sorting live tuples", None)];
        t.update(&mut next, 9.0);
        assert_eq!(next[0].eta_s.map(|e| e.round()), Some(10.0));
        t.update(&mut [], 10.0);
        assert!(t.runs.is_empty(), "an ended statement is forgotten");
    }
}
