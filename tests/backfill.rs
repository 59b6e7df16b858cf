//! Backfill steps against a real server: keyset batches that touch every row
//! exactly once, across kill -9 and resume; integer, text and uuid keys
//! bound as parameters; one phrase for the whole walk; progress lines; a
//! rehearsal that runs one batch; a batched rollback.

mod common;

use std::path::PathBuf;

use common::{Lab, Ran, column, confirms_for, scalar};

/// A step that walks `t` by `key` in batches of 1,000 and adds 1 to each
/// row's `touched`: a row touched twice (or never) shows.
fn runbook(dir: &std::path::Path, key: &str, extra: &str) -> String {
    let text = format!(
        r#"
[runbook]
id = "fill"
title = "Backfill t"

[[phase]]
id = "p"

  [[phase.step]]
  id = "fill"
  kind = "backfill"
  table = "t"
  key = "{key}"
  sql = "UPDATE t SET touched = touched + 1 WHERE {key} BETWEEN $1 AND $2"
  batch_size = 1000
  {extra}
"#
    );
    let path: PathBuf = dir.join("fill.toml");
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

const ROWS: &str = "CREATE TABLE t (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
     INSERT INTO t (id) SELECT g FROM generate_series(1, 20000) g; ANALYZE t";

/// `pgpilot run` headless with the step's phrase given.
fn run(lab: &Lab, rb: &str, db: &str, extra: &[&str]) -> Ran {
    let confirms = confirms_for(rb, false);
    let mut args = vec!["run", rb, "--headless", "--db", db];
    args.extend(confirms.iter().map(String::as_str));
    args.extend_from_slice(extra);
    lab.run(&args)
}

/// How many rows were touched how often: `[(touched, count)]`.
async fn touched(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT touched || 'x' || count(*) FROM t GROUP BY touched ORDER BY touched",
    )
    .await
}

fn status(lab: &Lab, rb: &str, db: &str) -> serde_json::Value {
    let ran = lab.run(&["status", rb, "--db", db, "--format", "json"]);
    assert_eq!(ran.code, 0, "{ran}");
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).expect("status json");
    doc["steps"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_touches_every_row_once_and_says_its_progress() {
    let lab = Lab::new();
    let client = lab.database("bf_once", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "");
    let db = lab.conninfo("bf_once");
    let ran = run(&lab, &rb, &db, &[]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(touched(&client).await, vec!["1x20000"], "{ran}");
    // The first progress line is always printed; each has percent and ETA.
    let lines: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("[fill] progress "))
        .collect();
    assert!(!lines.is_empty(), "{ran}");
    for l in &lines {
        assert!(l.contains("% (") && l.contains("ETA "), "{l}");
    }
    let st = status(&lab, &rb, &db);
    assert_eq!(st["status"], "applied", "{st}");
    assert_eq!(st["rows_done"], 20000, "{st}");
    // Not one audit record per batch: start, a few progress marks, end.
    let audit = std::fs::read_to_string(lab.audit_file()).expect("audit");
    let progress = audit.matches("\"action\":\"progress\"").count();
    assert!(progress <= 101, "{progress} progress records");
    // Synced while the next batch runs, each progress record still reaches
    // the database's copy of the log (with the next ordinary record).
    assert!(progress >= 1, "no progress record in {audit}");
    let copied: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM pgpilot.audit_log WHERE action = 'progress'",
            &[],
        )
        .await
        .expect("audit_log")
        .try_get("n")
        .expect("n");
    assert_eq!(
        copied, progress as i64,
        "progress records copied to the database"
    );
}

/// kill -9 before and after a batch's COMMIT, at several batches: the run
/// after resumes after the last committed batch; every row ends at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_anywhere_resumes_and_touches_each_row_exactly_once() {
    if !cfg!(feature = "failpoints") {
        panic!("needs pgpilot's crash points: run it with `cargo test --features failpoints`");
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "");
    for (i, point) in [
        "backfill-batch-before-commit:1",
        "backfill-batch-committed:1",
        "backfill-batch-before-commit:7",
        "backfill-batch-committed:13",
        "backfill-batch-committed:20",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("bf_kill{i}");
        let client = lab.database(&name, &[]).await;
        client.batch_execute(ROWS).await.expect("rows");
        let db = lab.conninfo(&name);
        let killed = Ran::from(
            lab.command(&[
                "run",
                &rb,
                "--headless",
                "--db",
                &db,
                "--confirm=fill=update t",
            ])
            .env("PGPILOT_TEST_KILL_AT", point)
            .output()
            .expect("run pgpilot"),
        );
        assert_eq!(killed.code, -1, "{point}: killed by SIGKILL\n{killed}");
        let st = status(&lab, &rb, &db);
        assert_eq!(st["status"], "in_progress", "{point}: {st}");
        let done = st["rows_done"].as_u64().unwrap_or(0);
        let committed: u64 = scalar(&client, "SELECT count(*) FROM t WHERE touched = 1")
            .await
            .parse()
            .expect("a count");
        assert_eq!(
            done, committed,
            "{point}: the cursor is the committed batches"
        );
        if done > 0 {
            assert!(
                st["cursor"].is_string() && st["percent"].is_number(),
                "{st}"
            );
            let text = lab.run(&["status", &rb, "--db", &db]);
            assert!(text.stdout.contains("cursor"), "{text}");
        }
        let resumed = run(&lab, &rb, &db, &[]);
        assert_eq!(resumed.code, 0, "{point}\n{resumed}");
        assert_eq!(
            touched(&client).await,
            vec!["1x20000"],
            "{point}\n{resumed}"
        );
        assert_eq!(status(&lab, &rb, &db)["status"], "applied");
    }
    let verify = lab.run(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify}");
}

/// Text keys (one holding a quote) and uuid keys walk the same way: the
/// bounds are bound parameters, never text in the SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_uuid_keys_are_walked_with_bound_bounds() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, setup) in [
        (
            "bf_text",
            "CREATE TABLE t (k text PRIMARY KEY, touched int NOT NULL DEFAULT 0);
             INSERT INTO t (k) SELECT 'key ' || g || '''s' FROM generate_series(1, 2500) g;
             INSERT INTO t (k) VALUES ('it''s'), ('a\"b'), ('$1')",
        ),
        (
            "bf_uuid",
            "CREATE TABLE t (k uuid PRIMARY KEY, touched int NOT NULL DEFAULT 0);
             INSERT INTO t (k) SELECT md5(g::text)::uuid FROM generate_series(1, 2503) g",
        ),
    ] {
        let client = lab.database(name, &[]).await;
        client.batch_execute(setup).await.expect("rows");
        let rb = runbook(dir.path(), "k", "");
        let ran = run(&lab, &rb, &lab.conninfo(name), &[]);
        assert_eq!(ran.code, 0, "{name}\n{ran}");
        assert_eq!(touched(&client).await, vec!["1x2503"], "{name}\n{ran}");
    }
}

/// A phrase is asked once for the whole walk, not once per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phrase_is_asked_once_for_the_whole_backfill() {
    let lab = Lab::new();
    let client = lab.database("bf_phrase", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "confirm = \"fill t\"");
    let db = lab.conninfo("bf_phrase");
    let refused = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(refused.code, 3, "no phrase, no batch\n{refused}");
    assert_eq!(touched(&client).await, vec!["0x20000"]);
    let ran = lab.run(&[
        "run",
        &rb,
        "--headless",
        "--db",
        &db,
        "--confirm",
        "fill=fill t",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(touched(&client).await, vec!["1x20000"]);
    let audit = std::fs::read_to_string(lab.audit_file()).expect("audit");
    let accepted = audit
        .lines()
        .filter(|l| l.contains("\"action\":\"confirmation\"") && l.contains("accepted"))
        .count();
    assert_eq!(accepted, 1, "one phrase for 20 batches");
}

/// A rehearsal runs the first batch inside its transaction (rolled back)
/// and says what the whole would walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_runs_one_batch_and_changes_nothing() {
    let lab = Lab::new();
    let client = lab.database("bf_rehearse", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "");
    let ran = run(&lab, &rb, &lab.conninfo("bf_rehearse"), &["--rehearse"]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("rehearsal ran the first batch (1000 row(s) changed)")
            && ran
                .stdout
                .contains("the whole would walk about 20000 key(s)"),
        "{ran}"
    );
    assert_eq!(touched(&client).await, vec!["0x20000"]);
}

/// A rollback that uses $1/$2 is walked in batches too; a stopped walk is
/// resumable, and the rolled-back step can be applied again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_with_bounds_is_batched() {
    let lab = Lab::new();
    let client = lab.database("bf_rollback", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(
        dir.path(),
        "id",
        "rollback = \"UPDATE t SET touched = touched - 1 WHERE id BETWEEN $1 AND $2\"",
    );
    let db = lab.conninfo("bf_rollback");
    assert_eq!(run(&lab, &rb, &db, &[]).code, 0);
    let confirms = confirms_for(&rb, true);
    let mut args = vec!["rollback", rb.as_str(), "--headless", "--db", &db];
    args.extend(confirms.iter().map(String::as_str));
    let back = lab.run(&args);
    assert_eq!(back.code, 0, "{back}");
    assert_eq!(touched(&client).await, vec!["0x20000"], "{back}");
    assert!(back.stdout.contains("[fill] progress "), "{back}");
    assert_eq!(status(&lab, &rb, &db)["status"], "rolled_back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_gate_breached_between_batches_stops_the_walk_resumably() {
    let lab = Lab::new();
    let client = lab.database("bf_gate", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "");
    // Breached once more than 2,500 rows are touched: after the third batch.
    let gated = format!(
        "{}\n[[health]]\nname = \"touched rows\"\nsql = \"SELECT count(*) FROM t WHERE touched = 1\"\nmax = 2500\n",
        std::fs::read_to_string(&rb).expect("runbook")
    );
    std::fs::write(&rb, gated).expect("gate");
    let db = lab.conninfo("bf_gate");
    let ran = run(&lab, &rb, &db, &[]);
    assert_eq!(ran.code, 3, "{ran}");
    assert!(ran.stdout.contains("touched rows"), "{ran}");
    // Stopped before the fourth batch; what was committed stays, resumable.
    assert_eq!(touched(&client).await, vec!["0x17000", "1x3000"], "{ran}");
    let st = status(&lab, &rb, &db);
    assert_eq!(st["status"], "in_progress", "{st}");
    assert_eq!(st["rows_done"], 3000, "{st}");
    let audit = std::fs::read_to_string(lab.audit_file()).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"health\"") && l.contains("touched rows")),
        "{audit}"
    );
}

/// A table that keeps growing while it is walked (here each batch itself
/// adds a row past the end, as an application's inserts would): the walk
/// ends at the largest key it saw when it started, instead of chasing the
/// new rows for ever; those are the application's to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_a_growing_table_ends_at_the_key_it_started_with() {
    let lab = Lab::new();
    let client = lab.database("bf_grow", &[]).await;
    client.batch_execute(ROWS).await.expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "");
    let text = std::fs::read_to_string(&rb).expect("runbook").replace(
        "sql = \"UPDATE",
        "sql = \"WITH more AS (INSERT INTO t (id) SELECT max(id) + 1 FROM t) UPDATE",
    );
    std::fs::write(&rb, text).expect("runbook");
    let db = lab.conninfo("bf_grow");
    let confirms = confirms_for(&rb, false);
    let mut args = vec!["run", rb.as_str(), "--headless", "--db", db.as_str()];
    args.extend(confirms.iter().map(String::as_str));
    let ran = common::run_bounded(&mut lab.command(&args), std::time::Duration::from_secs(120));
    assert_eq!(ran.code, 0, "{ran}");
    // 20 batches walked the 20,000 rows there at the start; each added one.
    assert_eq!(touched(&client).await, vec!["0x20", "1x20000"], "{ran}");
}

/// The batch's bounds count keys, not the key range: a table with gaps, a
/// last batch shorter than the others, a key count that is an exact
/// multiple of the batch, batches of one key, and an empty table each end
/// with every row touched once and the keys and batches counted right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_count_keys_through_gaps_short_last_batches_and_empty_tables() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // (database, rows, batch_size, keys, batches)
    let cases = [
        (
            "bf_gaps",
            "SELECT g * 7 FROM generate_series(1, 2503) g",
            1000,
            2503,
            3,
        ),
        (
            "bf_multiple",
            "SELECT g FROM generate_series(1, 2000) g",
            1000,
            2000,
            2,
        ),
        (
            "bf_one",
            "SELECT g * 1000 FROM generate_series(1, 3) g",
            1,
            3,
            3,
        ),
        ("bf_empty", "SELECT 1 WHERE false", 1000, 0, 0),
    ];
    for (name, keys_sql, size, keys, batches) in cases {
        let client = lab.database(name, &[]).await;
        client
            .batch_execute(&format!(
                "CREATE TABLE t (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
                 INSERT INTO t (id) {keys_sql}; ANALYZE t"
            ))
            .await
            .expect("rows");
        let rb = runbook(dir.path(), "id", "");
        let text = std::fs::read_to_string(&rb)
            .expect("runbook")
            .replace("batch_size = 1000", &format!("batch_size = {size}"));
        std::fs::write(&rb, text).expect("runbook");
        let ran = run(&lab, &rb, &lab.conninfo(name), &[]);
        assert_eq!(ran.code, 0, "{name}\n{ran}");
        let want: Vec<String> = if keys == 0 {
            vec![]
        } else {
            vec![format!("1x{keys}")]
        };
        assert_eq!(touched(&client).await, want, "{name}\n{ran}");
        let audit = std::fs::read_to_string(lab.audit_file()).expect("audit");
        assert!(
            audit.contains(&format!("walked {keys} key(s) in {batches} batch(es)")),
            "{name}\n{ran}"
        );
        let row = client
            .query_one(
                "SELECT status, rows_done, batches_done FROM pgpilot.step_state WHERE step_id = 'fill'",
                &[],
            )
            .await
            .expect("state");
        let status: String = row.try_get("status").expect("status");
        let done: Option<i64> = row.try_get("rows_done").expect("rows_done");
        let counted: Option<i64> = row.try_get("batches_done").expect("batches_done");
        assert_eq!(status, "applied", "{name}");
        assert_eq!(done, Some(keys), "{name}: rows_done");
        if batches > 0 {
            assert_eq!(counted, Some(batches), "{name}: batches_done");
        }
    }
}

/// A unique key may hold NULLs: the walk ends at the largest key that is
/// not NULL (NULL sorts first when read backwards) and touches every other
/// row once; rows whose key is NULL stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nullable_unique_key_is_walked_past_its_nulls() {
    let lab = Lab::new();
    let client = lab.database("bf_nulls", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int UNIQUE, touched int NOT NULL DEFAULT 0);
             INSERT INTO t (id) SELECT g FROM generate_series(1, 2500) g;
             INSERT INTO t (id) VALUES (NULL), (NULL); ANALYZE t",
        )
        .await
        .expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "id", "");
    let ran = run(&lab, &rb, &lab.conninfo("bf_nulls"), &[]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(touched(&client).await, vec!["0x2", "1x2500"], "{ran}");
}
