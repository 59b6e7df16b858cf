//! Shared by the `pgpilot check` benchmarks (`benches/check.rs`, a
//! generated runbook; `benches/check_folder.rs`, a generated Flyway
//! folder): the timing loop and the lines they print.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgpilot::check::check_file;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `f` run once to warm up, then `runs` times: the median and the fastest.
fn time<F: FnMut()>(runs: usize, mut f: F) -> (Duration, Duration) {
    f(); // warm up
    let samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let min = samples.iter().copied().min().unwrap_or_default();
    (median(samples), min)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and fastest of `check_file(path)` in the library and, when
/// target/release/pgpilot is built, of the whole `pgpilot check PATH`.
pub struct CheckTimes {
    library: (Duration, Duration),
    library_runs: usize,
    process: Option<(Duration, Duration)>,
    process_runs: usize,
}

impl CheckTimes {
    pub fn measure(path: &Path, library_runs: usize, process_runs: usize) -> CheckTimes {
        let library = time(library_runs, || {
            check_file(path).expect("check");
        });
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/pgpilot");
        let process = bin.exists().then(|| {
            time(process_runs, || {
                let out = Command::new(&bin)
                    .arg("check")
                    .arg(path)
                    .output()
                    .expect("run pgpilot");
                assert!(out.status.success());
            })
        });
        CheckTimes {
            library,
            library_runs,
            process,
            process_runs,
        }
    }

    /// The library's line, the process's (`command` names it), and whether
    /// the process (the library without a release build) is under `target`,
    /// which `goal` words.
    pub fn print(&self, command: &str, goal: &str, target: Duration) {
        println!(
            "  library check_file: median {:.1} ms, min {:.1} ms ({} runs)",
            ms(self.library.0),
            ms(self.library.1),
            self.library_runs
        );
        match self.process {
            Some((m, min)) => println!(
                "  `{command}` process: median {:.1} ms, min {:.1} ms ({} runs)",
                ms(m),
                ms(min),
                self.process_runs
            ),
            None => println!("  (build target/release/pgpilot to time the whole command)"),
        }
        println!(
            "  target: {goal} -> {}",
            if self.process.map_or(self.library.0, |b| b.0) < target {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
