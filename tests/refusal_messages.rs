//! A refusal says what it left undone truthfully: when a later step's phrase
//! is missing, the steps before it were applied, so "nothing was run" would
//! send an operator looking in the wrong place.

mod common;

use common::Lab;

const RUNBOOK: &str = r#"[runbook]
id = "refusal-messages"
title = "Add one column, drop another"
risk = "high"

[[phase]]
id = "change"

  [[phase.step]]
  id = "add-d"
  kind = "change"
  sql = "ALTER TABLE refusal_t ADD COLUMN d int"
  rollback = "ALTER TABLE refusal_t DROP COLUMN IF EXISTS d"

  [[phase.step]]
  id = "drop-c"
  kind = "change"
  sql = "ALTER TABLE refusal_t DROP COLUMN c"
  irreversible = "the test needs no way back"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_phrase_after_applied_steps_does_not_claim_nothing_ran() {
    let lab = Lab::new();
    let client = lab.database("refusalmsg", &[]).await;
    client
        .batch_execute("CREATE TABLE refusal_t (id int PRIMARY KEY, c int)")
        .await
        .expect("table");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("runbook.toml");
    std::fs::write(&rb, RUNBOOK).expect("runbook");
    let rb = rb.to_str().expect("utf-8 path");
    let db = lab.conninfo("refusalmsg");

    let ran = lab.run(&["run", rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 3, "{ran}");
    assert_eq!(
        common::scalar(
            &client,
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'refusal_t' AND column_name = 'd'"
        )
        .await,
        "1",
        "add-d ran before the refusal"
    );
    assert!(!ran.stderr.contains("nothing was run"), "{ran}");
    assert!(
        ran.stderr.contains(
            "step drop-c needs the phrase \"drop column refusal_t.c\": type it, or pass \
             --confirm drop-c=\"drop column refusal_t.c\"; it was not run (earlier steps stay as they are)"
        ),
        "{ran}"
    );
}
