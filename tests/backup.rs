//! Dump backup steps against a real server: pg_dump of the named tables
//! into the data directory (mode 0600), verified with pg_restore --list, its
//! id (path, size, sha256) in the audit and `status`; a destructive step
//! after it; `pgpilot restore` of the dump into a scratch database, whose
//! data equals what was dumped; a rehearsal skips the dump with a note.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{Lab, Ran, confirms_for, connect, scalar};
use sha2::{Digest, Sha256};

/// A password the sandbox's trust ignores: it must appear nowhere pgpilot writes.
const PASSWORD: &str = "pw-never-shown-7f3a";

fn runbook(dir: &std::path::Path, id: &str, extra: &str) -> String {
    let text = format!(
        r#"
[runbook]
id = "{id}"
title = "Drop the users table after a dump"

[[phase]]
id = "p"

  [[phase.step]]
  id = "backup-users"
  kind = "backup"
  dump = {{ tables = ["users", "public.orders"] }}

  [[phase.step]]
  id = "drop-users"
  kind = "change"
  sql = "DROP TABLE users, orders"
  irreversible = "restore from the dump"
{extra}
"#
    );
    let path: PathBuf = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

const DATA: &str = "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
     INSERT INTO users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 500) g;
     CREATE TABLE orders (id int PRIMARY KEY, user_id int, total numeric);
     INSERT INTO orders SELECT g, g % 500 + 1, g * 1.5 FROM generate_series(1, 300) g;";

/// Row count and a checksum of the ordered rows of `table`.
const FINGERPRINT: &str = "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {t} t";

async fn fingerprint(client: &tokio_postgres::Client, table: &str) -> String {
    scalar(client, &FINGERPRINT.replace("{t}", table)).await
}

fn run(lab: &Lab, rb: &str, db: &str, extra: &[&str]) -> Ran {
    let confirms = confirms_for(rb, false);
    let mut args = vec!["run", rb, "--headless", "--db", db];
    args.extend(confirms.iter().map(String::as_str));
    args.extend_from_slice(extra);
    lab.run(&args)
}

fn dumps(lab: &Lab, runbook: &str) -> Vec<PathBuf> {
    let dir = lab.data_dir.path().join("backups").join(runbook);
    match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

fn sha256_of(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read the dump")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_is_taken_verified_recorded_and_the_data_restored_equal() {
    let lab = Lab::new();
    let client = lab.database("bk_main", &[]).await;
    client.batch_execute(DATA).await.expect("data");
    let users_before = fingerprint(&client, "users").await;
    let orders_before = fingerprint(&client, "orders").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "bk-main", "");
    let db = lab.uri("bk_main", None, PASSWORD);

    let ran = run(&lab, &rb, &db, &[]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('users', 'orders')"
        )
        .await,
        "0",
        "the destructive step ran: {ran}"
    );

    // One dump, mode 0600 in a 0700 folder, no partial file left.
    let files = dumps(&lab, "bk-main");
    assert_eq!(files.len(), 1, "{files:?}");
    let dump = &files[0];
    let name = dump
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        name.starts_with("backup-users-") && name.ends_with(".dump"),
        "{name}"
    );
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(dump), 0o600);
    assert_eq!(mode(dump.parent().expect("folder")), 0o700);
    let sha = sha256_of(dump);
    let size = std::fs::metadata(dump).expect("stat").len();

    // The id in the audit's success record of the step.
    let records = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit");
    let success = records
        .iter()
        .find(|r| {
            r.action == pgpilot::audit::Action::StepSuccess
                && r.step.as_deref() == Some("backup-users")
        })
        .expect("the backup's success record");
    let message = success.message.clone().unwrap_or_default();
    assert!(message.contains(&sha), "{message}");
    assert!(message.contains(&size.to_string()), "{message}");
    assert!(message.contains(&dump.display().to_string()), "{message}");

    // And in status, text and JSON.
    let st = lab.run(&["status", &rb, "--db", &db, "--format", "json"]);
    assert_eq!(st.code, 0, "{st}");
    let doc: serde_json::Value = serde_json::from_str(&st.stdout).expect("status json");
    let backup = &doc["steps"][0]["backup"];
    assert_eq!(backup["sha256"], sha.as_str(), "{doc}");
    assert_eq!(backup["size"], size, "{doc}");
    let text = lab.run(&["status", &rb, "--db", &db]);
    assert!(text.stdout.contains(&sha), "{text}");

    // The password went nowhere pgpilot writes.
    let audit_text = std::fs::read_to_string(lab.audit_file()).expect("audit text");
    for (what, text) in [
        ("stdout", &ran.stdout),
        ("stderr", &ran.stderr),
        ("audit", &audit_text),
        ("status", &st.stdout),
    ] {
        assert!(!text.contains(PASSWORD), "the password is in {what}");
    }

    // Restore by its id: a typed phrase, a new database, the data equal.
    let short = &sha[..12];
    let into = format!("pgpilot_restore_{short}");
    let phrase = format!("restore {short} into {into}");
    let wrong = lab.run(&["restore", short, "--db", &db, "--confirm", "restore=yes"]);
    assert_eq!(wrong.code, 3, "{wrong}");
    assert!(wrong.stderr.contains(&phrase), "{wrong}");
    let restored = lab.run(&[
        "restore",
        short,
        "--db",
        &db,
        "--confirm",
        &format!("restore={phrase}"),
    ]);
    assert_eq!(restored.code, 0, "{restored}");
    assert!(!restored.stdout.contains(PASSWORD) && !restored.stderr.contains(PASSWORD));
    let scratch = connect(&lab.server.conninfo(&into)).await;
    assert_eq!(fingerprint(&scratch, "users").await, users_before);
    assert_eq!(fingerprint(&scratch, "orders").await, orders_before);
    drop(scratch);
    // Once it exists, a second restore into it is refused, saying how to drop it.
    let again = lab.run(&[
        "restore",
        dump.to_str().expect("utf-8"),
        "--db",
        &db,
        "--confirm",
        &format!("restore={phrase}"),
    ]);
    assert_eq!(again.code, 3, "{again}");
    assert!(again.stderr.contains("DROP DATABASE"), "{again}");
    // Audited: the confirmation and the restore's start and end.
    let records = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit");
    let restores: Vec<String> = records
        .iter()
        .filter(|r| r.action == pgpilot::audit::Action::Restore)
        .map(|r| r.outcome.clone().unwrap_or_default())
        .collect();
    assert_eq!(restores, ["started", "done"]);
    let audit_text = std::fs::read_to_string(lab.audit_file()).expect("audit text");
    assert!(!audit_text.contains(PASSWORD));
    client
        .batch_execute(&format!("DROP DATABASE \"{into}\""))
        .await
        .expect("drop the scratch database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_skips_the_dump_with_a_note() {
    let lab = Lab::new();
    let client = lab.database("bk_rehearse", &[]).await;
    client.batch_execute(DATA).await.expect("data");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "bk-rehearse", "");
    let db = lab.conninfo("bk_rehearse");
    let ran = run(&lab, &rb, &db, &["--rehearse"]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout.contains("skipped in rehearsal") && ran.stdout.contains("session of its own"),
        "{ran}"
    );
    assert!(dumps(&lab, "bk-rehearse").is_empty());
    assert_eq!(scalar(&client, "SELECT count(*) FROM users").await, "500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dump_fails_the_step_and_leaves_no_file() {
    let lab = Lab::new();
    let client = lab.database("bk_fail", &[]).await;
    // No orders table: pg_dump --strict-names fails.
    client
        .batch_execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
        .await
        .expect("data");
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "bk-fail", "");
    let db = lab.conninfo("bk_fail");
    let ran = run(&lab, &rb, &db, &[]);
    assert_eq!(ran.code, 1, "{ran}");
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        all.contains("pg_dump failed") && all.contains("orders"),
        "{ran}"
    );
    assert!(
        dumps(&lab, "bk-fail").is_empty(),
        "{:?}",
        dumps(&lab, "bk-fail")
    );
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'users'"
        )
        .await,
        "1",
        "nothing after the failed backup ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_older_than_the_server_is_refused_naming_the_version() {
    let lab = Lab::new();
    let client = lab.database("bk_old", &[]).await;
    client
        .batch_execute("CREATE TABLE users (id int); CREATE TABLE orders (id int)")
        .await
        .expect("data");
    let server = scalar(
        &client,
        "SELECT current_setting('server_version_num')::int / 10000",
    )
    .await;
    // A pg_dump of 9.6, the only one in the folder pgpilot is told to use.
    let bin = tempfile::tempdir().expect("tempdir");
    for tool in ["pg_dump", "pg_restore"] {
        let path = bin.path().join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '{tool} (PostgreSQL) 9.6.24'\n"),
        )
        .expect("fake");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path(), "bk-old", "");
    let db = lab.conninfo("bk_old");
    let confirms = confirms_for(&rb, false);
    let mut args = vec!["run", rb.as_str(), "--headless", "--db", db.as_str()];
    args.extend(confirms.iter().map(String::as_str));
    let ran = Ran::from(
        lab.command(&args)
            .env("PGPILOT_PG_BINDIR", bin.path())
            .output()
            .expect("run"),
    );
    assert_eq!(ran.code, 1, "{ran}");
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        all.contains(&format!("no pg_dump of PostgreSQL {server} or newer")),
        "{ran}"
    );
    assert!(all.contains("(9)"), "{ran}");
    assert!(dumps(&lab, "bk-old").is_empty());
}

/// A runbook of `steps` (TOML of `[[phase.step]]` tables) that may run in production.
fn rule_runbook(dir: &std::path::Path, id: &str, steps: &str) -> String {
    let text = format!(
        "[runbook]\nid = \"{id}\"\ntitle = \"Backup rule\"\n[target]\nenvironments = [\"staging\", \"production\"]\n[[phase]]\nid = \"p\"\n{steps}"
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn change(id: &str, sql: &str, extra: &str) -> String {
    format!(
        "[[phase.step]]\nid = \"{id}\"\nkind = \"change\"\nsql = \"{sql}\"\nirreversible = \"test\"\n{extra}\n"
    )
}

const RULE: &str = "backup-before-data-loss";

#[test]
fn check_warns_when_data_is_removed_without_an_earlier_backup() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for (sql, table) in [
        ("DROP TABLE users", "users"),
        ("ALTER TABLE users DROP COLUMN email", "users"),
        ("TRUNCATE orders", "orders"),
        ("DELETE FROM orders WHERE id < 10", "orders"),
        (
            "ALTER TABLE users ALTER COLUMN email TYPE varchar(10) USING left(email, 10)",
            "users",
        ),
    ] {
        let rb = rule_runbook(dir.path(), "warns", &change("remove", sql, ""));
        let ran = lab.run(&["check", &rb]);
        assert_eq!(ran.code, 0, "a warning, not an error: {ran}");
        assert!(
            ran.stderr
                .contains(&format!("{RULE}: step remove removes data of {table}")),
            "{sql}: {ran}"
        );
    }
    // A change to text keeps every value: nothing to back up.
    let rb = rule_runbook(
        dir.path(),
        "widen",
        &change(
            "widen",
            "ALTER TABLE users ALTER COLUMN email TYPE text",
            "",
        ),
    );
    let ran = lab.run(&["check", &rb]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(!ran.stderr.contains(RULE), "{ran}");
    // UPDATE is left to its rollback.
    let rb = rule_runbook(
        dir.path(),
        "update",
        &change(
            "fix",
            "UPDATE users SET email = lower(email) WHERE id < 10",
            "rollback = \\\"SELECT 1\\\"",
        ),
    );
    let ran = lab.run(&["check", &rb]);
    assert!(!format!("{ran}").contains(RULE), "{ran}");
}

#[test]
fn an_earlier_dump_a_copy_or_no_backup_satisfies_the_rule() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = "[[phase.step]]\nid = \"dump\"\nkind = \"backup\"\ndump = { tables = [\"public.users\"] }\n";
    let ctas = "[[phase.step]]\nid = \"copy\"\nkind = \"backup\"\nsql = \"CREATE TABLE users_copy AS SELECT * FROM users\"\nrollback = \"DROP TABLE users_copy\"\n";
    let insert = "[[phase.step]]\nid = \"copy\"\nkind = \"change\"\nsql = \"INSERT INTO archive SELECT * FROM users\"\nrollback = \"DELETE FROM archive\"\n";
    for (name, before, extra) in [
        ("dump", dump, ""),
        ("ctas", ctas, ""),
        ("insert", insert, ""),
        (
            "reason",
            "",
            "no_backup = \"test data, rebuilt by the fixture loader\"",
        ),
    ] {
        let steps = format!("{before}{}", change("remove", "DROP TABLE users", extra));
        let rb = rule_runbook(dir.path(), name, &steps);
        let ran = lab.run(&["check", &rb]);
        assert_eq!(ran.code, 0, "{name}: {ran}");
        assert!(!format!("{ran}").contains(RULE), "{name}: {ran}");
    }
    // A backup after the step does not count, nor one of another table.
    let late = format!("{}{dump}", change("remove", "DROP TABLE users", ""));
    let ran = lab.run(&["check", &rule_runbook(dir.path(), "late", &late)]);
    assert!(ran.stderr.contains(RULE), "{ran}");
    let other = format!(
        "[[phase.step]]\nid = \"dump\"\nkind = \"backup\"\ndump = {{ tables = [\"orders\"] }}\n{}",
        change("remove", "DROP TABLE users", "")
    );
    let ran = lab.run(&["check", &rule_runbook(dir.path(), "other", &other)]);
    assert!(ran.stderr.contains(RULE), "{ran}");
    // no_backup needs a reason, and only a change step has one.
    let empty = change("remove", "DROP TABLE users", "no_backup = \" \"");
    let ran = lab.run(&["check", &rule_runbook(dir.path(), "empty", &empty)]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("no_backup needs a reason"), "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_run_refuses_data_loss_without_a_backup_before_any_change() {
    let lab = Lab::new();
    let client = lab.database("bk_prod", &[]).await;
    client.batch_execute(DATA).await.expect("data");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = "[[phase.step]]\nid = \"add\"\nkind = \"change\"\nsql = \"ALTER TABLE orders ADD COLUMN note text\"\nrollback = \"ALTER TABLE orders DROP COLUMN note\"\n";
    let steps = format!(
        "{first}{}",
        change("remove", "DELETE FROM users WHERE id > 100", "")
    );
    let rb = rule_runbook(dir.path(), "prod", &steps);
    let db = lab.conninfo("bk_prod");
    let name = lab.db_name("bk_prod");
    let production = format!("--confirm=@production={name}");
    let ran = run(&lab, &rb, &db, &["--env", "production", &production]);
    assert_eq!(ran.code, 3, "{ran}");
    let all = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        all.contains("step remove removes data of users (delete from)"),
        "{ran}"
    );
    // Refused before the first change: the first step did not run either.
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'").await,
        "0"
    );
    assert_eq!(scalar(&client, "SELECT count(*) FROM users").await, "500");
    // Staging runs it (check warned); production with no_backup too.
    let ok = format!(
        "{first}{}",
        change(
            "remove",
            "DELETE FROM users WHERE id > 100",
            "no_backup = \"users beyond 100 are test accounts\""
        )
    );
    let rb = rule_runbook(dir.path(), "prod-ok", &ok);
    let ran = run(&lab, &rb, &db, &["--env", "production", &production]);
    // no_backup satisfies the rule; production then asks for approvals
    // (tests/approvals.rs), so nothing runs yet.
    assert!(
        ran.stdout.contains("guard backup before data loss: pass"),
        "{ran}"
    );
    assert_eq!(ran.code, 3, "{ran}");
    assert!(ran.stdout.contains("guard approvals: FAIL"), "{ran}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM users").await, "500");
    let ran = run(&lab, &rb, &db, &["--env", "staging"]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM users").await, "100");
}
