//! Approvals bound to the exact runbook, against a real server with real
//! roles: what a run needs, four eyes, forged rows, edits that void them,
//! notice by the database's clock, emergencies, and rollbacks never held.

mod common;

use common::governance::{ApprovalLab, said};
use common::{Ran, scalar};
use tokio_postgres::Client;

const RUNBOOK: &str = r#"
[runbook]
id = "users-add-nickname"
title = "Add users.nickname"
change_type = "minor"
ticket = "CHG-77"

[approvals]
required = ["technical", "business"]

[[phase]]
id = "change"

  [[phase.step]]
  id = "add-nickname"
  kind = "change"
  sql = "ALTER TABLE users ADD COLUMN nickname text"
  rollback = "ALTER TABLE users DROP COLUMN nickname"
"#;

/// A database with a users table, and two approver roles that are not
/// superusers, granted what docs/safety-model.md tells a DBA to grant.
async fn setup(tag: &str) -> ApprovalLab {
    let s = ApprovalLab::new("appr", tag, "CREATE TABLE users (id int)").await;
    s.admit_approvers(RUNBOOK).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_needs_each_required_kind_from_another_role_and_distinct_roles() {
    let s = setup("need").await;
    let rb = s.write(RUNBOOK);
    let none = s.run(&rb, &[]);
    assert_eq!(none.code, 3, "{none}");
    assert!(
        said(&none).contains(
            "needs a technical approval and a business approval of this runbook (sha256 "
        ),
        "{none}"
    );
    assert!(said(&none).contains("has: none"), "{none}");
    assert!(!s.applied().await);

    // The operator's own approval does not count (four eyes).
    let own = s
        .lab
        .run(&["approve", &rb, "--db", &s.operator(), "--as", "technical"]);
    assert_eq!(own.code, 0, "{own}");
    let refused = s.run(&rb, &[]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(said(&refused).contains("four eyes"), "{refused}");
    assert!(
        said(&refused).contains("needs a technical approval and a business approval"),
        "{refused}"
    );

    assert_eq!(s.approve(&rb, &s.alice, "technical", &[]).code, 0);
    let half = s.run(&rb, &[]);
    assert_eq!(half.code, 3, "{half}");
    assert!(said(&half).contains("needs a business approval"), "{half}");
    assert!(
        said(&half).contains(&format!("technical by {}", s.alice)),
        "{half}"
    );

    // One role may not approve two kinds (distinct_approvers defaults to true).
    assert_eq!(s.approve(&rb, &s.alice, "business", &[]).code, 0);
    let same = s.run(&rb, &[]);
    assert_eq!(same.code, 3, "{same}");
    assert!(said(&same).contains("distinct approvers"), "{same}");

    let by_bob = s.approve(&rb, &s.bob, "business", &[]);
    assert_eq!(by_bob.code, 0, "{by_bob}");
    assert!(
        by_bob.stdout.contains(&format!("by role {}", s.bob)),
        "{by_bob}"
    );
    let ran = s.run(&rb, &[]);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(said(&ran).contains("guard approvals: pass"), "{ran}");
    assert!(s.applied().await);

    // Audited: each approval is a record, with the approver's role.
    let log = std::fs::read_to_string(s.lab.audit_file()).unwrap();
    assert_eq!(log.matches("\"action\":\"approve\"").count(), 4, "{log}");

    // A rollback needs no approval: the approvals are revoked first.
    for (role, kind) in [(&s.alice, "technical"), (&s.bob, "business")] {
        let revoked = s.approve(&rb, role, kind, &["--revoke"]);
        assert_eq!(revoked.code, 0, "{revoked}");
    }
    let revoked = s.run(&rb, &[]);
    assert_eq!(revoked.code, 3, "{revoked}");
    assert!(said(&revoked).contains("(revoked)"), "{revoked}");
    let db = s.operator();
    let mut args = vec!["rollback", rb.as_str(), "--headless", "--db", db.as_str()];
    let confirms = common::confirms_for(&rb, true);
    args.extend(confirms.iter().map(String::as_str));
    let back = s.lab.run(&args);
    assert_eq!(back.code, 0, "{back}");
    assert!(!s.applied().await);
    s.drop_roles().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_is_not_a_superuser_cannot_approve_or_revoke_in_another_roles_name() {
    let s = setup("forge").await;
    let rb = s.write(RUNBOOK);
    assert_eq!(s.approve(&rb, &s.bob, "business", &[]).code, 0);
    let alice = common::connect(&s.as_role(&s.alice)).await;
    alice
        .batch_execute(&format!(
            "INSERT INTO pgpilot.approvals (runbook_id, runbook_sha256, kind, approver, os_user, client_host, approved_at)
             VALUES ('users-add-nickname', 'x', 'technical', '{bob}', 'bob', 'h', now() - interval '30 days')",
            bob = s.bob
        ))
        .await
        .unwrap();
    let forged = scalar(
        &s.client,
        "SELECT approver || ' ' || (approved_at > now() - interval '1 hour') FROM pgpilot.approvals WHERE kind = 'technical'",
    )
    .await;
    assert_eq!(
        forged,
        format!("{} true", s.alice),
        "the server names the role and the time"
    );
    let e = alice
        .batch_execute("UPDATE pgpilot.approvals SET revoked_at = now() WHERE kind = 'business'")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("can revoke"), "{e:?}");
    let mine = s.approve(&rb, &s.alice, "business", &["--revoke"]);
    assert_eq!(mine.code, 3, "{mine}");
    assert!(mine.stderr.contains("by your role"), "{mine}");
    s.drop_roles().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_covered_sql_voids_the_approvals_an_edit_of_rollback_sql_does_not() {
    let s = setup("edit").await;
    let rb = s.write(RUNBOOK);
    assert_eq!(s.approve(&rb, &s.alice, "technical", &[]).code, 0);
    assert_eq!(s.approve(&rb, &s.bob, "business", &[]).code, 0);
    let current = |ran: &Ran| -> Vec<bool> {
        let v: serde_json::Value =
            serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {ran}"));
        v["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["current"].as_bool().unwrap())
            .collect()
    };
    let fixed = s.write(&RUNBOOK.replace("DROP COLUMN nickname", "DROP COLUMN IF EXISTS nickname"));
    let listed = s.lab.run(&[
        "approvals",
        &fixed,
        "--db",
        &s.operator(),
        "--format",
        "json",
    ]);
    assert_eq!(current(&listed), [true, true], "{listed}");

    let edited = s.write(&RUNBOOK.replace("nickname text", "nickname varchar(20)"));
    let listed = s.lab.run(&[
        "approvals",
        &edited,
        "--db",
        &s.operator(),
        "--format",
        "json",
    ]);
    assert_eq!(current(&listed), [false, false], "{listed}");
    let refused = s.run(&edited, &[]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(said(&refused).contains("of another version"), "{refused}");
    assert!(!s.applied().await);
    s.drop_roles().await;
}

/// The server's `now()` shifted by `hours`, as RFC 3339 (for PGPILOT_TEST_NOW).
async fn server_time_in(client: &Client, hours: i32) -> String {
    scalar(
        client,
        &format!(
            "SELECT to_char((now() + interval '{hours} hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notice_is_enforced_by_the_database_clock() {
    let s = setup("notice").await;
    let text = RUNBOOK.replace(
        "required = [\"technical\", \"business\"]",
        "required = [\"technical\"]\nnotice = { low = \"24h\", medium = \"24h\", high = \"24h\" }",
    );
    let rb = s.write(&text);
    assert_eq!(s.approve(&rb, &s.alice, "technical", &[]).code, 0);
    let early = s.run(&rb, &[]);
    assert_eq!(early.code, 3, "{early}");
    assert!(
        said(&early).contains("too recent: needs 1d notice"),
        "{early}"
    );
    let db = s.operator();
    let later = server_time_in(&s.client, 25).await;
    let ran = Ran::from(
        s.lab
            .command(&["run", &rb, "--headless", "--db", &db])
            .env("PGPILOT_TEST_NOW", later)
            .output()
            .unwrap(),
    );
    assert_eq!(ran.code, 0, "{ran}");
    assert!(s.applied().await);
    s.drop_roles().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_takes_the_seed_defaults_and_an_emergency_needs_one_owner_approval() {
    let s = setup("prod").await;
    let text = RUNBOOK
        .replace(
            "[approvals]\nrequired = [\"technical\", \"business\"]\n",
            "",
        )
        .replace("change_type = \"minor\"", "change_type = \"patch\"");
    let rb = s.write(&text);
    let database = s.lab.db_name(s.db);
    let prod = format!("--confirm=@production={database}");
    let refused = s.run(&rb, &["--env", "production", &prod]);
    assert_eq!(refused.code, 3, "{refused}");
    assert!(
        said(&refused).contains("needs a technical approval of this runbook"),
        "{refused}"
    );

    // Approved just now: a patch of low risk needs 24 h notice in production.
    assert_eq!(s.approve(&rb, &s.alice, "technical", &[]).code, 0);
    let early = s.run(&rb, &["--env", "production", &prod]);
    assert_eq!(early.code, 3, "{early}");
    assert!(said(&early).contains("too recent"), "{early}");

    let emergency = [
        "--env",
        "production",
        prod.as_str(),
        "--emergency",
        "checkout down: INC-9",
    ];
    let no_owner = s.run(&rb, &emergency);
    assert_eq!(no_owner.code, 3, "{no_owner}");
    assert!(
        said(&no_owner).contains("needs an owner approval"),
        "{no_owner}"
    );
    assert_eq!(s.approve(&rb, &s.bob, "owner", &[]).code, 0);
    // Everything else in order, the production question still wants the
    // database's own name, exactly: another one, or none, refuses (exit 3)
    // before any change.
    let upper = format!("--confirm=@production={}", database.to_uppercase());
    for answer in [
        Some("--confirm=@production=postgres"),
        Some(upper.as_str()),
        None,
    ] {
        let mut args = vec!["--env", "production", "--emergency", "checkout down: INC-9"];
        args.extend(answer);
        let refused = s.run(&rb, &args);
        assert_eq!(refused.code, 3, "{answer:?}: {refused}");
        assert!(!s.applied().await, "{answer:?}: applied without the name");
    }
    let ran = s.run(&rb, &emergency);
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        said(&ran).contains("EMERGENCY run: checkout down: INC-9"),
        "{ran}"
    );
    assert!(s.applied().await);
    // Every record of the emergency session carries the reason.
    let log = std::fs::read_to_string(s.lab.audit_file()).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let session = records
        .iter()
        .rev()
        .find(|r| r["action"] == "session_start")
        .and_then(|r| r["session"].as_str())
        .unwrap()
        .to_string();
    let of_session: Vec<_> = records.iter().filter(|r| r["session"] == session).collect();
    assert!(of_session.len() > 3);
    for r in of_session {
        assert_eq!(r["emergency"], "checkout down: INC-9", "{r}");
    }
    s.drop_roles().await;
}

/// `plan` shows what a run needs and the hash approvals are bound to, in
/// text and JSON, for other environments and for production.
#[test]
fn plan_shows_the_requirement_and_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("p.toml");
    std::fs::write(
        &rb,
        RUNBOOK.replace(
            "[approvals]\nrequired = [\"technical\", \"business\"]\n",
            "",
        ),
    )
    .unwrap();
    let rb = rb.to_str().unwrap();
    let plan = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilot"))
            .args(["plan", rb, "--format", format])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = plan("text");
    assert!(
        text.contains("none outside production; in production technical, business by distinct roles, none by the operator's own role (the seed's defaults by change type), each at least 2d old"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&plan("json")).unwrap();
    let a = &json["approvals"];
    assert_eq!(a["sha256"].as_str().unwrap().len(), 64, "{a}");
    assert!(a["required"].is_null(), "{a}");
    assert_eq!(
        a["production"]["kinds"],
        serde_json::json!(["technical", "business"]),
        "{a}"
    );
    assert_eq!(a["production"]["notice"], 2 * 86400, "{a}");
}
