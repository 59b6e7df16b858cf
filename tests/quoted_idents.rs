//! Relations whose names need quotes (`"Orders"`, `"my.table"`, `"IdxUpper"`)
//! are the same relations to the analysis, the blocker guard, the invalid-index
//! cleanup and the in-doubt check as they are to PostgreSQL.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Lab, column, connect, scalar};

fn write_runbook(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

async fn wait_for_no_pgpilot_backends(client: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpilot'",
    )
    .await
        != "0"
    {
        assert!(
            Instant::now() < deadline,
            "pgpilot's backend outlived its process"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const GUARDED: &str = r#"
[runbook]
id = "quoted-guard"
title = "Quoted tables behind the pre-step guard"

[settings]
lock_timeout = "300ms"
lock_retries = 0
on_blockers = "proceed"

[[phase]]
id = "p"

  [[phase.step]]
  id = "alter-quoted"
  kind = "change"
  sql = '''ALTER TABLE "Orders" ADD COLUMN x int; ALTER TABLE "my.table" ADD COLUMN x int'''
  rollback = '''ALTER TABLE "Orders" DROP COLUMN x; ALTER TABLE "my.table" DROP COLUMN x'''
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocker_guard_names_holders_of_quoted_tables_and_not_of_their_lower_case_twins() {
    let lab = Lab::new();
    let client = lab.database("quoted_guard", &[]).await;
    client
        .batch_execute(
            r#"CREATE TABLE "Orders" (id int); CREATE TABLE orders (id int);
               CREATE TABLE "my.table" (id int)"#,
        )
        .await
        .unwrap();
    let db = lab.conninfo("quoted_guard");
    let mut pids = Vec::new();
    let mut sessions = Vec::new();
    for table in [r#""Orders""#, r#""my.table""#, "orders"] {
        let s = connect(&db).await;
        pids.push(column(&s, "SELECT pg_backend_pid()").await[0].clone());
        s.batch_execute(&format!("BEGIN; SELECT count(*) FROM {table}"))
            .await
            .unwrap();
        sessions.push(s);
    }
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(&dir, "guarded.toml", GUARDED);
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    // proceed: the step tries, waits at most lock_timeout, and fails without retries.
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stdout
            .contains("[alter-quoted] 2 session(s) hold locks this step needs:"),
        "{ran}"
    );
    assert!(
        ran.stdout.contains(&format!("pid {} (postgres@", pids[0]))
            && ran.stdout.contains(r#"AccessShareLock on "Orders""#),
        "{ran}"
    );
    assert!(
        ran.stdout.contains(&format!("pid {} (postgres@", pids[1]))
            && ran.stdout.contains(r#"AccessShareLock on "my.table""#),
        "{ran}"
    );
    // The holder of the lower-case `orders` does not stand in the step's way.
    assert!(
        !ran.stdout.contains(&format!("pid {} (postgres@", pids[2])),
        "{ran}"
    );
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    let blockers = audit
        .lines()
        .find(|l| l.contains("\"action\":\"blockers\""))
        .unwrap_or_else(|| panic!("no blockers record:\n{audit}"));
    assert!(
        blockers.contains(&format!("pid {} ", pids[0]))
            && blockers.contains(&format!("pid {} ", pids[1]))
            && !blockers.contains(&format!("pid {} ", pids[2])),
        "{blockers}"
    );
}

const UNIQUE_INDEX: &str = r#"
[runbook]
id = "quoted-index"
title = "A unique index with an upper-case name"

[[phase]]
id = "p"

  [[phase.step]]
  id = "build"
  kind = "change"
  sql = '''CREATE UNIQUE INDEX CONCURRENTLY "IdxUpper" ON t (x)'''
  rollback = '''DROP INDEX CONCURRENTLY IF EXISTS "IdxUpper"'''
  lock_timeout = "10s"
"#;

async fn invalid_indexes_on_t(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 't'::regclass AND NOT indisvalid",
    )
    .await
}

async fn idx_upper_valid(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        r#"SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass('"IdxUpper"') AND indrelid = 't'::regclass"#,
    )
    .await
}

async fn step_status(client: &tokio_postgres::Client) -> Vec<String> {
    column(
        client,
        "SELECT status FROM pgpilot.step_state WHERE runbook_id = 'quoted-index' AND step_id = 'build'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unique_build_of_a_quoted_index_leaves_no_invalid_index_and_the_next_run_builds_it()
 {
    let lab = Lab::new();
    let client = lab.database("quoted_failed_build", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int, x int); INSERT INTO t VALUES (1, 1), (2, 1), (3, 2)",
        )
        .await
        .unwrap();
    let db = lab.conninfo("quoted_failed_build");
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(&dir, "index.toml", UNIQUE_INDEX);

    let ran = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("23505"), "duplicate key: {ran}");
    assert_eq!(
        invalid_indexes_on_t(&client).await,
        Vec::<String>::new(),
        "the failed build left an INVALID index behind:\n{ran}"
    );
    assert!(
        ran.stdout
            .contains(r#"dropped the invalid index public."IdxUpper""#),
        "{ran}"
    );

    // The duplicates are fixed: the next run builds the index, once.
    client
        .batch_execute("DELETE FROM t WHERE id = 2")
        .await
        .unwrap();
    let again = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(idx_upper_valid(&client).await, ["true"], "{again}");
    assert_eq!(step_status(&client).await, ["applied"]);
}

/// Runs the runbook killed at the crash point named `kill_at` (see
/// src/engine/failpoint.rs); the step is then in doubt.
async fn crash_in_the_build(
    lab: &Lab,
    rb: &str,
    db: &str,
    client: &tokio_postgres::Client,
    kill_at: &str,
) {
    if !cfg!(feature = "failpoints") {
        panic!(
            "this test kills pgpilot at a crash point: run it with `cargo test --features failpoints` (scripts/test does)"
        );
    }
    let status = lab
        .command(&["run", rb, "--headless", "--db", db])
        .env("PGPILOT_TEST_KILL_AT", kill_at)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "not killed: {status:?}");
    wait_for_no_pgpilot_backends(client).await;
    assert_eq!(step_status(client).await, ["in_progress"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_doubt_quoted_index_is_never_taken_for_its_lower_case_twin() {
    let lab = Lab::new();
    let client = lab.database("quoted_in_doubt", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int, x int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let db = lab.conninfo("quoted_in_doubt");
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(&dir, "index.toml", UNIQUE_INDEX);

    // Killed once the step is marked in_progress, before its statement is sent.
    crash_in_the_build(&lab, &rb, &db, &client, "autocommit-in-progress").await;
    assert_eq!(idx_upper_valid(&client).await, Vec::<String>::new());
    // Someone else builds an unrelated, lower-case `idxupper`.
    client
        .batch_execute("CREATE INDEX idxupper ON t (id)")
        .await
        .unwrap();

    let again = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(
        idx_upper_valid(&client).await,
        ["true"],
        "the step was recorded applied without \"IdxUpper\":\n{again}"
    );
    assert_eq!(step_status(&client).await, ["applied"]);
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        !audit.contains("completed on an earlier run"),
        "claimed applied from the lower-case twin:\n{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_doubt_quoted_index_that_was_built_is_found_and_not_built_again() {
    let lab = Lab::new();
    let client = lab.database("quoted_built", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int, x int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let db = lab.conninfo("quoted_built");
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(&dir, "index.toml", UNIQUE_INDEX);

    // Killed after the build returned, before the step was marked applied.
    crash_in_the_build(&lab, &rb, &db, &client, "autocommit-after-statement").await;
    assert_eq!(idx_upper_valid(&client).await, ["true"]);

    let again = lab.run(&["run", &rb, "--headless", "--db", &db]);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(step_status(&client).await, ["applied"]);
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(audit.contains("completed on an earlier run"), "{audit}");
}

#[test]
fn plan_json_names_quoted_relations_in_their_sql_form() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write_runbook(
        &dir,
        "plan.toml",
        r#"
[runbook]
id = "quoted-plan"
title = "Quoted names in the plan"

[[phase]]
id = "p"

  [[phase.step]]
  id = "reads"
  kind = "check"
  sql = '''SELECT * FROM "Orders" JOIN public."my.table" m USING (id) JOIN "Sales".line_items USING (id) JOIN orders USING (id)'''

  [[phase.step]]
  id = "index"
  kind = "change"
  sql = '''CREATE INDEX CONCURRENTLY "IdxUpper" ON "Sales"."Orders" (id)'''
"#,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["plan", &rb, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let relations = |step: usize| -> Vec<String> {
        let mut names: Vec<String> = plan["steps"][step]["statements"][0]["relations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        relations(0),
        [
            r#""Orders""#,
            r#""Sales".line_items"#,
            "orders",
            r#"public."my.table""#,
        ]
    );
    assert_eq!(
        relations(1),
        [r#""Sales"."IdxUpper""#, r#""Sales"."Orders""#]
    );
}
