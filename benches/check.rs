//! `pgpilot check` on a generated 1,000-step runbook (target: under 200 ms).
//! Run with `cargo bench --bench check`; figures go to docs/benchmarks.md.

use std::fmt::Write as _;
use std::time::Duration;

use pgpilot::check::check_file;

#[path = "support/timing.rs"]
mod timing;

use timing::CheckTimes;

/// A runbook of `steps` steps in phases of 100, mixing the statement kinds a
/// real runbook has: checks with captures, DDL, CONCURRENTLY, batched updates.
fn generate(steps: usize) -> String {
    let mut s = String::from(
        "[runbook]\nid = \"bench\"\ntitle = \"Generated\"\nchange_type = \"minor\"\n\n[settings]\nlock_timeout = \"2s\"\n",
    );
    for i in 0..steps {
        if i % 100 == 0 {
            let _ = write!(
                s,
                "\n[[phase]]\nid = \"phase-{}\"\ntitle = \"Phase {}\"\n",
                i / 100,
                i / 100
            );
        }
        let _ = write!(s, "\n[[phase.step]]\nid = \"step-{i}\"\n");
        match i % 5 {
            0 => {
                let _ = write!(
                    s,
                    "kind = \"check\"\nsql = \"SELECT count(*) FROM t{i} WHERE created_at < now() - interval '1 day'\"\ncapture = \"n{i}\"\n"
                );
            }
            1 => {
                let _ = write!(
                    s,
                    "kind = \"change\"\nsql = \"ALTER TABLE t{i} ADD COLUMN c{i} integer\"\nrollback = \"ALTER TABLE t{i} DROP COLUMN IF EXISTS c{i}\"\n"
                );
            }
            2 => {
                let _ = write!(
                    s,
                    "kind = \"change\"\nsql = \"CREATE INDEX CONCURRENTLY t{i}_idx ON t{i} (a, b)\"\nrollback = \"DROP INDEX CONCURRENTLY IF EXISTS t{i}_idx\"\n"
                );
            }
            3 => {
                let _ = write!(
                    s,
                    "kind = \"change\"\nsql = '''\nUPDATE t{i} SET c = coalesce(c, 0)\n WHERE id BETWEEN 1 AND 10000;\nUPDATE t{i} SET d = lower(d) WHERE id BETWEEN 1 AND 10000;\n'''\nrollback = \"SELECT 1\"\n"
                );
            }
            _ => {
                let _ = write!(
                    s,
                    "kind = \"verify\"\nsql = \"SELECT count(*) FROM t{} \"\nexpect = {{ scalar = \"{{{{n{}}}}}\" }}\n",
                    i - 4,
                    i - 4
                );
            }
        }
    }
    s
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench-1000.toml");
    std::fs::write(&path, generate(1000)).expect("write runbook");
    let checked = check_file(&path).unwrap_or_else(|e| {
        panic!(
            "generated runbook must pass: {:?}",
            e.first().map(ToString::to_string)
        )
    });
    assert_eq!(checked.runbook.steps().count(), 1000);

    let times = CheckTimes::measure(&path, 20, 10);
    println!(
        "check of a generated 1,000-step runbook ({} bytes):",
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    );
    times.print("pgpilot check", "under 200 ms", Duration::from_millis(200));
}
