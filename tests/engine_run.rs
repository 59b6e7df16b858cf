//! `pgpilot run`, `rollback` and `status` headless against a real server: the
//! sample runbooks end to end, resume, --from, rollback --to, rehearsal,
//! confirmations, and a password that never shows.

mod common;

use common::{Lab, column, confirms_for, scalar};

fn run_args<'a>(runbook: &'a str, db: &'a str, extra: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["run", runbook, "--headless", "--db", db, "--env", "staging"];
    args.extend(extra.iter().map(String::as_str));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_runbooks_apply_and_roll_back_end_to_end() {
    let lab = Lab::new();
    let groups: &[(&str, &[&str], &[&str])] = &[
        (
            "weatherinsight",
            &["weatherinsight.sql"],
            &[
                "runbooks/add-nullable-column-backfill.toml",
                "runbooks/change-column-type.toml",
                "runbooks/add-not-null-via-check.toml",
                "runbooks/create-index-concurrently.toml",
                "runbooks/split-station-metadata.toml",
            ],
        ),
        (
            "diagnosticpro",
            &["diagnosticpro.sql"],
            &[
                "runbooks/rename-column-expand-contract.toml",
                "runbooks/users-high-risk-change.toml",
            ],
        ),
        (
            "diagnosticpro",
            &["diagnosticpro.sql", "diagnosticpro-incident.sql"],
            &["runbooks/emergency-manual-rollback.toml"],
        ),
    ];
    for (db, assets, runbooks) in groups {
        let client = lab.database(db, assets).await;
        let conninfo = lab.conninfo(db);
        let local_before = local_records(&lab).len();
        let runbooks: Vec<String> = runbooks.iter().map(|rb| lab.runbook(rb)).collect();
        let mut approvers = Vec::new();
        for rb in &runbooks {
            let rb = rb.as_str();
            let confirms = confirms_for(rb, false);
            let mut cmd = lab.command(&run_args(rb, &conninfo, &confirms));
            if rb.ends_with("users-high-risk-change.toml") {
                // The sample is governed: its four approvals, by four other
                // roles, and a run inside its window (Sat 02:30 CET).
                let at = |now: &str| {
                    let mut c = lab.command(&run_args(rb, &conninfo, &confirms));
                    c.env("PGPILOT_TEST_NOW", now);
                    common::Ran::from(c.output().expect("run pgpilot"))
                };
                let unapproved = at("2026-12-05T01:30:00Z");
                assert_eq!(unapproved.code, 3, "{unapproved}");
                assert!(
                    unapproved.stdout.contains("guard approvals: FAIL"),
                    "{unapproved}"
                );
                approvers = approve_every_kind(&lab, &client, db, rb).await;
                let friday = at("2026-12-04T12:00:00Z");
                assert_eq!(friday.code, 3, "{friday}");
                assert!(
                    friday.stdout.contains("outside every change window"),
                    "{friday}"
                );
                cmd.env("PGPILOT_TEST_NOW", "2026-12-05T01:30:00Z");
            }
            let ran = common::Ran::from(cmd.output().expect("run pgpilot"));
            assert_eq!(ran.code, 0, "{rb}\n{ran}");
            assert!(ran.stdout.contains("pgpilot: done"), "{rb}\n{ran}");
            // pgpilot's own schema DDL is no step's notice.
            assert!(
                !ran.stdout.contains("\"pgpilot\" already exists")
                    && !ran.stdout.contains("step_state_status_known"),
                "{rb}\n{ran}"
            );
            let status = lab.run(&["status", rb, "--db", &conninfo, "--format", "json"]);
            assert_eq!(status.code, 0, "{status}");
            let doc: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
            for s in doc["steps"].as_array().unwrap() {
                let want = match s["kind"].as_str().unwrap() {
                    "change" | "backup" | "backfill" => "applied",
                    "check" | "verify" => "passed",
                    _ => "acknowledged",
                };
                assert_eq!(s["status"], want, "{rb}: {s}");
            }
        }
        // Every applied change is rolled back, newest runbook first.
        for rb in runbooks.iter().rev() {
            let rb = rb.as_str();
            let confirms = confirms_for(rb, true);
            let mut args = vec![
                "rollback",
                rb,
                "--headless",
                "--db",
                &conninfo,
                "--env",
                "staging",
            ];
            args.extend(confirms.iter().map(String::as_str));
            let ran = lab.run(&args);
            assert_eq!(ran.code, 0, "rollback {rb}\n{ran}");
        }
        let applied = column(
            &client,
            "SELECT step_id FROM pgpilot.step_state WHERE status = 'applied'",
        )
        .await;
        assert!(
            applied.is_empty(),
            "{db}: still applied after rollback: {applied:?}"
        );
        for role in approvers {
            let _ = client
                .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
                .await;
        }
        // The database copy holds every record these sessions wrote locally
        // (step records through the audit's own connection, the rest on the
        // executor's).
        let local = local_records(&lab);
        // A session a guard refused writes nothing to a database it refused.
        let refused: std::collections::HashSet<&str> = local[local_before..]
            .iter()
            .filter(|r| {
                r.action == pgpilot::audit::Action::SessionEnd
                    && r.outcome.as_deref() == Some("refused")
            })
            .map(|r| r.session.as_str())
            .collect();
        let ours: Vec<_> = local[local_before..]
            .iter()
            .filter(|r| !refused.contains(r.session.as_str()))
            .filter(|r| {
                r.target
                    .as_ref()
                    .is_some_and(|t| t.database == lab.db_name(db))
            })
            .collect();
        assert!(ours.len() > 20, "{db}: only {} records", ours.len());
        assert_copied(&client, &ours).await;
    }
    let verify = lab.run(&["audit", "verify", lab.audit_file().to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{verify}");
}

/// One approver role per kind the runbook requires (`[approvals]`), each
/// granted what docs/safety-model.md tells a DBA to grant, each approving
/// its kind; returns the roles.
async fn approve_every_kind(
    lab: &Lab,
    client: &tokio_postgres::Client,
    db: &str,
    rb: &str,
) -> Vec<String> {
    let conninfo = lab.conninfo(db);
    let listed = lab.run(&["approvals", rb, "--db", &conninfo]);
    assert_eq!(listed.code, 0, "{listed}");
    let mut roles = Vec::new();
    for kind in ["technical", "business", "security", "cab"] {
        let role = format!("{kind}_{}", std::process::id());
        client
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'pw';
                 GRANT USAGE ON SCHEMA pgpilot TO {role};
                 GRANT SELECT, INSERT, UPDATE ON pgpilot.approvals TO {role};"
            ))
            .await
            .expect("approver role");
        let uri = lab.uri(db, Some(&role), "pw");
        let ran = lab.run(&["approve", rb, "--db", &uri, "--as", kind]);
        assert_eq!(ran.code, 0, "{ran}");
        roles.push(role);
    }
    roles
}

/// Every one of `records` is in the database's `pgpilot.audit_log`, hash and all.
async fn assert_copied(client: &tokio_postgres::Client, records: &[&pgpilot::audit::AuditRecord]) {
    let copied: std::collections::HashSet<String> = column(
        client,
        "SELECT session || '/' || seq || '/' || hash FROM pgpilot.audit_log",
    )
    .await
    .into_iter()
    .collect();
    for r in records {
        assert!(
            copied.contains(&format!("{}/{}/{}", r.session, r.seq, r.hash)),
            "record {} ({:?} {:?}) of {:?} is not in pgpilot.audit_log",
            r.seq,
            r.action,
            r.step,
            r.target
        );
    }
}

fn local_records(lab: &Lab) -> Vec<pgpilot::audit::AuditRecord> {
    if !lab.audit_file().exists() {
        return Vec::new();
    }
    pgpilot::audit::query::read_records(&lab.audit_file()).expect("local audit log")
}

const RESUMABLE: &str = r#"
[runbook]
id = "resumable"
title = "Resume after a failing check"

[[phase]]
id = "p"

  [[phase.step]]
  id = "add-a"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN a int"
  rollback = "ALTER TABLE t DROP COLUMN IF EXISTS a"

  [[phase.step]]
  id = "no-nulls-in-b"
  kind = "check"
  sql = "SELECT 1 FROM t WHERE b IS NULL"
  expect = { empty = true }

  [[phase.step]]
  id = "add-c"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN c int; INSERT INTO applied_log VALUES ('add-c')"
  rollback = "ALTER TABLE t DROP COLUMN IF EXISTS c"

  [[phase.step]]
  id = "add-d"
  kind = "change"
  sql = "ALTER TABLE t ADD COLUMN d int; INSERT INTO applied_log VALUES ('add-d')"
  rollback = "ALTER TABLE t DROP COLUMN IF EXISTS d"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_check_stops_the_run_and_a_second_run_resumes() {
    let lab = Lab::new();
    let client = lab.database("resume", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int, b int); INSERT INTO t VALUES (1, NULL); CREATE TABLE applied_log (step text)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("resumable.toml");
    std::fs::write(&rb, RESUMABLE).unwrap();
    let rb = rb.to_str().unwrap();
    let db = lab.conninfo("resume");

    let first = lab.run(&["run", rb, "--headless", "--db", &db]);
    assert_eq!(first.code, 1, "{first}");
    assert!(
        first
            .stdout
            .contains("expectation not met: expected no rows, got 1 row(s)"),
        "{first}"
    );
    assert_eq!(
        column(
            &client,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY 1"
        )
        .await,
        ["a", "b", "id"]
    );

    client.batch_execute("UPDATE t SET b = 0").await.unwrap();
    let second = lab.run(&["run", rb, "--headless", "--db", &db]);
    assert_eq!(second.code, 0, "{second}");
    assert!(
        second.stdout.contains("[add-a] skipped: already applied"),
        "{second}"
    );
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM applied_log").await,
        "2"
    );

    // A third run has nothing to apply and applies nothing twice.
    let third = lab.run(&["run", rb, "--headless", "--db", &db]);
    assert_eq!(third.code, 0, "{third}");
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM applied_log").await,
        "2"
    );

    // Roll back to add-a: c and d go, a stays.
    // Dropping a column in a rollback is destructive too: each asks its phrase.
    let rolled = lab.run(&[
        "rollback",
        rb,
        "--headless",
        "--db",
        &db,
        "--to",
        "add-a",
        "--confirm",
        "add-d=rollback drop column t.d",
        "--confirm",
        "add-c=rollback drop column t.c",
    ]);
    assert_eq!(rolled.code, 0, "{rolled}");
    assert_eq!(
        column(
            &client,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY 1"
        )
        .await,
        ["a", "b", "id"]
    );
    let status = lab.run(&["status", rb, "--db", &db]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("add-c") && l.contains("rolled_back")),
        "{status}"
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("add-a") && l.contains("applied")),
        "{status}"
    );

    // A name that is no step of the runbook is refused, and nothing runs.
    for (command, flag) in [("run", "--from"), ("rollback", "--to")] {
        let typo = lab.run(&[command, rb, "--headless", "--db", &db, flag, "add-dd"]);
        assert_eq!(typo.code, 3, "{typo}");
        assert!(
            typo.to_string()
                .contains(&format!("{flag} add-dd: no such step in runbook")),
            "{typo}"
        );
    }
    assert_eq!(
        column(
            &client,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY 1"
        )
        .await,
        ["a", "b", "id"]
    );

    // --from runs the named step and what follows, not what precedes.
    let from = lab.run(&["run", rb, "--headless", "--db", &db, "--from", "add-d"]);
    assert_eq!(from.code, 0, "{from}");
    assert_eq!(
        column(
            &client,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' ORDER BY 1"
        )
        .await,
        ["a", "b", "d", "id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_steps_need_their_exact_phrase() {
    let lab = Lab::new();
    let client = lab.database("diagnosticpro", &["diagnosticpro.sql"]).await;
    let db = lab.conninfo("diagnosticpro");
    let rb = "tests/fixtures/valid/drop-column.toml";
    // No terminal and no --confirm: refused, nothing dropped.
    let missing = lab.run(&["run", rb, "--headless", "--db", &db]);
    assert_eq!(missing.code, 3, "{missing}");
    assert!(
        missing
            .stderr
            .contains("needs the phrase \"drop column users.legacy_id\""),
        "{missing}"
    );
    // A wrong phrase: refused, nothing dropped.
    let wrong = lab.run(&[
        "run",
        rb,
        "--headless",
        "--db",
        &db,
        "--confirm",
        "drop=drop column users",
    ]);
    assert_eq!(wrong.code, 3, "{wrong}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'legacy_id'").await, "1");
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        audit.contains("\"outcome\":\"missing\""),
        "missing phrase audited"
    );
    assert!(
        audit.contains("\"outcome\":\"wrong\""),
        "wrong phrase audited"
    );
    // The exact phrase: dropped.
    let right = lab.run(&[
        "run",
        rb,
        "--headless",
        "--db",
        &db,
        "--confirm",
        "drop=drop column users.legacy_id",
    ]);
    assert_eq!(right.code, 0, "{right}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'legacy_id'").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_changes_nothing_and_is_audited_as_rehearsal() {
    let lab = Lab::new();
    let client = lab
        .database("weatherinsight", &["weatherinsight.sql"])
        .await;
    let db = lab.conninfo("weatherinsight");
    let rb = lab.runbook("runbooks/create-index-concurrently.toml");
    let confirms = confirms_for(&rb, false);
    let mut args = run_args(&rb, &db, &confirms);
    args.push("--rehearse");
    let ran = lab.run(&args);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.contains("transactional form"), "{ran}");
    assert!(ran.stdout.contains("rehearsal finished"), "{ran}");
    let indexes = column(
        &client,
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    )
    .await;
    let before = lab.database("fresh", &["weatherinsight.sql"]).await;
    assert_eq!(
        indexes,
        column(
            &before,
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        )
        .await
    );
    assert_eq!(
        column(&client, "SELECT to_regclass('pgpilot.step_state')::text").await,
        ["NULL"],
        "the state table was created inside the rehearsal"
    );
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        audit.lines().all(|l| l.contains("\"rehearsal\":true")),
        "{audit}"
    );
    assert!(
        scalar(
            &client,
            "SELECT count(*) FROM pgpilot.audit_log WHERE rehearsal"
        )
        .await
        .parse::<u32>()
        .unwrap()
            > 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_in_db_appears_nowhere() {
    let lab = Lab::new();
    let client = lab.database("diagnosticpro", &["diagnosticpro.sql"]).await;
    // The sandbox trusts local connections, so a made-up password is
    // accepted and unused; a DATABASE_URL with a password of its own needs
    // that one, and it is the one that must appear nowhere.
    let secret = lab
        .password()
        .unwrap_or_else(|| "Sup3rS3cretPw".to_string());
    let secret = secret.as_str();
    let uri = lab.uri("diagnosticpro", None, secret);
    let ran = lab.run(&[
        "run",
        "tests/fixtures/valid/drop-column.toml",
        "--headless",
        "--db",
        &uri,
        "--confirm",
        "drop=drop column users.legacy_id",
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    let bad = format!("postgresql://postgres:{secret}@127.0.0.1:1/diagnosticpro");
    let failed = lab.run(&[
        "run",
        "tests/fixtures/valid/drop-column.toml",
        "--headless",
        "--db",
        &bad,
    ]);
    assert_ne!(failed.code, 0);
    for text in [&ran.stdout, &ran.stderr, &failed.stdout, &failed.stderr] {
        assert!(!text.contains(secret), "password shown:\n{text}");
    }
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(!audit.contains(secret));
    let in_db = column(
        &client,
        "SELECT row_to_json(a)::text FROM pgpilot.audit_log a",
    )
    .await
    .join("\n");
    assert!(!in_db.is_empty() && !in_db.contains(secret));
}

const TEN_STEPS: &str = r#"
[runbook]
id = "ten-steps"
title = "Ten small changes"

[[phase]]
id = "p"
"#;

/// TEN_STEPS with ten `INSERT INTO t` steps, written into the lab.
fn ten_steps(lab: &Lab) -> std::path::PathBuf {
    let mut rb = String::from(TEN_STEPS);
    for i in 0..10 {
        rb.push_str(&format!(
            "\n  [[phase.step]]\n  id = \"s{i}\"\n  kind = \"change\"\n  sql = \"INSERT INTO t VALUES ({i})\"\n"
        ));
    }
    let path = lab.data_dir.path().join("ten-steps.toml");
    std::fs::write(&path, rb).unwrap();
    path
}

/// A step's start record is copied inside the step's own transaction. When
/// the database refuses that copy, the step still runs, once, with its
/// records synced locally before COMMIT, and the refused copies wait in the
/// spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_audit_copy_inside_a_step_neither_stops_nor_repeats_it() {
    let lab = Lab::new();
    let client = lab.database("refused", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let db = lab.conninfo("refused");
    // A first session creates the audit table; then it refuses step starts.
    let first = lab.data_dir.path().join("first.toml");
    std::fs::write(
        &first,
        "[runbook]\nid = \"first\"\ntitle = \"Creates the audit table\"\n\n[[phase]]\nid = \"p\"\n\n  [[phase.step]]\n  id = \"c\"\n  kind = \"check\"\n  sql = \"SELECT 1\"\n",
    )
    .unwrap();
    let ran = lab.run(&["run", first.to_str().unwrap(), "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    client
        .batch_execute(
            "CREATE FUNCTION refuse_starts() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.action = 'step_start' THEN RAISE EXCEPTION 'no step starts here'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_starts BEFORE INSERT ON pgpilot.audit_log
               FOR EACH ROW EXECUTE FUNCTION refuse_starts();",
        )
        .await
        .unwrap();
    let path = ten_steps(&lab);
    let ran = lab.run(&["run", path.to_str().unwrap(), "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout
            .contains("the audit copy inside the step's transaction failed (no step starts here)"),
        "{ran}"
    );
    assert_eq!(
        column(&client, "SELECT id::text FROM t ORDER BY id").await,
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>(),
        "each step ran exactly once"
    );
    let local: Vec<_> = local_records(&lab)
        .into_iter()
        .filter(|r| r.runbook.as_deref() == Some("ten-steps"))
        .collect();
    let count = |a: pgpilot::audit::Action| local.iter().filter(|r| r.action == a).count();
    assert_eq!(count(pgpilot::audit::Action::StepStart), 10);
    assert_eq!(count(pgpilot::audit::Action::StepSuccess), 10);
    // None is lost: each record is in the database or waits in the spool,
    // the refused starts among the latter.
    let copied: std::collections::HashSet<String> = column(
        &client,
        "SELECT session || '/' || seq FROM pgpilot.audit_log",
    )
    .await
    .into_iter()
    .collect();
    let spool = std::fs::read_to_string(lab.data_dir.path().join("spool.jsonl")).unwrap();
    let spooled: std::collections::HashSet<String> = spool
        .lines()
        .map(|l| serde_json::from_str::<pgpilot::audit::AuditRecord>(l).unwrap())
        .map(|r| format!("{}/{}", r.session, r.seq))
        .collect();
    for r in &local {
        let key = format!("{}/{}", r.session, r.seq);
        if r.action == pgpilot::audit::Action::StepStart {
            assert!(
                spooled.contains(&key),
                "{:?} {:?} not spooled",
                r.action,
                r.step
            );
        } else {
            assert!(
                copied.contains(&key) || spooled.contains(&key),
                "{:?} {:?} lost",
                r.action,
                r.step
            );
        }
    }
    let verify = lab.run(&["audit", "verify", lab.audit_file().to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{verify}");
}

/// The password of the one-connection role (a sandbox's trust ignores it;
/// a DATABASE_URL server may ask for it).
const ONE_CONN_PASSWORD: &str = "one-conn-pw";

/// With a role allowed one connection, the audit's second connection is
/// refused: its records are spooled and the executor's connection copies
/// them, so the database copy is still whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_copies_reach_the_database_when_a_second_connection_is_refused() {
    let lab = Lab::new();
    let client = lab.database("oneconn", &[]).await;
    let role = format!("one_conn_{}", std::process::id());
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role};
             CREATE ROLE {role} LOGIN PASSWORD '{ONE_CONN_PASSWORD}' CONNECTION LIMIT 1;
             GRANT CREATE ON DATABASE {db} TO {role};
             CREATE TABLE t (id int); GRANT INSERT ON t TO {role};",
            db = lab.db_ident("oneconn"),
        ))
        .await
        .unwrap();
    let path = ten_steps(&lab);
    let db = lab.uri("oneconn", Some(&role), ONE_CONN_PASSWORD);
    let ran = lab.run(&["run", path.to_str().unwrap(), "--headless", "--db", &db]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(scalar(&client, "SELECT count(*) FROM t").await, "10");
    let local = local_records(&lab);
    let successes = local
        .iter()
        .filter(|r| r.action == pgpilot::audit::Action::StepSuccess)
        .count();
    assert_eq!(successes, 10, "{} records", local.len());
    assert_copied(&client, &local.iter().collect::<Vec<_>>()).await;
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}

const NOTICES: &str = r#"
[runbook]
id = "notices"
title = "Notices and a capture kept across a resume"

[[phase]]
id = "p"

  [[phase.step]]
  id = "count"
  kind = "check"
  sql = "SELECT count(*) FROM t"
  capture = "n"

  [[phase.step]]
  id = "grow"
  kind = "change"
  sql = "INSERT INTO t VALUES (100); DO $$ BEGIN RAISE NOTICE 'grew t by one'; END $$"
  rollback = "DELETE FROM t WHERE id = 100"

  [[phase.step]]
  id = "gate"
  kind = "check"
  sql = "SELECT 1 FROM gate WHERE open"
  expect = { rows = 1 }

  [[phase.step]]
  id = "one-more"
  kind = "verify"
  sql = "SELECT count(*) - 1 FROM t"
  expect = { scalar = "{{n}}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_are_shown_and_audited_and_captures_survive_a_resume() {
    let lab = Lab::new();
    let client = lab.database("notices", &[]).await;
    client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3); CREATE TABLE gate (open bool); INSERT INTO gate VALUES (false)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("notices.toml");
    std::fs::write(&rb, NOTICES).unwrap();
    let rb = rb.to_str().unwrap();
    let db = lab.conninfo("notices");
    // The DO block is opaque to the analysis, so the step asks "run grow".
    let first = lab.run(&[
        "run",
        rb,
        "--headless",
        "--db",
        &db,
        "--confirm",
        "grow=run grow",
    ]);
    assert_eq!(first.code, 1, "{first}");
    assert!(
        first.stdout.contains("[grow] NOTICE: grew t by one"),
        "{first}"
    );
    assert!(first.stdout.contains("{{n}} = 3"), "{first}");
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"notice\"") && l.contains("grew t by one")),
        "{audit}"
    );

    client
        .batch_execute("UPDATE gate SET open = true")
        .await
        .unwrap();
    let second = lab.run(&["run", rb, "--headless", "--db", &db]);
    // count re-runs (t now has 4 rows) but keeps n = 3, which grow was applied after.
    assert_eq!(second.code, 0, "{second}");
    assert!(second.stdout.contains("[one-more] passed"), "{second}");
}

/// A `pgpilot.step_state` whose columns are not the types this binary
/// writes (another version's, or a hand-made one) is reported as an error
/// naming the table; pgpilot does not panic on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_table_of_another_shape_is_an_error_not_a_panic() {
    let lab = Lab::new();
    let client = lab.database("othershape", &[]).await;
    client
        .batch_execute(
            "CREATE SCHEMA pgpilot;
             CREATE TABLE pgpilot.step_state (
                 runbook_id text, step_id text, status text, step_sha256 text,
                 runbook_sha256 text, operator text, role text, client_host text,
                 captured text, rows bigint, duration_ms text, updated_at timestamptz);
             INSERT INTO pgpilot.step_state VALUES
                 ('drop-legacy', 'drop', 'applied', 'x', 'x', 'alice', 'r', 'h',
                  NULL, 1, 'twelve seconds', now());",
        )
        .await
        .unwrap();
    let db = lab.conninfo("othershape");
    let status = lab.run(&[
        "status",
        "tests/fixtures/valid/drop-column.toml",
        "--db",
        &db,
    ]);
    assert!(!status.stderr.contains("panicked"), "{status}");
    assert_eq!(status.code, 1, "{status}");
    assert!(
        status.stderr.contains("cannot read pgpilot.step_state"),
        "{status}"
    );
}
