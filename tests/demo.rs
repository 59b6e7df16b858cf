//! `pgpilot demo` as CI runs it: no terminal, headless, to the end, with the
//! workload's reporting job met by the first ALTER, and the backfill waiting
//! for the streaming replica whose replay the demo pauses.

use std::process::{Command, Stdio};

/// Every phrase the demo asks, as scripts/fresh-check and the README give them.
const CONFIRMS: [&str; 4] = [
    "--confirm",
    "watch-traffic=done",
    "--confirm",
    "backfill-battery=backfill battery_pct",
];

fn demo(args: &[&str]) -> (i32, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .arg("demo")
        .args(args)
        .env("PGPILOT_DATA_DIR", data.path())
        .stdin(Stdio::null())
        .output()
        .expect("run pgpilot demo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_runs_to_the_end_and_meets_a_real_blocker_and_a_yield() {
    let mut args = vec!["--headless"];
    args.extend(CONFIRMS);
    let (code, stdout, stderr) = demo(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The report, and now and then an app reader whose query is running
    // at that moment (under load one in a few runs).
    assert!(
        stdout.contains("[add-battery-column] 1 session(s) hold locks this step needs:")
            || stdout.contains("[add-battery-column] 2 session(s) hold locks this step needs:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("holds AccessShareLock on equipment_readings"),
        "{stdout}"
    );
    // The readers and writers queued behind the waiting ALTER: pgpilot
    // yields to them (max_queue_stall, 200 ms by default) long before its
    // lock_timeout (1s), naming the report that holds the table.
    assert!(
        stdout.contains("[add-battery-column] attempt 1/6: yielded: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("the lock is held by pid") && stdout.contains("pgpilot-demo-report"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[add-battery-column] INFO: got its locks after"),
        "{stdout}"
    );
    assert!(stdout.contains("[add-battery-column] applied"), "{stdout}");
    assert!(stdout.contains("[verify-fk-validated] passed"), "{stdout}");
    // The streaming replica existed, fell behind, and the backfill waited
    // for it before it went on and filled every reading.
    assert!(
        stderr.contains("streaming replica standby1 started"),
        "{stderr}"
    );
    assert!(
        stdout.contains("[backfill-battery] WARNING: paused: standby1 replays"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[backfill-battery] WARNING: resumed: every standby"),
        "{stdout}"
    );
    assert!(stdout.contains("[backfill-battery] applied"), "{stdout}");
    assert!(
        stderr.contains("stopping the cluster and removing it"),
        "{stderr}"
    );
}

#[test]
fn the_demo_rehearses_too() {
    let mut args = vec!["--headless", "--rehearse"];
    args.extend(CONFIRMS);
    let (code, stdout, stderr) = demo(&args);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rehearsal finished: everything was rolled back"),
        "{stdout}"
    );
    assert!(stdout.contains("rehearsed"), "{stdout}");
}
