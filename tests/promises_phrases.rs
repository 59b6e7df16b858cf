//! Promises of docs/safety-model.md, "Typed confirmations", that no other
//! test held to: the typed text is compared with the phrase exactly, case
//! included, after leading and trailing white space is removed; a wrong
//! answer is audited with what was expected and what was typed; a pause
//! takes only `done` (headless, anything else refuses the run, audited as a
//! wrong or missing answer and named in `session_end`); `confirm = "…"` is
//! asked on a step that destroys nothing too.

mod common;

use common::{Lab, runbooks, scalar};
use pgpilot::audit::AuditRecord;
use pgpilot::audit::record::Action;

/// The local audit log's records; none before the first session wrote one.
fn records(lab: &Lab) -> Vec<AuditRecord> {
    if !lab.audit_file().exists() {
        return Vec::new();
    }
    pgpilot::audit::query::read_records(&lab.audit_file()).expect("local audit log")
}

const DROP: &str = r#"
[runbook]
id = "drop-b"
title = "Drop t.b"

[[phase]]
id = "p"

  [[phase.step]]
  id = "drop"
  kind = "change"
  sql = "ALTER TABLE t DROP COLUMN b"
  rollback = "ALTER TABLE t ADD COLUMN IF NOT EXISTS b int"
"#;

async fn has_b(client: &tokio_postgres::Client) -> bool {
    scalar(
        client,
        "SELECT count(*)::text FROM information_schema.columns WHERE table_name = 't' AND column_name = 'b'",
    )
    .await
        == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phrase_must_match_case_included_and_only_outer_white_space_is_forgiven() {
    let lab = Lab::new();
    let client = lab.database("phrase_case", &[]).await;
    client
        .batch_execute("CREATE TABLE t (a int, b int)")
        .await
        .expect("table t");
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "drop.toml", DROP);
    let db = lab.conninfo("phrase_case");
    let run = |answer: &str| {
        let confirm = format!("drop={answer}");
        lab.run(&["run", &rb, "--headless", "--db", &db, "--confirm", &confirm])
    };
    for wrong in [
        "DROP COLUMN T.B",
        "Drop column t.b",
        "drop  column t.b",
        "drop column t.b.",
    ] {
        let before = records(&lab).len();
        let ran = run(wrong);
        assert_eq!(ran.code, 3, "{wrong:?}: {ran}");
        assert!(has_b(&client).await, "{wrong:?}: dropped on a wrong phrase");
        let recs = records(&lab);
        let answers: Vec<_> = recs[before..]
            .iter()
            .filter(|r| r.action == Action::Confirmation)
            .collect();
        assert_eq!(answers.len(), 1, "{wrong:?}: {answers:?}");
        assert_eq!(answers[0].outcome.as_deref(), Some("wrong"), "{wrong:?}");
        let said = answers[0].message.as_deref().unwrap_or("");
        assert!(
            said.contains("drop column t.b") && said.contains(wrong),
            "{wrong:?}: the record says neither what was expected nor what was typed: {said}"
        );
    }
    let ran = run("  drop column t.b \t");
    assert_eq!(ran.code, 0, "{ran}");
    assert!(!has_b(&client).await, "the exact phrase did not drop t.b");
    let accepted = records(&lab)
        .into_iter()
        .filter(|r| r.action == Action::Confirmation)
        .filter(|r| r.outcome.as_deref() == Some("accepted"))
        .count();
    assert_eq!(accepted, 1);
}

const PAUSED: &str = r#"
[runbook]
id = "paused"
title = "A pause before a change"

[[phase]]
id = "p"

  [[phase.step]]
  id = "wait"
  kind = "pause"
  title = "Tell the on-call team"
  instructions = "Post in the on-call channel that the change starts"

  [[phase.step]]
  id = "make"
  kind = "change"
  sql = "CREATE TABLE made (a int)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_takes_only_done_and_anything_else_refuses_the_run() {
    let lab = Lab::new();
    let client = lab.database("pause_done", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(&dir, "paused.toml", PAUSED);
    let db = lab.conninfo("pause_done");
    let made = || async {
        scalar(&client, "SELECT (to_regclass('made') IS NOT NULL)::text").await == "true"
    };
    for answer in [None, Some("Done"), Some("ok"), Some("yes")] {
        let before = records(&lab).len();
        let confirm = answer.map(|a| format!("wait={a}"));
        let mut args = vec!["run", rb.as_str(), "--headless", "--db", db.as_str()];
        if let Some(c) = &confirm {
            args.extend(["--confirm", c.as_str()]);
        }
        let ran = lab.run(&args);
        assert_eq!(ran.code, 3, "{answer:?}: {ran}");
        assert!(!made().await, "{answer:?}: the step after the pause ran");
        let recs = records(&lab);
        let session = &recs[before..];
        assert!(
            !session.iter().any(|r| r.action == Action::PauseAcknowledged
                || r.action == Action::StepStart && r.step.as_deref() == Some("make")),
            "{answer:?}: {session:?}"
        );
        // The answer is audited like a phrase's.
        let answers: Vec<_> = session
            .iter()
            .filter(|r| r.action == Action::Confirmation && r.step.as_deref() == Some("wait"))
            .filter_map(|r| r.outcome.as_deref())
            .collect();
        let want = if answer.is_some() { "wrong" } else { "missing" };
        assert_eq!(answers, [want], "{answer:?}");
        let end = session
            .iter()
            .find(|r| r.action == Action::SessionEnd)
            .expect("a session_end record");
        assert_eq!(
            end.outcome.as_deref(),
            Some("refused"),
            "{answer:?}: {end:?}"
        );
        assert!(
            end.message.as_deref().unwrap_or("").contains("\"done\""),
            "{answer:?}: the session's end does not say what the pause wanted: {end:?}"
        );
    }
    let ran = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &db,
        "--confirm",
        "wait=done",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(made().await);
    let acknowledged: Vec<_> = records(&lab)
        .into_iter()
        .filter(|r| r.action == Action::PauseAcknowledged)
        .collect();
    assert_eq!(acknowledged.len(), 1, "{acknowledged:?}");
    assert_eq!(acknowledged[0].step.as_deref(), Some("wait"));
    assert_eq!(
        scalar(
            &client,
            "SELECT status FROM pgpilot.step_state WHERE step_id = 'wait'"
        )
        .await,
        "acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_key_is_asked_even_on_a_step_that_destroys_nothing() {
    let lab = Lab::new();
    let client = lab.database("confirm_key", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = runbooks::write(
        &dir,
        "confirmed.toml",
        r#"
[runbook]
id = "confirmed"
title = "A harmless step with its own phrase"

[[phase]]
id = "p"

  [[phase.step]]
  id = "make"
  kind = "change"
  sql = "CREATE TABLE made (a int)"
  confirm = "make it so"
"#,
    );
    let db = lab.conninfo("confirm_key");
    let made = || async {
        scalar(&client, "SELECT (to_regclass('made') IS NOT NULL)::text").await == "true"
    };
    let missing = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(missing.code, 3, "{missing}");
    assert!(!made().await, "ran without its phrase");
    let plan = lab.run(&["plan", &rb]);
    assert!(plan.stdout.contains("make it so"), "{plan}");
    let ran = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &db,
        "--confirm",
        "make=make it so",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(made().await);
}
