//! `pgpilot check DIR` on a generated Flyway folder of 1,000 migrations
//! (target: well under a second). Run with `cargo bench --bench
//! check_folder`; figures go to docs/benchmarks.md.

use std::path::Path;
use std::time::Duration;

use pgpilot::check::check_file;

#[path = "support/timing.rs"]
mod timing;

use timing::CheckTimes;

/// 1,000 migrations as a team writes them: tables created, columns added,
/// indexes (some CONCURRENTLY, with their `.conf`), checks added NOT VALID
/// then validated, then SET NOT NULL; an undo file for most.
fn generate(dir: &Path, migrations: usize) {
    let write = |name: String, text: String| std::fs::write(dir.join(name), text).expect("write");
    for v in 1..=migrations {
        let t = format!("t{}", v / 10);
        let (up, undo) = match v % 10 {
            0 => (
                format!("CREATE TABLE {t} (id bigint PRIMARY KEY, a integer, b text);\n"),
                Some(format!("DROP TABLE {t};\n")),
            ),
            1 | 5 => (
                format!("ALTER TABLE {t} ADD COLUMN c{v} integer;\n"),
                Some(format!("ALTER TABLE {t} DROP COLUMN c{v};\n")),
            ),
            2 => {
                write(
                    format!("V{v}__index.sql.conf"),
                    "executeInTransaction=false\n".into(),
                );
                (
                    format!("CREATE INDEX CONCURRENTLY {t}_a_idx ON {t} (a);\n"),
                    Some(format!("DROP INDEX CONCURRENTLY {t}_a_idx;\n")),
                )
            }
            3 => (
                format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {t}_a_nn CHECK (a IS NOT NULL) NOT VALID;\n"
                ),
                Some(format!("ALTER TABLE {t} DROP CONSTRAINT {t}_a_nn;\n")),
            ),
            4 => (
                format!("ALTER TABLE {t} VALIDATE CONSTRAINT {t}_a_nn;\n"),
                None,
            ),
            6 => (
                format!("ALTER TABLE {t} ALTER COLUMN a SET NOT NULL;\n"),
                Some(format!("ALTER TABLE {t} ALTER COLUMN a DROP NOT NULL;\n")),
            ),
            7 => (
                format!(
                    "BEGIN;\nUPDATE {t} SET b = lower(b) WHERE id BETWEEN 1 AND 1000;\nCOMMIT;\n"
                ),
                Some("SELECT 1;\n".into()),
            ),
            _ => (format!("COMMENT ON TABLE {t} IS 'migration {v}';\n"), None),
        };
        let name = match v % 10 {
            2 => "index",
            _ => "change",
        };
        write(format!("V{v}__{name}.sql"), up);
        if let Some(u) = undo {
            write(format!("U{v}__{name}.sql"), u);
        }
    }
}

/// The same 1,000 migrations as a sqitch project: `sqitch.plan` with one
/// change per migration (each requiring the one before), `deploy/`,
/// `revert/` and `verify/` scripts, the deploy scripts in their own
/// `BEGIN … COMMIT` as sqitch's templates write them (the CONCURRENTLY ones
/// without).
fn generate_sqitch(dir: &Path, flyway: &Path, migrations: usize) {
    for sub in ["deploy", "revert", "verify"] {
        std::fs::create_dir(dir.join(sub)).expect("sqitch folder");
    }
    let mut plan = String::from("%syntax-version=1.0.0\n%project=bench\n\n");
    for v in 1..=migrations {
        let name = if v % 10 == 2 { "index" } else { "change" };
        let up = std::fs::read_to_string(flyway.join(format!("V{v}__{name}.sql"))).expect("read");
        let change = format!("c{v}");
        let deps = if v > 1 {
            format!(" [c{}]", v - 1)
        } else {
            String::new()
        };
        plan.push_str(&format!(
            "{change}{deps} 2024-01-01T00:00:00Z Bench <bench@example.com> # migration {v}\n"
        ));
        let deploy = if up.contains("CONCURRENTLY") || up.starts_with("BEGIN") {
            up
        } else {
            format!("BEGIN;\n{up}COMMIT;\n")
        };
        let write = |sub: &str, text: String| {
            std::fs::write(dir.join(sub).join(format!("{change}.sql")), text).expect("write")
        };
        write("deploy", deploy);
        if let Ok(undo) = std::fs::read_to_string(flyway.join(format!("U{v}__{name}.sql"))) {
            write("revert", undo);
        }
        write("verify", "BEGIN;\nSELECT 1;\nROLLBACK;\n".into());
    }
    std::fs::write(dir.join("sqitch.plan"), plan).expect("plan");
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("migrations");
    std::fs::create_dir(&folder).expect("folder");
    generate(&folder, 1000);
    let checked = check_file(&folder).unwrap_or_else(|e| {
        panic!(
            "generated folder must pass: {:?}",
            e.first().map(ToString::to_string)
        )
    });
    assert_eq!(
        checked.runbook.steps().count(),
        1000,
        "one step per migration"
    );
    let times = CheckTimes::measure(&folder, 10, 5);
    println!("check of a generated Flyway folder of 1,000 migrations:");
    times.print(
        "pgpilot check DIR",
        "well under 1 s (500 ms)",
        Duration::from_millis(500),
    );
    let sqitch = dir.path().join("sqitch");
    std::fs::create_dir(&sqitch).expect("folder");
    generate_sqitch(&sqitch, &folder, 1000);
    let checked = check_file(&sqitch).unwrap_or_else(|e| {
        panic!(
            "generated sqitch project must pass: {:?}",
            e.first().map(ToString::to_string)
        )
    });
    assert_eq!(
        checked.runbook.steps().count(),
        2000,
        "a change and a verify step per change"
    );
    let times = CheckTimes::measure(&sqitch, 10, 5);
    println!("the same as a sqitch project (1,000 changes + 1,000 verify scripts):");
    times.print(
        "pgpilot check DIR",
        "well under 1 s (500 ms)",
        Duration::from_millis(500),
    );
}
