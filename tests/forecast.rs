//! `plan --db`: each step's forecast (sizes, rows, seconds, lock) measured on
//! a real target, read-only, for the relations the analysis names — quoted
//! names included.

mod common;

use common::{Lab, connect, scalar};
use serde_json::Value;

fn write_runbook(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("forecast.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn plan_json(lab: &Lab, runbook: &str, db: Option<&str>) -> Value {
    let mut args = vec!["plan", runbook, "--format", "json"];
    if let Some(db) = db {
        args.extend(["--db", db]);
    }
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{ran}"))
}

fn step<'a>(plan: &'a Value, id: &str) -> &'a Value {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

const RUNBOOK: &str = r#"
[runbook]
id = "forecast"
title = "Forecast on a table of known size"

[[phase]]
id = "p"

  [[phase.step]]
  id = "read"
  kind = "check"
  sql = "SELECT count(*) FROM readings"

  [[phase.step]]
  id = "add-col"
  kind = "change"
  sql = "ALTER TABLE readings ADD COLUMN note text"
  rollback = "ALTER TABLE readings DROP COLUMN note"

  [[phase.step]]
  id = "retype"
  kind = "change"
  sql = "ALTER TABLE readings ALTER COLUMN v TYPE bigint"
  irreversible = "the old type is gone"

  [[phase.step]]
  id = "index"
  kind = "change"
  sql = "CREATE INDEX readings_v ON readings (v)"
  rollback = "DROP INDEX readings_v"
"#;

const ROWS: i64 = 50_000;

async fn readings(lab: &Lab, db: &str) -> tokio_postgres::Client {
    let client = lab.database(db, &[]).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE readings (id bigserial PRIMARY KEY, v int, s text);
             INSERT INTO readings (v, s) SELECT i % 97, md5(i::text) FROM generate_series(1, {ROWS}) i;
             ANALYZE readings;"
        ))
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_db_gives_each_step_sizes_rows_seconds_and_its_strongest_lock() {
    let lab = Lab::new();
    let client = readings(&lab, "forecast_sizes").await;
    let dir = tempfile::tempdir().unwrap();
    let runbook = write_runbook(&dir, RUNBOOK);
    let plan = plan_json(&lab, &runbook, Some(&lab.conninfo("forecast_sizes")));
    let heap: i64 = scalar(&client, "SELECT pg_relation_size('readings')")
        .await
        .parse()
        .unwrap();
    let indexes: i64 = scalar(&client, "SELECT pg_indexes_size('readings')")
        .await
        .parse()
        .unwrap();
    for id in ["read", "add-col", "retype", "index"] {
        let f = &step(&plan, id)["forecast"];
        assert_eq!(f["table_bytes"], heap, "{id}: {f}");
        assert_eq!(f["index_bytes"], indexes, "{id}: {f}");
        let rows = f["rows"].as_i64().unwrap_or_else(|| panic!("{id}: {f}"));
        assert!(
            (rows - ROWS).abs() <= ROWS / 10,
            "{id}: {rows} rows, {ROWS} counted"
        );
    }
    // Neither rewrites nor scans: no duration to forecast.
    assert!(step(&plan, "read")["forecast"]["seconds"].is_null());
    assert_eq!(step(&plan, "read")["forecast"]["lock"], "AccessShareLock");
    assert!(step(&plan, "add-col")["forecast"]["seconds"].is_null());
    assert_eq!(
        step(&plan, "add-col")["forecast"]["lock"],
        "AccessExclusiveLock"
    );
    // The rewrite and the index build: a positive estimate and the lock held.
    let retype = &step(&plan, "retype")["forecast"];
    assert!(retype["seconds"].as_f64().unwrap() > 0.0, "{retype}");
    assert_eq!(retype["lock"], "AccessExclusiveLock");
    let index = &step(&plan, "index")["forecast"];
    assert!(index["seconds"].as_f64().unwrap() > 0.0, "{index}");
    assert_eq!(index["lock"], "ShareLock");
    // A rewrite rebuilds the primary key too: it takes longer than one index.
    assert!(retype["seconds"].as_f64() > index["seconds"].as_f64());

    // The text plan says it in a sentence.
    let text = lab.run(&["plan", &runbook, "--db", &lab.conninfo("forecast_sizes")]);
    assert_eq!(text.code, 0, "{text}");
    assert!(
        text.stdout.contains("forecast: rewrites readings (")
            && text.stdout.contains("under ACCESS EXCLUSIVE: about ")
            && text
                .stdout
                .contains("during which every query on readings waits"),
        "{text}"
    );
}

#[test]
fn without_db_every_forecast_is_null() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let runbook = write_runbook(&dir, RUNBOOK);
    let plan = plan_json(&lab, &runbook, None);
    for s in plan["steps"].as_array().unwrap() {
        assert!(
            s.get("forecast").is_some_and(Value::is_null),
            "{}: {}",
            s["id"],
            s["forecast"]
        );
    }
}

const KEYS_RUNBOOK: &str = r#"
[runbook]
id = "forecast-keys"
title = "Index builds on an integer and on a text key"

[[phase]]
id = "p"

  [[phase.step]]
  id = "int-key"
  kind = "change"
  sql = "CREATE INDEX readings_v ON readings (v)"
  rollback = "DROP INDEX readings_v"

  [[phase.step]]
  id = "text-key"
  kind = "change"
  sql = "CREATE INDEX readings_label ON readings (label)"
  rollback = "DROP INDEX readings_label"
"#;

/// Same table, same heap: an index on a text key under the cluster's
/// (non-C) collation sorts several times slower than one on an integer.
/// The forecast times a sort of a sample of each key on the target, so the
/// text-key build is forecast longer, and says which key it sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_key_index_is_forecast_longer_than_an_integer_key_on_the_same_table() {
    let lab = Lab::new();
    let client = lab.database("forecast_keys", &[]).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE readings (id bigserial PRIMARY KEY, v int, label text);
             INSERT INTO readings (v, label)
               SELECT i % 97, 'sensor reading ' || md5(i::text) FROM generate_series(1, {ROWS}) i;
             ANALYZE readings;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runbook = write_runbook(&dir, KEYS_RUNBOOK);
    // The forecast comes from sorts timed on the target: on a machine
    // shared with other jobs one sample can be slowed by them, so the best
    // of three plans is judged (a model that ignored the key fails all
    // three: it once gave both 0.0752 s).
    let mut seen = Vec::new();
    let mut plan = Value::Null;
    let mut longer = false;
    for _ in 0..3 {
        plan = plan_json(&lab, &runbook, Some(&lab.conninfo("forecast_keys")));
        let secs = |id: &str| {
            let f = &step(&plan, id)["forecast"];
            f["seconds"].as_f64().unwrap_or_else(|| panic!("{f}"))
        };
        let (int_s, text_s) = (secs("int-key"), secs("text-key"));
        seen.push(format!("text key {text_s} s against int key {int_s} s"));
        longer = text_s > 1.5 * int_s;
        if longer {
            break;
        }
    }
    let text = &step(&plan, "text-key")["forecast"];
    assert!(longer, "{}\n{text}", seen.join("\n"));
    // The sample behind it: the key, its rows, its width from pg_stats.
    let sorts = text["tables"][0]["key_sorts"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"));
    let label = sorts
        .iter()
        .find(|k| k["keys"] == serde_json::json!(["label"]))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(label["sample_rows"].as_i64().unwrap() > 1000, "{label}");
    assert!(label["key_width"].as_f64().unwrap() > 40.0, "{label}");
}

const READER_PASSWORD: &str = "forecast-reader-pw";

/// A role that may only read the table measures it while a writer holds
/// ROW EXCLUSIVE on it in an open transaction: the forecast neither writes
/// nor takes a lock that conflicts with writers, and leaves no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_db_reads_only_and_never_waits_for_or_blocks_a_writer() {
    let lab = Lab::new();
    let client = readings(&lab, "forecast_readonly").await;
    let role = format!("forecast_reader_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD '{READER_PASSWORD}';
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             GRANT SELECT ON readings TO {role};"
        ))
        .await
        .unwrap();
    let writer = connect(&lab.conninfo("forecast_readonly")).await;
    writer
        .batch_execute("BEGIN; UPDATE readings SET v = v + 1 WHERE id <= 100")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runbook = write_runbook(&dir, RUNBOOK);
    let db = lab.uri("forecast_readonly", Some(&role), READER_PASSWORD);
    let plan = plan_json(&lab, &runbook, Some(&db));
    // The sample read ran beside the open write: it was not refused a lock.
    let retype = &step(&plan, "retype")["forecast"];
    assert!(
        retype["seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{retype}"
    );
    // The indexes the rewrite rebuilds were listed and their keys sampled
    // by the same read-only role.
    assert_eq!(
        retype["tables"][0]["rebuilds"][0]["keys"],
        serde_json::json!(["id"]),
        "{retype}"
    );
    // The writer goes on and commits.
    writer
        .batch_execute("UPDATE readings SET v = v + 1 WHERE id = 1; COMMIT")
        .await
        .unwrap();
    assert_eq!(
        scalar(&client, "SELECT to_regnamespace('pgpilot') IS NULL").await,
        "t",
        "plan --db created pgpilot's schema"
    );
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

const QUOTED: &str = r#"
[runbook]
id = "forecast-quoted"
title = "Quoted names are the tables PostgreSQL means"

[[phase]]
id = "p"

  [[phase.step]]
  id = "upper"
  kind = "change"
  sql = '''ALTER TABLE "Orders" ALTER COLUMN v TYPE bigint'''
  irreversible = "test"

  [[phase.step]]
  id = "dotted"
  kind = "change"
  sql = '''CREATE INDEX dotted_v ON "my.table" (v)'''
  rollback = "DROP INDEX dotted_v"

  [[phase.step]]
  id = "hostile"
  kind = "change"
  sql = "ALTER TABLE \"evil\u001b[2Jname\" ALTER COLUMN v SET NOT NULL"
  rollback = "ALTER TABLE \"evil\u001b[2Jname\" ALTER COLUMN v DROP NOT NULL"

  [[phase.step]]
  id = "absent"
  kind = "change"
  sql = '''ALTER TABLE "Absent" ADD COLUMN x int'''
  rollback = '''ALTER TABLE "Absent" DROP COLUMN x'''
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_and_hostile_names_are_measured_as_the_tables_they_name() {
    let lab = Lab::new();
    let client = lab.database("forecast_quoted", &[]).await;
    client
        .batch_execute(
            "CREATE TABLE \"Orders\" (v int); INSERT INTO \"Orders\" SELECT generate_series(1, 20000);
             CREATE TABLE orders (v int); INSERT INTO orders SELECT generate_series(1, 10);
             CREATE TABLE \"my.table\" (v int); INSERT INTO \"my.table\" SELECT generate_series(1, 3000);
             CREATE SCHEMA my; CREATE TABLE my.\"table\" (v int);
             CREATE TABLE \"evil\u{1b}[2Jname\" (v int); INSERT INTO \"evil\u{1b}[2Jname\" VALUES (1);
             CREATE TABLE absent (v int);
             ANALYZE;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runbook = write_runbook(&dir, QUOTED);
    let db = lab.conninfo("forecast_quoted");
    let plan = plan_json(&lab, &runbook, Some(&db));
    let size = |rel: &str| {
        let client = &client;
        let rel = rel.to_string();
        async move {
            scalar(
                client,
                &format!("SELECT pg_relation_size(to_regclass('{rel}'))"),
            )
            .await
            .parse::<i64>()
            .unwrap()
        }
    };
    let upper = &step(&plan, "upper")["forecast"];
    assert_eq!(upper["table_bytes"], size("\"Orders\"").await, "{upper}");
    assert_eq!(upper["rows"], 20000, "{upper}");
    assert_eq!(upper["work"][0]["relation"], "\"Orders\"", "{upper}");
    let dotted = &step(&plan, "dotted")["forecast"];
    assert_eq!(
        dotted["table_bytes"],
        size("\"my.table\"").await,
        "{dotted}"
    );
    assert_eq!(dotted["rows"], 3000, "{dotted}");
    // Not there: named as missing, not confused with its lower-case twin.
    let absent = &step(&plan, "absent")["forecast"];
    assert_eq!(absent["table_bytes"], 0, "{absent}");
    assert_eq!(absent["missing"][0], "\"Absent\"", "{absent}");
    // The text plan shows the hostile name with its escape made visible.
    let text = lab.run(&["plan", &runbook, "--db", &db]);
    assert_eq!(text.code, 0, "{text}");
    assert!(!text.stdout.contains('\u{1b}'), "{text}");
    assert!(text.stdout.contains("forecast: scans \"evil"), "{text}");
}

const REWRITES: &str = r#"
[runbook]
id = "forecast-rewrites"
title = "Rewrites of the same table with and without indexes"

[[phase]]
id = "p"

  [[phase.step]]
  id = "retype-plain"
  kind = "change"
  sql = "ALTER TABLE plain ALTER COLUMN v TYPE bigint"
  irreversible = "test"

  [[phase.step]]
  id = "retype-indexed"
  kind = "change"
  sql = "ALTER TABLE indexed ALTER COLUMN v TYPE bigint"
  irreversible = "test"

  [[phase.step]]
  id = "vacuum-plain"
  kind = "change"
  sql = "VACUUM FULL plain"

  [[phase.step]]
  id = "vacuum-indexed"
  kind = "change"
  sql = "VACUUM FULL indexed"
"#;

/// Rows of the rewrite test: enough for a rewrite to take about a second,
/// few enough to keep the test short.
const REWRITE_ROWS: i64 = 150_000;

/// A rewrite writes a new heap and then rebuilds every index of the table,
/// one after the other, under ACCESS EXCLUSIVE. Two tables of the same
/// rows, one with three indexes on text keys under a linguistic collation
/// (each rebuild sorts 150,000 strings, longer than writing the heap): the
/// indexed table's rewrite is forecast several times the plain one's, from
/// a sort of each rebuilt index's key sampled on the target, and each
/// forecast is of the order of the rewrite's measured duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_is_forecast_with_the_rebuild_of_every_index_of_its_table() {
    let lab = Lab::new();
    let client = lab.database("forecast_rewrites", &[]).await;
    let collation = scalar(
        &client,
        "SELECT coalesce((SELECT collname FROM pg_collation
                           WHERE collname IN ('en-x-icu', 'und-x-icu', 'en_US.utf8', 'C.utf8')
                           ORDER BY array_position(
                             ARRAY['en-x-icu', 'und-x-icu', 'en_US.utf8', 'C.utf8'], collname::text)
                           LIMIT 1), '')",
    )
    .await;
    assert!(
        !collation.is_empty(),
        "this test needs a linguistic collation"
    );
    let columns = format!(
        "id bigint, v int, a text COLLATE \"{collation}\", b text COLLATE \"{collation}\", c text COLLATE \"{collation}\""
    );
    client
        .batch_execute(&format!(
            "CREATE TABLE plain ({columns});
             INSERT INTO plain
               SELECT i, i % 97, 'sensor reading ' || md5(i::text),
                      'station ' || md5((i + 1)::text), 'site ' || md5((i + 2)::text)
               FROM generate_series(1, {REWRITE_ROWS}) i;
             CREATE TABLE indexed ({columns});
             INSERT INTO indexed SELECT * FROM plain;
             CREATE INDEX indexed_a ON indexed (a);
             CREATE INDEX indexed_b ON indexed (b);
             CREATE INDEX indexed_c ON indexed (c);"
        ))
        .await
        .unwrap();
    for table in ["plain", "indexed"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let runbook = write_runbook(&dir, REWRITES);
    // Clearly longer: three rebuilds, each more than the heap's rewrite.
    // Timed on the target, each table's read rate and each key's sort can
    // be slowed by other jobs on a shared machine: the best of three plans
    // is judged (a forecast without the rebuilds fails all three).
    let mut seen = Vec::new();
    let mut plan = Value::Null;
    for attempt in 1..=3 {
        plan = plan_json(&lab, &runbook, Some(&lab.conninfo("forecast_rewrites")));
        let seconds = |id: &str| {
            let f = &step(&plan, id)["forecast"];
            f["seconds"].as_f64().unwrap_or_else(|| panic!("{id}: {f}"))
        };
        let mut clear = true;
        for (plain, indexed) in [
            ("retype-plain", "retype-indexed"),
            ("vacuum-plain", "vacuum-indexed"),
        ] {
            let (p, i) = (seconds(plain), seconds(indexed));
            seen.push(format!("plan {attempt}: {indexed}: {i} s, {plain}: {p} s"));
            clear &= i > 4.0 * p;
        }
        if clear {
            break;
        }
        assert!(
            attempt < 3,
            "{}\n{}",
            seen.join("\n"),
            step(&plan, "retype-indexed")["forecast"]
        );
    }
    let seconds = |id: &str| {
        let f = &step(&plan, id)["forecast"];
        f["seconds"].as_f64().unwrap_or_else(|| panic!("{id}: {f}"))
    };
    // The indexes it rebuilds, each by its key.
    let rebuilds = &step(&plan, "retype-indexed")["forecast"]["tables"][0]["rebuilds"];
    let keys: Vec<&Value> = rebuilds
        .as_array()
        .unwrap_or_else(|| panic!("{rebuilds}"))
        .iter()
        .map(|r| &r["keys"])
        .collect();
    assert_eq!(
        keys,
        [
            &serde_json::json!(["a"]),
            &serde_json::json!(["b"]),
            &serde_json::json!(["c"])
        ],
        "{rebuilds}"
    );
    // Of the order of the real rewrite: a generous band, the 2× goal is
    // the benchmark's (docs/benchmarks.md, "Issue 14").
    for (id, table) in [("retype-plain", "plain"), ("retype-indexed", "indexed")] {
        let started = std::time::Instant::now();
        client
            .batch_execute(&format!("ALTER TABLE {table} ALTER COLUMN v TYPE bigint"))
            .await
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        let forecast = seconds(id);
        eprintln!("{id}: forecast {forecast:.2} s, measured {took:.2} s");
        assert!(
            forecast > took / 4.0 && forecast < took * 4.0,
            "{id}: forecast {forecast:.2} s, measured {took:.2} s\n{}",
            step(&plan, id)["forecast"]
        );
    }
}
