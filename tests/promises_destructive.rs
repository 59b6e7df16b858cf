//! docs/safety-model.md, "What counts as destructive", row by row: each
//! statement the table names is destructive or not as it says, with the
//! phrase part it gives, as `pgpilot plan --format json` reports it (the
//! same analysis the engine asks the phrase from). A destructive step is
//! high risk. A statement that slipped out of the table would run without
//! its phrase; this test is what fails then.

mod common;

use common::{Lab, runbooks};
use serde_json::Value;

/// (SQL, the phrase its step asks for, or None when it is not destructive)
const TABLE: &[(&str, Option<&str>)] = &[
    ("DROP TABLE t", Some("drop table t")),
    (
        "DROP MATERIALIZED VIEW mv",
        Some("drop materialized view mv"),
    ),
    ("DROP SEQUENCE s", Some("drop sequence s")),
    ("DROP SCHEMA s", Some("drop schema s")),
    ("DROP TYPE ty", Some("drop type ty")),
    // A domain is a type (pg_type): its phrase says so.
    ("DROP DOMAIN dm", Some("drop type dm")),
    ("DROP EXTENSION hstore", Some("drop extension hstore")),
    ("DROP VIEW v CASCADE", Some("")),
    ("DROP INDEX i CASCADE", Some("")),
    ("DROP FUNCTION f() CASCADE", Some("")),
    ("DROP VIEW v", None),
    ("DROP INDEX i", None),
    ("DROP FUNCTION f()", None),
    ("DROP TRIGGER tr ON t", None),
    ("DROP FOREIGN TABLE ft", None),
    ("TRUNCATE a, b", Some("truncate a, b")),
    ("TRUNCATE a CASCADE", Some("truncate a")),
    ("DELETE FROM t", Some("delete from t")),
    ("DELETE FROM t WHERE a = 1", Some("delete from t")),
    ("UPDATE t SET a = 1", Some("update t")),
    ("UPDATE t SET a = 1 WHERE a = 2", Some("update t")),
    (
        "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2",
        Some("overwrite rows of t"),
    ),
    ("INSERT INTO t VALUES (1)", None),
    ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", None),
    (
        "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET a = s.a",
        Some("merge into t"),
    ),
    (
        "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
        Some("merge into t"),
    ),
    (
        "MERGE INTO t USING s ON t.a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.a)",
        None,
    ),
    ("ALTER TABLE t DROP COLUMN c", Some("drop column t.c")),
    (
        "ALTER TABLE t ALTER COLUMN c TYPE bigint",
        Some("retype column t.c"),
    ),
    ("DROP DATABASE d", Some("drop database d")),
    ("DROP OWNED BY r", Some("drop owned by r")),
    ("EXPLAIN ANALYZE DELETE FROM t", Some("delete from t")),
    ("EXPLAIN DELETE FROM t", None),
    ("DO $$ BEGIN PERFORM 1; END $$", Some("run s")),
    ("CALL p()", Some("run s")),
    ("COPY t FROM PROGRAM 'cat /tmp/x'", Some("run s")),
];

fn runbook(sql: &str) -> String {
    format!(
        r#"
[runbook]
id = "one"
title = "One statement"

[[phase]]
id = "p"

  [[phase.step]]
  id = "s"
  kind = "change"
  sql = '''{sql}'''
  irreversible = "the test only plans it"
"#
    )
}

#[test]
fn every_row_of_the_destructive_table_holds() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for (sql, phrase) in TABLE {
        let rb = runbooks::write(&dir, "one.toml", &runbook(sql));
        let ran = lab.run(&["plan", &rb, "--format", "json"]);
        assert_eq!(ran.code, 0, "{sql}: {ran}");
        let plan: Value = serde_json::from_str(&ran.stdout).expect("plan JSON");
        let step = &plan["steps"][0];
        let destructive = step["destructive"] == true;
        let asked = step["confirm"].as_str();
        let ok = match phrase {
            None => !destructive && asked.is_none(),
            // DROP … CASCADE: the phrase names the cascade; its exact
            // wording is the classifier's, the row only says it is asked.
            Some("") => destructive && asked.is_some_and(|p| p.contains("cascade")),
            Some(p) => destructive && asked == Some(p) && step["risk"] == "high",
        };
        if !ok {
            wrong.push(format!(
                "{sql}: destructive {destructive}, phrase {asked:?}, risk {} (the doc says {phrase:?})",
                step["risk"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "rows that do not hold:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_destructive_statement_in_a_check_or_verify_step_is_refused_by_check() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    for kind in ["check", "verify"] {
        let rb = runbooks::write(
            &dir,
            "look.toml",
            &format!(
                r#"
[runbook]
id = "look"
title = "A look that deletes"

[[phase]]
id = "p"

  [[phase.step]]
  id = "look"
  kind = "{kind}"
  sql = "DELETE FROM t RETURNING 1"
"#
            ),
        );
        let ran = lab.run(&["check", &rb]);
        assert_eq!(ran.code, 1, "{kind}: {ran}");
        assert!(
            ran.stderr.contains("look.toml:12:")
                && ran
                    .stderr
                    .contains(&format!("a {kind} step must not change data")),
            "{kind}: not placed at the step's sql: {ran}"
        );
    }
}
