//! The analyzer's lock claims against the server's own word: each statement is
//! run on a real PostgreSQL and `pg_locks` is read for its backend.
//!
//! Transactional statements run inside BEGIN … ROLLBACK and every relation lock
//! they hold is compared. Statements that cannot run in a transaction block are
//! run while another session holds the weakest mode that conflicts with the
//! claimed one, so the lock they wait for shows in `pg_locks` with granted =
//! false (a weaker brief lock taken first, as VACUUM's ACCESS SHARE lookup,
//! passes; a lock weaker than claimed never waits and fails the check).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pgpilot::analysis::{Context, LockMode, analyze_sql};
use pgpilot::sandbox::{TestServer, test_server};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const FIXTURE: &str = r#"
CREATE TABLE t (id bigint PRIMARY KEY, a int, b text, c text, j jsonb);
INSERT INTO t SELECT g, g, 'x' || g, 'y', '{}' FROM generate_series(1, 200) g;
CREATE INDEX t_a_idx ON t (a);
CREATE TABLE parent_ref (id int PRIMARY KEY);
INSERT INTO parent_ref SELECT generate_series(1, 10);
CREATE TABLE child (id int PRIMARY KEY, parent_id int);
ALTER TABLE child ADD CONSTRAINT child_fk FOREIGN KEY (parent_id) REFERENCES parent_ref (id) NOT VALID;
CREATE TABLE p (id int, region text) PARTITION BY LIST (region);
CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu');
CREATE TABLE p_us (id int, region text);
CREATE MATERIALIZED VIEW mv AS SELECT id, a FROM t;
CREATE UNIQUE INDEX mv_id ON mv (id);
CREATE VIEW v AS SELECT id, a FROM t;
CREATE FUNCTION trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg_fn();
ALTER TABLE t ADD CONSTRAINT t_a_check CHECK (a > 0) NOT VALID;
"#;

/// Statements whose locks the analyzer claims to know.
const STATEMENTS: &[&str] = &[
    "SELECT * FROM t",
    "SELECT * FROM t WHERE id = 1 FOR UPDATE",
    "INSERT INTO t (id, a) VALUES (1000, 1)",
    "INSERT INTO t (id, a) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET a = 2",
    "UPDATE t SET a = a + 1 WHERE id = 1",
    "DELETE FROM t WHERE id = 2",
    "MERGE INTO t USING parent_ref r ON t.id = r.id WHEN MATCHED THEN UPDATE SET a = 5",
    "CREATE INDEX t_b_idx ON t (b)",
    "CREATE UNIQUE INDEX t_b_uidx ON t (b)",
    "DROP INDEX t_a_idx",
    "ALTER TABLE t ADD COLUMN d int",
    "ALTER TABLE t ADD COLUMN e uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE t ADD COLUMN f int REFERENCES parent_ref (id)",
    "ALTER TABLE t DROP COLUMN c",
    "ALTER TABLE t ALTER COLUMN b TYPE varchar(100)",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE t ALTER COLUMN a DROP NOT NULL",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT 0",
    "ALTER TABLE t ALTER COLUMN a SET STATISTICS 500",
    "ALTER TABLE child ADD CONSTRAINT child_fk2 FOREIGN KEY (parent_id) REFERENCES parent_ref (id) NOT VALID",
    "ALTER TABLE child VALIDATE CONSTRAINT child_fk",
    "ALTER TABLE t ADD CONSTRAINT t_b_check CHECK (b <> '') NOT VALID",
    "ALTER TABLE t ADD CONSTRAINT t_b_check CHECK (b <> '')",
    "ALTER TABLE t VALIDATE CONSTRAINT t_a_check",
    "ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b)",
    "ALTER TABLE t DROP CONSTRAINT t_a_check",
    "ALTER TABLE t SET (fillfactor = 70)",
    "ALTER TABLE t SET (autovacuum_enabled = false)",
    "ALTER TABLE t DISABLE TRIGGER t_trg",
    "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE t CLUSTER ON t_pkey",
    "ALTER TABLE t REPLICA IDENTITY FULL",
    "ALTER TABLE t RENAME COLUMN b TO b2",
    "ALTER TABLE t RENAME TO t2",
    "ALTER INDEX t_a_idx RENAME TO t_a_idx2",
    "CREATE TRIGGER t_trg2 BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION trg_fn()",
    "DROP TRIGGER t_trg ON t",
    "COMMENT ON TABLE t IS 'features'",
    "COMMENT ON COLUMN t.a IS 'a count'",
    "LOCK TABLE t IN SHARE MODE",
    "LOCK TABLE t",
    "TRUNCATE t",
    "DROP TABLE child",
    "DROP VIEW v",
    "DROP MATERIALIZED VIEW mv",
    "CLUSTER t USING t_pkey",
    "REINDEX TABLE t",
    "REINDEX INDEX t_a_idx",
    "REFRESH MATERIALIZED VIEW mv",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
    "CREATE STATISTICS t_ab_stats ON a, b FROM t",
    "ANALYZE t",
    "CREATE TABLE p_asia PARTITION OF p FOR VALUES IN ('asia')",
    "ALTER TABLE p ATTACH PARTITION p_us FOR VALUES IN ('us')",
    "ALTER TABLE p DETACH PARTITION p_eu",
    "CREATE TABLE c2 (id int PRIMARY KEY, parent_id int REFERENCES parent_ref (id))",
    "CREATE VIEW v2 AS SELECT * FROM t",
    "CREATE OR REPLACE VIEW v AS SELECT id, a FROM t",
    "CREATE TABLE t_copy AS SELECT * FROM t",
    // Cannot run in a transaction block.
    "CREATE INDEX CONCURRENTLY t_b_idx ON t (b)",
    "DROP INDEX CONCURRENTLY t_a_idx",
    "REINDEX INDEX CONCURRENTLY t_a_idx",
    "REINDEX TABLE CONCURRENTLY t",
    "VACUUM t",
    "VACUUM FULL t",
    "VACUUM (ANALYZE) t",
    "ALTER TABLE p DETACH PARTITION p_eu CONCURRENTLY",
];

async fn connect(conninfo: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(connection);
    client
}

async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The strongest lock each relation (by name) holds or awaits for `pid`.
async fn locks_of(
    observer: &Client,
    pid: &str,
    granted: Option<bool>,
) -> HashMap<String, LockMode> {
    let filter = match granted {
        Some(true) => "AND l.granted",
        Some(false) => "AND NOT l.granted",
        None => "",
    };
    let sql = format!(
        "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE l.locktype = 'relation' AND l.pid = {pid} {filter} \
         AND c.relnamespace = 'public'::regnamespace"
    );
    let mut out: HashMap<String, LockMode> = HashMap::new();
    for row in rows(observer, &sql).await {
        let mode =
            LockMode::from_name(&row[1]).unwrap_or_else(|| panic!("unknown mode {}", row[1]));
        let e = out.entry(row[0].clone()).or_insert(mode);
        *e = (*e).max(mode);
    }
    out
}

/// The table an index belongs to, or the relation itself.
async fn table_of(client: &Client, relation: &str) -> String {
    let r = rows(
        client,
        &format!(
            "SELECT coalesce((SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = '{relation}'::regclass), '{relation}')"
        ),
    )
    .await;
    r[0][0].clone()
}

/// The fixture database the cases are copied from, on a server that may be
/// shared (DATABASE_URL): every database here has a name no one else uses.
struct Fixture {
    server: TestServer,
    name: String,
    copies: std::sync::Mutex<Vec<String>>,
}

impl Fixture {
    /// A copy of the fixture for case `n`, named after the fixture (so
    /// unique too); its conninfo.
    async fn fresh_db(&self, n: usize) -> String {
        let name = format!("{}_case_{n}", self.name);
        let admin = connect(&self.server.conninfo("postgres")).await;
        rows(
            &admin,
            &format!("CREATE DATABASE {name} TEMPLATE {}", self.name),
        )
        .await;
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        self.server.conninfo(&name)
    }
}

impl Drop for Fixture {
    /// On a shared server, drops the fixture and its copies (names only
    /// this test made); a sandbox goes away whole.
    fn drop(&mut self) {
        if self.server.sandbox().is_some() {
            return;
        }
        let copies = self.copies.get_mut().unwrap_or_else(|e| e.into_inner());
        for name in copies.iter().chain([&self.name]) {
            let _ = self.server.drop_database(name);
        }
    }
}

async fn check_transactional(
    fixture: &Fixture,
    n: usize,
    sql: &str,
    claims: &HashMap<String, LockMode>,
) -> Vec<String> {
    let conninfo = fixture.fresh_db(n).await;
    let client = connect(&conninfo).await;
    let observer = connect(&conninfo).await;
    let pid = rows(&client, "SELECT pg_backend_pid()").await[0][0].clone();
    rows(&client, "BEGIN").await;
    if let Err(e) = client.simple_query(sql).await {
        return vec![format!(
            "{sql}: the analyzer says it runs in a transaction block, but the server said: {e}"
        )];
    }
    let observed = locks_of(&observer, &pid, Some(true)).await;
    rows(&client, "ROLLBACK").await;
    let mut problems = Vec::new();
    for (rel, mode) in claims {
        match observed.get(rel) {
            Some(seen) if seen == mode => {}
            other => problems.push(format!(
                "{sql}: claims {mode} on {rel}, server holds {other:?}"
            )),
        }
    }
    // Every table-like relation named in the statement must be claimed as the server locks it.
    let words: Vec<&str> = sql
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .collect();
    for (rel, seen) in &observed {
        if words.contains(&rel.as_str())
            && !claims.contains_key(rel)
            && !rel.ends_with("_idx")
            && !rel.ends_with("_pkey")
        {
            problems.push(format!(
                "{sql}: server holds {seen} on {rel}, the analyzer claims nothing"
            ));
        }
    }
    problems
}

async fn check_autocommit(
    fixture: &Fixture,
    n: usize,
    sql: &str,
    claims: &HashMap<String, LockMode>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // The server must refuse it inside a transaction block.
    {
        let conninfo = fixture.fresh_db(n * 100).await;
        let client = connect(&conninfo).await;
        rows(&client, "BEGIN").await;
        match client.simple_query(sql).await {
            Err(e) if e.code().map(|c| c.code()) == Some("25001") => {}
            other => problems.push(format!(
                "{sql}: the analyzer says it cannot run in a transaction block; server: {other:?}"
            )),
        }
    }
    for (i, (rel, mode)) in claims.iter().enumerate() {
        let conninfo = fixture.fresh_db(n * 100 + i + 1).await;
        let client = connect(&conninfo).await;
        let blocker = connect(&conninfo).await;
        let observer = connect(&conninfo).await;
        let pid = rows(&client, "SELECT pg_backend_pid()").await[0][0].clone();
        let table = table_of(&observer, rel).await;
        let weakest_conflict = LockMode::ALL
            .into_iter()
            .find(|m| m.conflicts_with(*mode))
            .unwrap_or(LockMode::AccessExclusive);
        rows(
            &blocker,
            &format!(
                "BEGIN; LOCK TABLE {table} IN {} MODE",
                weakest_conflict.sql_name()
            ),
        )
        .await;
        let statement = sql.to_string();
        let run = tokio::spawn(async move { client.simple_query(&statement).await.map(|_| ()) });
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiting = loop {
            let w = locks_of(&observer, &pid, Some(false)).await;
            if !w.is_empty() || run.is_finished() || Instant::now() > deadline {
                break w;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        rows(&blocker, "ROLLBACK").await;
        if let Err(e) = run.await.expect("statement task") {
            problems.push(format!("{sql}: failed after the blocker left: {e}"));
        }
        // An index's lock is requested after its table's, in the same mode.
        match waiting.get(&table).or_else(|| waiting.get(rel)) {
            Some(seen) if seen == mode => {}
            other => problems.push(format!("{sql}: claims {mode} on {rel}, server waited for {other:?} (all waits: {waiting:?})")),
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzer_lock_claims_match_pg_locks() {
    let server = test_server().expect("a PostgreSQL server (sandbox or DATABASE_URL)");
    let name = server
        .fresh_database("lock_fixture")
        .expect("a fixture database");
    let fixture = Fixture {
        server,
        name,
        copies: std::sync::Mutex::new(Vec::new()),
    };
    let client = connect(&fixture.server.conninfo(&fixture.name)).await;
    client.batch_execute(FIXTURE).await.expect("fixture schema");
    drop(client);

    let mut problems = Vec::new();
    let mut checked_autocommit = 0;
    for (n, sql) in STATEMENTS.iter().enumerate() {
        let analysis = analyze_sql(sql, &mut Context::default()).expect("parses");
        assert_eq!(analysis.len(), 1, "{sql}");
        let a = &analysis[0];
        let claims: HashMap<String, LockMode> = a
            .locks
            .iter()
            .map(|l| (l.relation.to_string(), l.mode))
            .collect();
        assert!(
            !claims.is_empty(),
            "{sql}: the analyzer claims no lock at all"
        );
        if a.transactional {
            problems.extend(check_transactional(&fixture, n, sql, &claims).await);
        } else {
            checked_autocommit += 1;
            problems.extend(check_autocommit(&fixture, n, sql, &claims).await);
        }
    }
    assert!(
        checked_autocommit >= 7,
        "the non-transactional forms were all checked"
    );
    assert!(
        problems.is_empty(),
        "{} claims disagree with the server:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
