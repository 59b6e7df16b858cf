//! Recovering in place, driven through the engine's channels as the TUI
//! drives it (an interactive session), against a real server with a real
//! blocker: after a failure the operator retries, skips or quits; at the
//! blockers `a` returns to the step list; while waiting `p` proceeds; a
//! multi-step rollback is listed once; a rollback meets the blocker guard.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Lab, column, connect, scalar};
use pgpilot::audit::{AuditLog, Context, DbAudit};
use pgpilot::engine::{
    Ask, EngineEvent, EngineTask, Mode, Outcome, Recorder, Reply, RunOptions, Session, StepOutcome,
};

/// A check that fails until users has 2001 rows, then two changes.
const RUNBOOK: &str = r#"
[runbook]
id = "recover-in-place"
title = "Recover in place"
change_type = "minor"

[settings]
lock_timeout = "200ms"
lock_retries = 0
retry_backoff = "10ms"

[[phase]]
id = "p"

  [[phase.step]]
  id = "count"
  kind = "check"
  sql = "SELECT count(*) FROM users"
  expect = { scalar = "2001" }

  [[phase.step]]
  id = "add-note"
  kind = "change"
  sql = "ALTER TABLE users ADD COLUMN note text"
  rollback = "ALTER TABLE users DROP COLUMN IF EXISTS note"

  [[phase.step]]
  id = "add-flag"
  kind = "change"
  sql = "ALTER TABLE users ADD COLUMN flag boolean"
  rollback = "ALTER TABLE users DROP COLUMN IF EXISTS flag"
"#;

const ADD_USER: &str =
    "INSERT INTO users (email, display_name, password_hash) VALUES ('new@example.org', 'new', 'x')";

/// The diagnosticpro database, autovacuum off on users: an autovacuum
/// worker's lock on it would make a 200 ms lock_timeout fail a step that
/// the test expects to get its lock.
async fn quiet_database(lab: &Lab) -> tokio_postgres::Client {
    let client = lab.database("diagnosticpro", &["diagnosticpro.sql"]).await;
    client
        .batch_execute("ALTER TABLE users SET (autovacuum_enabled = off)")
        .await
        .unwrap();
    // A worker that started before is not stopped by that: wait for it.
    common::until_sql(
        &client,
        "no autovacuum worker in this database",
        Duration::from_secs(60),
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = current_database())",
    )
    .await;
    client
}

/// The engine on its task, and every event it sent so far.
struct Drive {
    task: EngineTask,
    seen: Vec<EngineEvent>,
}

impl Drive {
    async fn start(lab: &Lab, runbook: &str, mode: Mode) -> Drive {
        let dir = lab.data_dir.path().join("runbook");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("recover.toml");
        std::fs::write(&file, runbook).unwrap();
        let checked = pgpilot::check::check_file(Path::new(&file)).expect("a valid runbook");
        let spec = pgpilot::pg::ConnSpec::resolve(Some(&lab.conninfo("diagnosticpro")))
            .expect("conninfo")
            .with_application_name("pgpilot");
        let local = AuditLog::open_in(lab.data_dir.path()).expect("audit log");
        let db = DbAudit::new(local.dir());
        let ctx = Context {
            session: "engine-recover".into(),
            operator: "tester".into(),
            runbook: Some(checked.runbook.id.clone()),
            ..Context::default()
        };
        let conn = spec.connect().await.expect("connect");
        let session = Session {
            runbook: checked.runbook,
            analysis: checked.analysis,
            options: RunOptions {
                mode,
                env: None,
                rehearse: false,
                interactive: true,
                emergency: None,
                principal: None,
            },
            spec,
            conn,
            conn_pid: 0,
            recorder: Recorder::new(ctx, local, db),
        };
        Drive {
            task: pgpilot::engine::spawn(session),
            seen: Vec::new(),
        }
    }

    /// The next event (30 s at most).
    async fn event(&mut self) -> EngineEvent {
        let e = tokio::time::timeout(Duration::from_secs(30), self.task.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event in 30 s; so far: {:#?}", self.seen))
            .expect("the engine ended without Finished");
        self.seen.push(e.clone());
        e
    }

    /// The next question; the run must not end first.
    async fn ask(&mut self) -> Ask {
        loop {
            match self.event().await {
                EngineEvent::Asks(a) => return a,
                EngineEvent::Finished(o) => {
                    panic!("finished ({o:?}) before a question: {:#?}", self.seen)
                }
                _ => {}
            }
        }
    }

    fn reply(&self, r: Reply) {
        self.task.replies.send(r).expect("the engine listens");
    }

    /// Answers `Next` for `step` with `Run`.
    async fn run(&mut self, step: &str) {
        assert_eq!(self.ask().await, Ask::Next { step: step.into() });
        self.reply(Reply::Run);
    }

    /// Answers `step`'s phrase question with its phrase.
    async fn confirm(&mut self, step: &str) {
        match self.ask().await {
            Ask::Confirm {
                step: s, phrase, ..
            } if s == step => self.reply(Reply::Typed(phrase)),
            other => panic!("expected {step}'s phrase, got {other:?}"),
        }
    }

    async fn outcome(mut self) -> Outcome {
        loop {
            if let EngineEvent::Finished(o) = self.event().await {
                return o;
            }
        }
    }

    fn done(&self, step: &str) -> Option<StepOutcome> {
        self.seen.iter().find_map(|e| match e {
            EngineEvent::StepDone {
                step: s, outcome, ..
            } if s == step => Some(*outcome),
            _ => None,
        })
    }
}

async fn states(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT step_id || '=' || status FROM pgpilot.step_state WHERE runbook_id = 'recover-in-place' ORDER BY step_id",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_is_retried_in_place_and_the_run_completes() {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    let mut d = Drive::start(&lab, RUNBOOK, Mode::Run { from: None }).await;
    d.run("count").await;
    match d.ask().await {
        Ask::Failed {
            step,
            message,
            rollback_available,
        } => {
            assert_eq!(step, "count");
            assert!(message.contains("2001"), "{message}");
            assert!(!rollback_available, "nothing is applied yet");
        }
        other => panic!("expected the failure prompt, got {other:?}"),
    }
    // The operator fixes the cause and retries: no restart, nothing retyped.
    client.batch_execute(ADD_USER).await.unwrap();
    d.reply(Reply::Run);
    d.run("add-note").await;
    d.run("add-flag").await;
    assert_eq!(d.ask().await, Ask::End);
    d.reply(Reply::Quit);
    let seen_failed = d
        .seen
        .iter()
        .any(|e| matches!(e, EngineEvent::StepFailed { step, .. } if step == "count"));
    assert!(seen_failed, "{:#?}", d.seen);
    assert_eq!(d.done("count"), Some(StepOutcome::Passed));
    assert_eq!(d.outcome().await, Outcome::Done);
    assert_eq!(
        states(&client).await,
        ["add-flag=applied", "add-note=applied", "count=passed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_skipped_with_a_reason_goes_on_to_the_next() {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    let mut d = Drive::start(&lab, RUNBOOK, Mode::Run { from: None }).await;
    d.run("count").await;
    assert!(matches!(d.ask().await, Ask::Failed { .. }));
    d.reply(Reply::Skip("count checked by hand: 2000 is right".into()));
    assert_eq!(
        d.ask().await,
        Ask::Next {
            step: "add-note".into()
        }
    );
    // Stopping now: the failed step was skipped with a reason, so the
    // session is refused (3), not failed.
    d.reply(Reply::Quit);
    let outcome = d.outcome().await;
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    assert_eq!(pgpilot::exit::of(&outcome), 3);
    assert_eq!(states(&client).await, ["count=skipped"]);
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"skip\"") && l.contains("count checked by hand")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_at_the_failure_prompt_ends_the_session_failed() {
    let lab = Lab::new();
    let _client = quiet_database(&lab).await;
    let mut d = Drive::start(&lab, RUNBOOK, Mode::Run { from: None }).await;
    d.run("count").await;
    assert!(matches!(d.ask().await, Ask::Failed { .. }));
    d.reply(Reply::Quit);
    let outcome = d.outcome().await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(pgpilot::exit::of(&outcome), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_at_the_blockers_returns_to_the_same_step_and_proceed_while_waiting_runs_it() {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    client.batch_execute(ADD_USER).await.unwrap();
    let holder = connect(&lab.conninfo("diagnosticpro")).await;
    holder
        .batch_execute("SET application_name = 'nightly-report'; BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    let holder_pid: i32 = scalar(&holder, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();

    let mut d = Drive::start(&lab, RUNBOOK, Mode::Run { from: None }).await;
    d.run("count").await;
    d.run("add-note").await;
    assert!(matches!(d.ask().await, Ask::Blockers { step, .. } if step == "add-note"));
    // a: nothing of it ran, and it is asked for again.
    d.reply(Reply::Quit);
    assert_eq!(
        d.ask().await,
        Ask::Next {
            step: "add-note".into()
        }
    );
    d.reply(Reply::Run);
    assert!(matches!(d.ask().await, Ask::Blockers { .. }));
    // w: the engine says whom it waits for, and listens while it waits.
    d.reply(Reply::Wait);
    loop {
        if let EngineEvent::WaitingForBlockers { step, holders } = d.event().await {
            assert_eq!(step, "add-note");
            assert_eq!(holders[0].pid, holder_pid);
            assert_eq!(holders[0].application, "nightly-report");
            break;
        }
    }
    // p while waiting: it runs now, bounded by lock_timeout, and fails.
    d.reply(Reply::Run);
    match d.ask().await {
        Ask::Failed { step, message, .. } => {
            assert_eq!(step, "add-note");
            assert!(message.contains("lock"), "{message}");
        }
        other => panic!("expected the failure prompt, got {other:?}"),
    }
    // The blocker goes; r retries and the step applies.
    holder.batch_execute("COMMIT").await.unwrap();
    d.reply(Reply::Run);
    d.run("add-flag").await;
    assert_eq!(d.ask().await, Ask::End);
    d.reply(Reply::Quit);
    assert_eq!(d.done("add-note"), Some(StepOutcome::Applied));
    assert_eq!(d.outcome().await, Outcome::Done);
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    let blockers: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"action\":\"blockers\""))
        .collect();
    for word in ["abort", "wait", "proceed"] {
        assert!(
            blockers
                .iter()
                .any(|l| l.contains(&format!("\"outcome\":\"{word}\""))),
            "{word}: {blockers:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_step_rollback_is_listed_once_and_meets_the_blocker_guard() {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    client.batch_execute(ADD_USER).await.unwrap();
    let mut d = Drive::start(&lab, RUNBOOK, Mode::Run { from: None }).await;
    d.run("count").await;
    d.run("add-note").await;
    d.run("add-flag").await;
    assert_eq!(d.ask().await, Ask::End);
    // b on add-note: both changes, newest first, listed before anything runs.
    d.reply(Reply::RollbackThrough("add-note".into()));
    assert_eq!(
        d.ask().await,
        Ask::RollbackList {
            steps: vec!["add-flag".into(), "add-note".into()]
        }
    );
    // Declined: nothing is undone, and the session goes on.
    d.reply(Reply::Quit);
    assert_eq!(d.ask().await, Ask::End);
    assert_eq!(
        states(&client).await,
        ["add-flag=applied", "add-note=applied", "count=passed"]
    );
    // A reader holds users: the rollback's ALTER meets the blocker guard.
    let holder = connect(&lab.conninfo("diagnosticpro")).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    d.reply(Reply::RollbackThrough("add-note".into()));
    assert!(matches!(d.ask().await, Ask::RollbackList { .. }));
    d.reply(Reply::Run);
    // Each destructive rollback still asks its own phrase, then the guard runs.
    d.confirm("add-flag").await;
    assert!(matches!(d.ask().await, Ask::Blockers { step, .. } if step == "add-flag"));
    holder.batch_execute("COMMIT").await.unwrap();
    d.reply(Reply::Run);
    d.confirm("add-note").await;
    assert_eq!(d.ask().await, Ask::End);
    d.reply(Reply::Quit);
    assert_eq!(d.outcome().await, Outcome::Done);
    assert_eq!(
        states(&client).await,
        [
            "add-flag=rolled_back",
            "add-note=rolled_back",
            "count=passed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_at_the_failure_prompt_rolls_back_then_asks_for_the_failed_step_and_quitting_then_is_failed()
 {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    client.batch_execute(ADD_USER).await.unwrap();
    let mut d = Drive::start(&lab, RUNBOOK, Mode::Run { from: None }).await;
    d.run("count").await;
    d.run("add-note").await;
    // add-note is applied once add-flag is asked for; only then the reader.
    assert_eq!(
        d.ask().await,
        Ask::Next {
            step: "add-flag".into()
        }
    );
    let holder = connect(&lab.conninfo("diagnosticpro")).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    d.reply(Reply::Run);
    assert!(matches!(d.ask().await, Ask::Blockers { .. }));
    d.reply(Reply::Run);
    match d.ask().await {
        Ask::Failed {
            step,
            rollback_available,
            ..
        } => {
            assert_eq!(step, "add-flag");
            assert!(rollback_available, "add-note is applied");
        }
        other => panic!("expected the failure prompt, got {other:?}"),
    }
    holder.batch_execute("COMMIT").await.unwrap();
    // b: add-note alone is applied, so no list; its phrase, then add-flag again.
    d.reply(Reply::RollbackThrough("add-note".into()));
    d.confirm("add-note").await;
    assert_eq!(
        d.ask().await,
        Ask::Next {
            step: "add-flag".into()
        }
    );
    // Quitting while add-flag's last attempt failed: the session failed.
    d.reply(Reply::Quit);
    let outcome = d.outcome().await;
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("add-flag")),
        "{outcome:?}"
    );
    assert_eq!(pgpilot::exit::of(&outcome), 1);
    assert_eq!(
        states(&client).await,
        // The failed step's state says so (`status` shows it as failed).
        ["add-flag=failed", "add-note=rolled_back", "count=passed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_is_asked_about_and_a_skip_leaves_the_step_applied() {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    client.batch_execute(ADD_USER).await.unwrap();
    let db = lab.conninfo("diagnosticpro");
    let file = lab.data_dir.path().join("applied.toml");
    std::fs::write(&file, RUNBOOK).unwrap();
    let ran = lab.run(&["run", file.to_str().unwrap(), "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    let holder = connect(&db).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    let mut d = Drive::start(&lab, RUNBOOK, Mode::Rollback { to: None }).await;
    assert!(matches!(d.ask().await, Ask::RollbackList { .. }));
    d.reply(Reply::Run);
    d.run("add-flag").await;
    d.confirm("add-flag").await;
    assert!(matches!(d.ask().await, Ask::Blockers { .. }));
    d.reply(Reply::Run);
    assert!(matches!(d.ask().await, Ask::Failed { step, .. } if step == "add-flag"));
    d.reply(Reply::Skip("the reader is the month-end report".into()));
    assert_eq!(
        d.ask().await,
        Ask::Next {
            step: "add-note".into()
        }
    );
    // The screens, which showed the rollback FAILED, learn it stays applied.
    let told_applied = d.seen.iter().any(|e| {
        matches!(e, EngineEvent::States(k) if k.iter().any(|k| k.step == "add-flag"
            && k.status == pgpilot::engine::state::Status::Applied))
    });
    assert!(told_applied, "{:#?}", d.seen);
    d.reply(Reply::Quit);
    let outcome = d.outcome().await;
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        states(&client).await,
        ["add-flag=applied", "add-note=applied", "count=passed"]
    );
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"action\":\"skip\"")
            && l.contains("rollback skipped: the reader is the month-end report")),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_prints_whom_it_waits_for_and_the_rollback_list() {
    let lab = Lab::new();
    let client = quiet_database(&lab).await;
    client.batch_execute(ADD_USER).await.unwrap();
    let db = lab.conninfo("diagnosticpro");
    let file = lab.data_dir.path().join("wait.toml");
    std::fs::write(
        &file,
        RUNBOOK.replace("[settings]", "[settings]\non_blockers = \"wait\""),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let holder = connect(&db).await;
    holder
        .batch_execute("SET application_name = 'nightly-report'; BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();
    let pid = scalar(&holder, "SELECT pg_backend_pid()").await;
    let child = lab
        .command(&["run", file, "--headless", "--db", &db])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgpilot");
    // pgpilot waits: its blockers record (outcome wait) is in the audit.
    common::eventually(
        "the blocker guard to wait",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(lab.audit_file()).is_ok_and(|a| {
                a.lines().any(|l| {
                    l.contains("\"action\":\"blockers\"") && l.contains("\"outcome\":\"wait\"")
                })
            })
        },
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    let out = child.wait_with_output().expect("pgpilot ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "[add-note] waiting for pid {pid} (nightly-report) to finish"
        )),
        "{stdout}"
    );
    let mut args = vec!["rollback", file, "--headless", "--db", &db];
    let confirms = common::confirms_for(file, true);
    args.extend(confirms.iter().map(String::as_str));
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("pgpilot: rolling back, newest first: add-flag, add-note"),
        "{ran}"
    );
}
