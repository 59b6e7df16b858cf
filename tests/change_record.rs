//! The change record (`audit export --format markdown`) as the seed's
//! change-log entry, from real runs against a real server with real roles:
//! date, change id, risk, who approved (kinds, roles, times), description,
//! files, backup id, deployment time, verification, issues, rollback, and an
//! emergency's reason; hostile text from approvers stays inert.

mod common;

use std::path::PathBuf;

use common::governance::ApprovalLab;
use common::{Lab, confirms_for, scalar};
use sha2::{Digest, Sha256};

fn runbook(approvals: &str, settings: &str) -> String {
    format!(
        r#"
[runbook]
id = "users-nickname-record"
title = "Add users.nickname"
description = "Lets users pick a display name (CHG request 12)"
change_type = "minor"
risk = "high"
ticket = "CHG-4242"

{approvals}

[settings]
{settings}

[[phase]]
id = "p"

  [[phase.step]]
  id = "backup-users"
  kind = "backup"
  dump = {{ tables = ["users"] }}

  [[phase.step]]
  id = "count-before"
  kind = "check"
  sql = "SELECT count(*) FROM users"
  expect = {{ scalar = "3" }}

  [[phase.step]]
  id = "add-nickname"
  kind = "change"
  file = "sql/add_nickname.sql"
  rollback = "ALTER TABLE users DROP COLUMN nickname"

  [[phase.step]]
  id = "verify-nickname"
  kind = "verify"
  sql = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'"
  expect = {{ scalar = "1" }}
"#
    )
}

/// A users table of three rows, the runbook's SQL file, and two approvers.
async fn setup(tag: &str) -> ApprovalLab {
    let s = ApprovalLab::new(
        "rec",
        tag,
        "CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users VALUES (1), (2), (3)",
    )
    .await;
    std::fs::create_dir(s.folder.path().join("sql")).expect("sql folder");
    std::fs::write(
        s.folder.path().join("sql/add_nickname.sql"),
        "ALTER TABLE users ADD COLUMN nickname text\n",
    )
    .expect("sql file");
    s.admit_approvers(&runbook("", "")).await;
    s
}

/// `role` approves `kind` with `comment`.
fn approve(s: &ApprovalLab, rb: &str, role: &str, kind: &str, comment: &str) {
    let ran = s.approve(rb, role, kind, &["--comment", comment]);
    assert_eq!(ran.code, 0, "{ran}");
}

/// When `role` approved `kind`, as the change record shows it.
async fn approved_at(s: &ApprovalLab, role: &str, kind: &str) -> String {
    scalar(
        &s.client,
        &format!(
            "SELECT to_char(approved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM pgpilot.approvals WHERE approver = '{role}' AND kind = '{kind}'"
        ),
    )
    .await
}

/// Every session's change-log entry (`audit export --format markdown`).
fn markdown(lab: &Lab) -> String {
    let md = lab.run(&["audit", "export", "--format", "markdown"]);
    assert_eq!(md.code, 0, "{md}");
    md.stdout
}

/// The sessions that made a change-log entry (`approve` makes none).
fn entries(md: &str) -> Vec<&str> {
    md.split("\n## ")
        .skip(1)
        .filter(|s| s.contains("\n| Date | "))
        .collect()
}

/// The value of the header row `key` of the `n`th session (0-based).
fn row(md: &str, n: usize, key: &str) -> String {
    let section = entries(md)
        .into_iter()
        .nth(n)
        .unwrap_or_else(|| panic!("no session {n} in:\n{md}"));
    let prefix = format!("| {key} | ");
    section
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|l| l.strip_suffix(" |"))
        .unwrap_or_else(|| panic!("no row {key:?} in session {n}:\n{section}"))
        .to_string()
}

fn dump_of(lab: &Lab) -> (PathBuf, u64, String) {
    let dir = lab.data_dir.path().join("backups/users-nickname-record");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("backups")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = files[0].clone();
    let bytes = std::fs::read(&path).expect("dump");
    let sha = hex::encode(Sha256::digest(&bytes));
    (path, bytes.len() as u64, sha)
}

fn session_start_date(lab: &Lab) -> String {
    let records = pgpilot::audit::query::read_records(&lab.audit_file()).expect("audit");
    let start = records
        .iter()
        .rev()
        .find(|r| r.action == pgpilot::audit::Action::SessionStart)
        .expect("a session start");
    start.ts.format("%Y-%m-%d").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_approvals_a_backup_and_a_verify_makes_the_seeds_change_log_entry() {
    let s = setup("entry").await;
    let rb = s.write(&runbook(
        "[approvals]\nrequired = [\"technical\", \"business\"]",
        "",
    ));
    approve(&s, &rb, &s.alice, "technical", "**ship it** <img src=x>");
    approve(&s, &rb, &s.bob, "business", "ok");
    let ran = s.run(&rb, &[]);
    assert_eq!(ran.code, 0, "{ran}");

    let md = markdown(&s.lab);
    let (dump, size, sha) = dump_of(&s.lab);
    assert_eq!(row(&md, 0, "Date"), session_start_date(&s.lab), "{md}");
    assert_eq!(row(&md, 0, "Change ID"), "CHG-4242");
    assert_eq!(row(&md, 0, "Risk level"), "high (declared high)", "{md}");
    let approved = row(&md, 0, "Approved by");
    let alice_at = approved_at(&s, &s.alice, "technical").await;
    let bob_at = approved_at(&s, &s.bob, "business").await;
    for expected in [
        format!("technical by `{}` at {alice_at} (", s.alice),
        format!("business by `{}` at {bob_at} (", s.bob),
        // The approver's comment is the database's text: inert.
        "comment: \\*\\*ship it\\*\\* \\<img src=x\\>".to_string(),
    ] {
        assert!(approved.contains(&expected), "{expected:?} in {approved}");
    }
    assert_eq!(
        row(&md, 0, "Description"),
        "Add users.nickname — Lets users pick a display name (CHG request 12)"
    );
    assert_eq!(
        row(&md, 0, "Files modified"),
        format!("runbook `{rb}`; SQL `sql/add_nickname.sql`")
    );
    let backup = row(&md, 0, "Backup ID");
    for expected in [
        "`backup-users`".to_string(),
        dump.display().to_string(),
        format!("({size} bytes, sha256 {sha})"),
    ] {
        assert!(backup.contains(&expected), "{expected:?} in {backup}");
    }
    let deployed = row(&md, 0, "Deployment time");
    assert!(
        deployed.starts_with(&session_start_date(&s.lab)) && deployed.contains(" UTC to "),
        "{deployed}"
    );
    assert_eq!(
        row(&md, 0, "Verification result"),
        "**Success**: `verify-nickname` passed; checks before the change: 1 of 1 passed (`count-before` passed)"
    );
    assert_eq!(row(&md, 0, "Issues encountered"), "none");
    assert_eq!(row(&md, 0, "Rollback required"), "no");
    assert_eq!(row(&md, 0, "Emergency"), "no");
    s.drop_roles().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_with_a_failed_attempt_and_a_rollback_says_so() {
    let s = setup("emerg").await;
    // A short lock_timeout and one retry: a session holding users fails
    // the first attempt (an issue), the second run gets through.
    let rb = s.write(&runbook(
        "[approvals]\nrequired = [\"technical\", \"business\"]",
        "lock_timeout = \"100ms\"\nlock_retries = 1\nretry_backoff = \"10ms\"\non_blockers = \"proceed\"",
    ));
    approve(&s, &rb, &s.alice, "owner", "approved by phone");
    let db = s.operator();
    let reason = "login down: INC-7 *now*";
    let run = ["run", &rb, "--headless", "--db", &db, "--emergency", reason];

    let holder = common::connect(&s.operator()).await;
    holder
        .batch_execute("BEGIN; SELECT * FROM users")
        .await
        .expect("hold users");
    let failed = s.lab.run(&run);
    assert_eq!(failed.code, 1, "{failed}");
    holder.batch_execute("ROLLBACK").await.expect("release");
    let ran = s.lab.run(&run);
    assert_eq!(ran.code, 0, "{ran}");
    let mut back = vec!["rollback", &rb, "--headless", "--db", &db];
    let confirms = confirms_for(&rb, true);
    back.extend(confirms.iter().map(String::as_str));
    let rolled = s.lab.run(&back);
    assert_eq!(rolled.code, 0, "{rolled}");

    let md = markdown(&s.lab);
    // The failed attempt: its issues, and the emergency.
    assert_eq!(
        row(&md, 0, "Verification result"),
        "**Not verified**: `verify-nickname` not run; checks before the change: 1 of 1 passed (`count-before` passed)"
    );
    let issues = row(&md, 0, "Issues encountered");
    assert!(
        issues.contains("1 failure(s)") && issues.contains("1 retry(ies)"),
        "{issues}"
    );
    let first = entries(&md)[0];
    assert!(first.contains("### Issues encountered"), "{first}");
    assert!(first.contains("SQLSTATE 55P03"), "{first}");
    assert_eq!(
        row(&md, 0, "Emergency"),
        "**yes**: login down: INC-7 \\*now\\*"
    );
    assert!(
        row(&md, 0, "Approved by").starts_with(&format!("owner by `{}` at ", s.alice)),
        "{md}"
    );
    // The run that applied it was rolled back by the next session.
    let rollback_session = entries(&md)[2]
        .split(" — session ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or_default()
        .to_string();
    assert!(!rollback_session.is_empty(), "{md}");
    assert_eq!(
        row(&md, 1, "Rollback required"),
        format!("**yes**: later, in session `{rollback_session}`: `add-nickname` rolled back"),
        "{md}"
    );
    assert_eq!(row(&md, 1, "Issues encountered"), "none");
    let rolled_back = row(&md, 2, "Rollback required");
    assert!(
        rolled_back.starts_with("**yes**: in this session: `add-nickname` rolled back"),
        "{rolled_back}"
    );
    assert_eq!(
        row(&md, 2, "Approved by"),
        "not required: a rollback is incident response"
    );
    s.drop_roles().await;
}
