//! What the server runs must be what pgpilot analysed. pg_query reads SQL
//! with standard_conforming_strings on; a runbook that turns it off for the
//! session (or a server configured so) would make the server read
//! `'a\'` + newline + `'; DROP TABLE victim; --'` as a literal followed by a
//! DROP that `plan` never showed and no phrase guarded.

mod common;

use common::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_cannot_change_how_the_server_reads_the_next_one() {
    let lab = Lab::new();
    let client = lab.database("scs", &[]).await;
    client
        .batch_execute("CREATE TABLE victim (id int); INSERT INTO victim VALUES (1)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("scs.toml");
    std::fs::write(
        &rb,
        r#"[runbook]
id = "conforming-strings"
title = "Two harmless checks"

[[phase]]
id = "p"

  [[phase.step]]
  id = "compat"
  kind = "check"
  sql = "SET standard_conforming_strings = off"

  [[phase.step]]
  id = "look"
  kind = "check"
  sql = '''SELECT 'a\'
'; DROP TABLE victim; --' AS text'''
"#,
    )
    .unwrap();
    let rb = rb.display().to_string();
    // plan shows two low-risk checks and no phrase: nothing is destroyed.
    let plan = lab.run(&["plan", &rb]);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(!plan.stdout.contains("type to confirm"), "{plan}");
    let db = lab.conninfo("scs");
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db, "--env", "staging"]);
    assert_eq!(ran.code, 0, "{ran}");
    let rows = common::scalar(
        &client,
        "SELECT count(*)::text FROM pg_class WHERE relname = 'victim'",
    )
    .await;
    assert_eq!(
        rows, "1",
        "the table no step was allowed to drop is gone\n{ran}"
    );
}
