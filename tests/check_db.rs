//! `check --db` against a real server: the server's version wins, a finding
//! whose harm grows with the table takes its severity from the forecast on
//! the real table, a type change is judged on the column's real type (and
//! the claim is held to pg_relation_filenode), and a DROP names what depends
//! on the object.

mod common;

use common::{Lab, scalar};
use serde_json::Value;

fn write(dir: &tempfile::TempDir, name: &str, sql: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, sql).expect("write");
    path.display().to_string()
}

fn check_json(lab: &Lab, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let ran = lab.run(&all);
    let v = serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{ran}"));
    (ran.code, v, ran.stderr)
}

/// The diagnostics of `file` (by its file name) with rule `rule`.
fn findings<'a>(v: &'a Value, file: &str, rule: &str) -> Vec<&'a Value> {
    v["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["rule"] == rule && d["path"].as_str().is_some_and(|p| p.ends_with(file)))
        .collect()
}

fn plan_seconds(lab: &Lab, dir: &tempfile::TempDir, sql: &str, db: &str) -> f64 {
    let rb = write(
        dir,
        "plan.toml",
        &format!(
            "[runbook]\nid = \"p\"\ntitle = \"P\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"change\"\nsql = \"{sql}\"\nrollback = \"SELECT 1\"\n"
        ),
    );
    let ran = lab.run(&["plan", &rb, "--format", "json", "--db", db]);
    assert_eq!(ran.code, 0, "{ran}");
    let v: Value = serde_json::from_str(&ran.stdout).expect("plan json");
    v["steps"][0]["forecast"]["seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no forecast seconds: {ran}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn severity_follows_the_real_table_and_the_servers_version_wins() {
    let lab = Lab::new();
    let client = lab.database("check_sizes", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE small (id int, v int);
             INSERT INTO small SELECT g, g % 10 FROM generate_series(1, 200) g;
             CREATE TABLE big (id int, v int);
             INSERT INTO big SELECT g, g % 1000 FROM generate_series(1, 1000000) g;
             ANALYZE small; ANALYZE big;",
        )
        .await
        .expect("tables");
    let db = lab.conninfo("check_sizes");
    let dir = tempfile::tempdir().expect("tempdir");
    let small = write(&dir, "small.sql", "CREATE INDEX small_v ON small (v);\n");
    let big = write(&dir, "big.sql", "CREATE INDEX big_v ON big (v);\n");

    // With the default --max-blocking (10 s) a 200-row table is a note.
    let (code, v, err) = check_json(&lab, &[&small, "--db", &db]);
    assert_eq!(code, 0, "{err}\n{v:#}");
    let f = findings(&v, "small.sql", "index-not-concurrent");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "note", "{v:#}");
    let message = f[0]["message"].as_str().expect("message");
    assert!(message.contains("(small has about 200 rows)"), "{message}");
    assert!(message.contains("a note at this size"), "{message}");

    // The limit scaled by what this machine measures: a third of the big
    // table's forecast, so the same table is "big" on any machine.
    let big_s = plan_seconds(&lab, &dir, "CREATE INDEX big_v ON big (v)", &db);
    let limit_ms = ((big_s * 1000.0) / 3.0).max(1.0).round() as u64;
    let limit = if limit_ms.is_multiple_of(1000) {
        format!("{}s", limit_ms / 1000)
    } else {
        format!("{limit_ms}ms")
    };
    let (code, v, err) = check_json(&lab, &[&big, "--db", &db, "--max-blocking", &limit]);
    assert_eq!(code, 1, "{err}\n{v:#}");
    let f = findings(&v, "big.sql", "index-not-concurrent");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "error", "{v:#}");
    let message = f[0]["message"].as_str().expect("message");
    assert!(
        message.contains("builds an index on big") && message.contains("under SHARE: about "),
        "{message}"
    );
    assert!(
        message.contains(" s during which every write to big waits"),
        "{message}"
    );
    assert!(
        message.contains(&format!("at or over --max-blocking {limit}")),
        "{message}"
    );

    // Offline the same file is a warning: no sizes to go by.
    let (code, v, _) = check_json(&lab, &[&big]);
    assert_eq!(code, 0);
    assert_eq!(
        findings(&v, "big.sql", "index-not-concurrent")[0]["severity"],
        "warning"
    );

    // The server's version over --pg-version, said on stderr and in JSON.
    let major: u32 = scalar(
        &client,
        "SELECT (current_setting('server_version_num')::int / 10000)::text",
    )
    .await
    .parse()
    .expect("major");
    let (_, v, err) = check_json(&lab, &[&small, "--db", &db, "--pg-version", "11"]);
    assert_eq!(v["pg_version"], major, "{v:#}");
    assert_eq!(v["pg_version_source"], "server");
    assert!(
        err.contains(&format!(
            "--pg-version 11 but the server runs PostgreSQL {major}: checking for {major}"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_changes_are_judged_on_the_real_column_and_match_the_server() {
    let lab = Lab::new();
    let client = lab.database("check_types", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE w (a numeric(10,2), b numeric(10,2), c varchar(10), d numeric(10,2), e int);
             INSERT INTO w SELECT g, g, g::text, g, g FROM generate_series(1, 1000) g;",
        )
        .await
        .expect("table");
    let db = lab.conninfo("check_types");
    let dir = tempfile::tempdir().expect("tempdir");
    // (statement, whether pgpilot says it rewrites nothing)
    let cases = [
        ("ALTER TABLE w ALTER COLUMN a TYPE numeric(12,2)", true),
        ("ALTER TABLE w ALTER COLUMN b TYPE numeric", true),
        ("ALTER TABLE w ALTER COLUMN c TYPE varchar(20)", true),
        ("ALTER TABLE w ALTER COLUMN c TYPE text", true),
        ("ALTER TABLE w ALTER COLUMN d TYPE numeric(12,3)", false),
        ("ALTER TABLE w ALTER COLUMN e TYPE numeric", false),
    ];
    for (i, (sql, coercible)) in cases.iter().enumerate() {
        let name = format!("t{i}.sql");
        let file = write(&dir, &name, &format!("{sql};\n"));
        let (_, v, err) = check_json(&lab, &[&file, "--db", &db]);
        let note = findings(&v, &name, "coercible-type-change");
        let rewrite = findings(&v, &name, "column-type-change");
        if *coercible {
            assert_eq!((note.len(), rewrite.len()), (1, 0), "{sql}: {err}\n{v:#}");
            assert_eq!(note[0]["severity"], "note");
        } else {
            assert_eq!((note.len(), rewrite.len()), (0, 1), "{sql}: {err}\n{v:#}");
        }
        // What the server does: a rewrite gives the table a new file.
        let before = scalar(&client, "SELECT pg_relation_filenode('w')::text").await;
        client.batch_execute(sql).await.expect(sql);
        let after = scalar(&client, "SELECT pg_relation_filenode('w')::text").await;
        assert_eq!(
            before == after,
            *coercible,
            "{sql}: filenode {before} -> {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_names_the_views_and_functions_that_depend_on_it() {
    let lab = Lab::new();
    let client = lab.database("check_deps", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int);
             CREATE VIEW v1 AS SELECT id FROM t;
             CREATE VIEW v2 AS SELECT id FROM v1;
             CREATE FUNCTION one() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1';
             CREATE VIEW v3 AS SELECT one() AS x;",
        )
        .await
        .expect("objects");
    let db = lab.conninfo("check_deps");
    let dir = tempfile::tempdir().expect("tempdir");

    let file = write(&dir, "drop_v1.sql", "DROP VIEW v1;\n");
    let (code, v, err) = check_json(&lab, &[&file, "--db", &db]);
    assert_eq!(code, 1, "{err}\n{v:#}");
    let f = findings(&v, "drop_v1.sql", "drop-with-dependents");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "error");
    assert!(
        f[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("view v2")),
        "{v:#}"
    );
    // The claim holds: the server refuses it.
    let refused = client
        .batch_execute("DROP VIEW v1")
        .await
        .expect_err("v2 depends on v1");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST)
    );

    let file = write(&dir, "drop_one.sql", "DROP FUNCTION one();\n");
    let (code, v, _) = check_json(&lab, &[&file, "--db", &db]);
    assert_eq!(code, 1, "{v:#}");
    let f = findings(&v, "drop_one.sql", "drop-with-dependents");
    assert!(
        f.first()
            .and_then(|d| d["message"].as_str())
            .is_some_and(|m| m.contains("view v3")),
        "{v:#}"
    );

    // With CASCADE the dependents go too: a warning naming them.
    let file = write(&dir, "cascade.sql", "DROP VIEW v1 CASCADE;\n");
    let (_, v, _) = check_json(&lab, &[&file, "--db", &db]);
    let f = findings(&v, "cascade.sql", "drop-with-dependents");
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["severity"], "warning");

    // Dependents the migration drops first are not counted.
    let file = write(&dir, "both.sql", "DROP VIEW v2;\nDROP VIEW v1;\n");
    let (code, v, err) = check_json(&lab, &[&file, "--db", &db]);
    assert_eq!(code, 0, "{err}\n{v:#}");
    assert!(
        findings(&v, "both.sql", "drop-with-dependents").is_empty(),
        "{v:#}"
    );
}
