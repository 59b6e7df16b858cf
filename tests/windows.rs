//! Change windows against a real server, with the clock injected (test
//! builds only): a run outside every window is refused naming the next one,
//! inside it runs, an emergency waives it (loudly), a rollback is never held.

mod common;

use common::{Lab, Ran, scalar};

const RUNBOOK: &str = r#"
[runbook]
id = "weekend-change"
title = "Add t.c in the weekend window"

[target]
windows = ["Sat 02:00-04:00", "Sun 23:00-01:00"]
timezone = "Europe/Berlin"

[[phase]]
id = "change"

  [[phase.step]]
  id = "add-c"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c int"
  rollback = "ALTER TABLE t DROP COLUMN c"
"#;

fn at(lab: &Lab, args: &[&str], now: &str) -> Ran {
    Ran::from(
        lab.command(args)
            .env("PGPILOT_TEST_NOW", now)
            .output()
            .expect("run pgpilot"),
    )
}

fn said(ran: &Ran) -> String {
    format!("{}{}", ran.stdout, ran.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_outside_every_window_is_refused_naming_the_next_inside_it_runs() {
    let lab = Lab::new();
    let client = lab.database("win", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("w.toml");
    std::fs::write(&rb, RUNBOOK).unwrap();
    let rb = rb.to_str().unwrap();
    let db = lab.conninfo("win");
    let run = ["run", rb, "--headless", "--db", &db];
    let has_c = || async {
        scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'",
        )
        .await
            == "1"
    };

    // Friday 2026-12-04 13:00 CET.
    let friday = at(&lab, &run, "2026-12-04T12:00:00Z");
    assert_eq!(friday.code, 3, "{friday}");
    assert!(
        said(&friday).contains("outside every change window; Sat 02:00-04:00 Europe/Berlin, next opens 2026-12-05 02:00 CET (in 13 h 0 min)"),
        "{friday}"
    );
    assert!(!has_c().await);

    // Sunday night 23:30 CET: the window crossing midnight, 1 h 30 min left.
    let inside = at(&lab, &run, "2026-12-06T22:30:00Z");
    assert_eq!(inside.code, 0, "{inside}");
    assert!(
        said(&inside)
            .contains("inside Sun 23:00-01:00 Europe/Berlin until 01:00 CET (1 h 30 min left)"),
        "{inside}"
    );
    assert!(has_c().await);

    // A rollback is incident response: never held by a window.
    let mut back = vec!["rollback", rb, "--headless", "--db", &db];
    let confirms = common::confirms_for(rb, true);
    back.extend(confirms.iter().map(String::as_str));
    let rolled = at(&lab, &back, "2026-12-04T12:00:00Z");
    assert_eq!(rolled.code, 0, "{rolled}");
    assert!(!has_c().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_waives_the_window_with_an_owner_approval_and_says_so() {
    let lab = Lab::new();
    let client = lab.database("winem", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("w.toml");
    std::fs::write(&rb, RUNBOOK).unwrap();
    let rb = rb.to_str().unwrap();
    let db = lab.conninfo("winem");
    let owner = format!("owner_{}", std::process::id());
    assert_eq!(lab.run(&["approvals", rb, "--db", &db]).code, 0);
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {owner}; CREATE ROLE {owner} LOGIN PASSWORD 'pw';
             GRANT USAGE ON SCHEMA pgpilot TO {owner};
             GRANT SELECT, INSERT, UPDATE ON pgpilot.approvals TO {owner};"
        ))
        .await
        .unwrap();
    let approved = lab.run(&[
        "approve",
        rb,
        "--db",
        &lab.uri("winem", Some(&owner), "pw"),
        "--as",
        "owner",
    ]);
    assert_eq!(approved.code, 0, "{approved}");
    let run = [
        "run",
        rb,
        "--headless",
        "--db",
        &db,
        "--emergency",
        "orders table full: INC-12",
    ];
    let ran = at(&lab, &run, "2026-12-04T12:00:00Z");
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        said(&ran).contains("guard window: pass (waived by --emergency)"),
        "{ran}"
    );
    assert!(
        said(&ran).contains("EMERGENCY run: orders table full: INC-12"),
        "{ran}"
    );
    let log = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        log.contains("\"emergency\":\"orders table full: INC-12\""),
        "{log}"
    );
    let _ = client
        .batch_execute(&format!("DROP OWNED BY {owner}; DROP ROLE {owner}"))
        .await;
}

/// A step whose earlier run (here a rehearsal's) took about 2 s.
const SLOW: &str = r#"
[runbook]
id = "weekend-slow"
title = "Add t.c, then a slow data change"

[target]
windows = ["Sat 02:00-04:00"]
timezone = "Europe/Berlin"

[[phase]]
id = "change"

  [[phase.step]]
  id = "add-c"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c int"
  rollback = "ALTER TABLE t DROP COLUMN c"

  [[phase.step]]
  id = "slow-fill"
  kind = "change"
  sql = "SELECT pg_sleep(2)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_known_to_outlast_the_window_is_asked_about_and_headless_stops() {
    let lab = Lab::new();
    let client = lab.database("winlate", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("slow.toml");
    std::fs::write(&rb, SLOW).unwrap();
    let rb = rb.to_str().unwrap();
    let db = lab.conninfo("winlate");
    // The rehearsal measures the step: about 2 s (a rehearsal is never held
    // by a window).
    let rehearsed = lab.run(&["run", rb, "--headless", "--db", &db, "--rehearse"]);
    assert_eq!(rehearsed.code, 0, "{rehearsed}");

    // Saturday 03:59:59 CET: one second left, the slow step is not started.
    let run = ["run", rb, "--headless", "--db", &db];
    let late = at(&lab, &run, "2026-12-05T02:59:59Z");
    assert_eq!(late.code, 3, "{late}");
    assert!(
        said(&late).contains(
            "[slow-fill] may take 2s (its last run on this target); the change window closes in 1s"
        ),
        "{late}"
    );
    assert!(
        said(&late).contains("no terminal to ask: stopping before the step"),
        "{late}"
    );
    // The step before it ran; the slow one did not.
    let state = scalar(
        &client,
        "SELECT string_agg(step_id || '=' || status, ',' ORDER BY step_id) FROM pgpilot.step_state WHERE runbook_id = 'weekend-slow'",
    )
    .await;
    assert_eq!(state, "add-c=applied", "{late}");
    // Audited with the decision.
    let records = pgpilot::audit::query::read_records(&lab.audit_file()).unwrap();
    let asked = records
        .iter()
        .find(|r| {
            r.action == pgpilot::audit::Action::Guard && r.step.as_deref() == Some("slow-fill")
        })
        .unwrap_or_else(|| panic!("no window record for slow-fill: {late}"));
    assert_eq!(asked.outcome.as_deref(), Some("stop"));

    // Early in the window the same step runs.
    let early = at(&lab, &run, "2026-12-05T01:30:00Z");
    assert_eq!(early.code, 0, "{early}");
    assert!(!said(&early).contains("may take"), "{early}");
    // Measuring the forecast between steps leaves no trace on the screen.
    assert!(!said(&early).contains("no transaction"), "{early}");
}
