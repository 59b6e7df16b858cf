//! Change windows against a real server, with the clock injected (test
//! builds only): a run outside every window is refused naming the next one,
//! inside it runs, an emergency waives it (loudly), a rollback is never held.

mod common;

use common::governance::{self, said};
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

/// A database with an empty table `t`, and a runbook of `text` in a
/// folder of its own.
struct Target {
    lab: Lab,
    client: tokio_postgres::Client,
    _folder: tempfile::TempDir,
    /// The runbook's path.
    rb: String,
    /// The database's conninfo.
    db: String,
}

impl Target {
    async fn new(name: &str, file: &str, text: &str) -> Target {
        let lab = Lab::new();
        let client = lab.database(name, &[]).await;
        client
            .batch_execute("CREATE TABLE t (id int)")
            .await
            .unwrap();
        let folder = tempfile::tempdir().unwrap();
        let rb = folder.path().join(file);
        std::fs::write(&rb, text).unwrap();
        Target {
            db: lab.conninfo(name),
            rb: rb.to_str().unwrap().to_string(),
            lab,
            client,
            _folder: folder,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_outside_every_window_is_refused_naming_the_next_inside_it_runs() {
    let w = Target::new("win", "w.toml", RUNBOOK).await;
    let (lab, client, rb, db) = (&w.lab, &w.client, w.rb.as_str(), w.db.as_str());
    let run = ["run", rb, "--headless", "--db", db];
    let has_c = || async {
        scalar(
            client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'c'",
        )
        .await
            == "1"
    };

    // Friday 2026-12-04 13:00 CET.
    let friday = at(lab, &run, "2026-12-04T12:00:00Z");
    assert_eq!(friday.code, 3, "{friday}");
    assert!(
        said(&friday).contains("outside every change window; Sat 02:00-04:00 Europe/Berlin, next opens 2026-12-05 02:00 CET (in 13 h 0 min)"),
        "{friday}"
    );
    assert!(!has_c().await);

    // Sunday night 23:30 CET: the window crossing midnight, 1 h 30 min left.
    let inside = at(lab, &run, "2026-12-06T22:30:00Z");
    assert_eq!(inside.code, 0, "{inside}");
    assert!(
        said(&inside)
            .contains("inside Sun 23:00-01:00 Europe/Berlin until 01:00 CET (1 h 30 min left)"),
        "{inside}"
    );
    assert!(has_c().await);

    // A rollback is incident response: never held by a window.
    let mut back = vec!["rollback", rb, "--headless", "--db", db];
    let confirms = common::confirms_for(rb, true);
    back.extend(confirms.iter().map(String::as_str));
    let rolled = at(lab, &back, "2026-12-04T12:00:00Z");
    assert_eq!(rolled.code, 0, "{rolled}");
    assert!(!has_c().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_waives_the_window_with_an_owner_approval_and_says_so() {
    let w = Target::new("winem", "w.toml", RUNBOOK).await;
    let (lab, client, rb, db) = (&w.lab, &w.client, w.rb.as_str(), w.db.as_str());
    let owner = format!("owner_{}", std::process::id());
    assert_eq!(lab.run(&["approvals", rb, "--db", db]).code, 0);
    governance::create_role(client, &owner).await;
    governance::grant_approvers(client, &[&owner]).await;
    let approved = lab.run(&[
        "approve",
        rb,
        "--db",
        &lab.uri("winem", Some(&owner), governance::PASSWORD),
        "--as",
        "owner",
    ]);
    assert_eq!(approved.code, 0, "{approved}");
    let run = [
        "run",
        rb,
        "--headless",
        "--db",
        db,
        "--emergency",
        "orders table full: INC-12",
    ];
    let ran = at(lab, &run, "2026-12-04T12:00:00Z");
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
    governance::drop_roles(client, &[&owner]).await;
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
    let w = Target::new("winlate", "slow.toml", SLOW).await;
    let (lab, client, rb, db) = (&w.lab, &w.client, w.rb.as_str(), w.db.as_str());
    // The rehearsal measures the step: about 2 s (a rehearsal is never held
    // by a window).
    let rehearsed = lab.run(&["run", rb, "--headless", "--db", db, "--rehearse"]);
    assert_eq!(rehearsed.code, 0, "{rehearsed}");

    // Saturday 03:59:59 CET: one second left, the slow step is not started.
    let run = ["run", rb, "--headless", "--db", db];
    let late = at(lab, &run, "2026-12-05T02:59:59Z");
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
        client,
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
    let early = at(lab, &run, "2026-12-05T01:30:00Z");
    assert_eq!(early.code, 0, "{early}");
    assert!(!said(&early).contains("may take"), "{early}");
    // Measuring the forecast between steps leaves no trace on the screen.
    assert!(!said(&early).contains("no transaction"), "{early}");
}
