//! sqitch projects: `sqitch.plan` read as sqitch reads it (pragmas, tags,
//! dependencies, reworked changes, errors at PATH:LINE:COL), imported and
//! checked, and run against a real cluster with sqitch's registry read
//! (deployed changes count as applied) and written as sqitch writes it
//! (same change ids, dependencies, tags and events), rolled back through
//! the revert scripts.

mod common;

use std::path::Path;

use common::migrations::{database, headless, pgpilot};
use common::{column, confirms_for, scalar};

const DIR: &str = "tests/fixtures/migrations/sqitch";

/// The change ids sqitch 1.3.1 computes for the fixture's plan
/// (`sqitch plan --format 'format:%H %n'`).
const APPSCHEMA: &str = "b0abab461cd62cce57efc7f05b73bd1887a13be5";
const USERS_V1: &str = "3cd05d8e91ab0396bcff05548668b5cf23585940";
const EMAIL_INDEX: &str = "9fae46beb0cf8d3d0cf9a14e3a069468b0a27759";
const USERS: &str = "57974d3d4db69b526a418c0ac2ca327d266b225d";

/// A copy of the fixture project in a temporary folder, with `plan` as
/// its sqitch.plan.
fn project_with_plan(plan: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["deploy", "revert", "verify"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        for f in
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR).join(sub)).unwrap()
        {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.path().join(sub).join(f.file_name())).unwrap();
        }
    }
    std::fs::write(dir.path().join("sqitch.plan"), plan).unwrap();
    dir
}

/// sqitch's registry (schema `sqitch`) as sqitch creates it, empty.
async fn create_registry(client: &tokio_postgres::Client) {
    let ddl = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sqitch-registry.sql"),
    )
    .unwrap();
    client.batch_execute(&ddl).await.unwrap();
}

#[test]
fn check_and_plan_read_the_project_in_plan_order() {
    let (code, out, err) = pgpilot(&["check", DIR]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok: 1 phases"), "{out}");
    let (code, out, err) = pgpilot(&["plan", DIR, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps: Vec<String> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["id"].as_str().unwrap(),
                s["kind"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "appschema change",
            "appschema.verify verify",
            "users-v1.0 change",
            "users-v1.0.verify verify",
            "email_index change",
            "email_index.verify verify",
            "users change",
            "users.verify verify",
        ]
    );
    assert_eq!(
        plan["runbook"]["id"], "flipr",
        "the plan's %project is the runbook id"
    );
}

#[test]
fn plan_errors_name_their_place_in_sqitch_plan() {
    let cases = [
        (
            "%project=flipr\n\nappschema 2024-01-01T10:00:00Z M <m@x>\nusers [nobody] 2024-01-02T10:00:00Z M <m@x>\n",
            "sqitch.plan:4:1: error: change \"users\" requires \"nobody\", which is not planned before it",
        ),
        (
            "%project=flipr\n\nappschema 2024-01-01T10:00:00Z\n",
            "sqitch.plan:3:1: error: change or tag \"appschema\": missing planner name and email",
        ),
        (
            "%project=flipr\nappschema 2024-01-01T10:00:00Z M <m@x>\n",
            "sqitch.plan:2:1: error: invalid pragma",
        ),
        (
            "%project=flipr\n\n  @v1.0 2024-01-01T10:00:00Z M <m@x>\n",
            "sqitch.plan:3:4: error: tag \"v1.0\" declared without a preceding change",
        ),
        (
            "%project=flipr\n\nappschema 2024-01-01T10:00:00Z M <m@x>\nmissing 2024-01-01T10:00:00Z M <m@x>\n",
            "sqitch.plan:4:1: error: change \"missing\" has no deploy script deploy/missing.sql",
        ),
    ];
    for (plan, want) in cases {
        let dir = project_with_plan(plan);
        let (code, out, err) = pgpilot(&["check", dir.path().to_str().unwrap()]);
        assert_eq!(code, 1, "{plan}: {out}{err}");
        assert!(err.contains(want), "{plan}:\n{err}");
        assert!(!err.contains("TOML") && !err.contains("panick"), "{err}");
    }
}

/// sqitch runs a script with `psql -f`: a CONCURRENTLY statement inside
/// the script's own BEGIN … COMMIT fails under sqitch; the lint says so at
/// its place, and pgpilot runs it in a step of its own.
#[test]
fn concurrently_inside_a_scripts_own_transaction_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("deploy")).unwrap();
    std::fs::write(
        dir.path().join("sqitch.plan"),
        "%project=p\n\nidx 2024-01-01T00:00:00Z A <a@x>\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("deploy/idx.sql"),
        "BEGIN;\nCREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);\nCOMMIT;\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = pgpilot(&["check", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("deploy/idx.sql:3:1: warning: concurrently-in-transaction")
            && err.contains("the file's own BEGIN")
            && err.contains("take it out of the script's BEGIN"),
        "{err}"
    );
    let (code, out, _) = pgpilot(&["import", d]);
    assert_eq!(code, 0);
    assert!(
        out.contains("id = \"idx.1\"")
            && out.contains("id = \"idx.2\"\n")
            && out.contains("statement = 2"),
        "{out}"
    );
}

#[test]
fn import_writes_a_runbook_that_passes_check_with_revert_and_verify_scripts() {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/import-test/sqitch/x/y");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("runbook.toml");
    let out = out.to_str().unwrap();
    let (code, _, err) = pgpilot(&["import", DIR, "--layout", "sqitch", "-o", out]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("4 migrations of a sqitch folder, runbook id flipr"),
        "{err}"
    );
    let text = std::fs::read_to_string(out).unwrap();
    let root = format!("../../../../../{DIR}");
    for want in [
        "history = \"sqitch\"".to_string(),
        format!("sql_root = \"{root}\""),
        format!(
            "file = \"{root}/deploy/users@v1.0.sql\"\n  migration = \"users@v1.0\"\n  rollback_file = \"{root}/revert/users@v1.0.sql\""
        ),
        format!("kind = \"verify\"\n  file = \"{root}/verify/email_index.sql\""),
    ] {
        assert!(text.contains(&want), "{want}\n---\n{text}");
    }
    let (code, stdout, err) = pgpilot(&["check", out]);
    assert_eq!(code, 0, "{stdout}{err}");
    // A folder that is no sqitch project is refused for --layout sqitch.
    let (code, _, err) = pgpilot(&[
        "import",
        "tests/fixtures/migrations/flyway",
        "--layout",
        "sqitch",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no sqitch.plan"), "{err}");
}

/// The team's sqitch deployed `appschema`; `run DIR` starts at `users`,
/// writes each change into sqitch's registry with sqitch's ids, tags and
/// dependencies, and `rollback DIR` reverts them all through the revert
/// scripts, logging revert events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_resumes_from_sqitchs_registry_and_writes_it_as_sqitch_does() {
    let (lab, client, db) = database("sqitch_resume").await;
    create_registry(&client).await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA flipr;
             INSERT INTO sqitch.releases (version, installer_name, installer_email) VALUES (1.1, 'Marge', 'marge@example.com');
             INSERT INTO sqitch.projects (project, uri, creator_name, creator_email)
                 VALUES ('flipr', 'https://github.com/sqitchers/sqitch-intro/', 'Marge', 'marge@example.com');
             INSERT INTO sqitch.changes (change_id, script_hash, change, project, note, committer_name, committer_email, planned_at, planner_name, planner_email)
                 VALUES ('{APPSCHEMA}', NULL, 'appschema', 'flipr', 'Add schema for all flipr objects.', 'Marge', 'marge@example.com',
                         '2024-01-01 10:00:00+00', 'Marge N. O’Vera', 'marge@example.com');
             INSERT INTO sqitch.events (event, change_id, change, project, note, committer_name, committer_email, planned_at, planner_name, planner_email)
                 VALUES ('deploy', '{APPSCHEMA}', 'appschema', 'flipr', 'Add schema for all flipr objects.', 'Marge', 'marge@example.com',
                         '2024-01-01 10:00:00+00', 'Marge N. O’Vera', 'marge@example.com');"
        ))
        .await
        .unwrap();
    let ran = lab.run(&headless(&["run", DIR], &db, &[]));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout.contains("applied by sqitch before: appschema"),
        "{ran}"
    );
    assert_eq!(
        column(
            &client,
            "SELECT change_id || ' ' || change FROM sqitch.changes ORDER BY committed_at"
        )
        .await,
        [
            format!("{APPSCHEMA} appschema"),
            format!("{USERS_V1} users"),
            format!("{EMAIL_INDEX} email_index"),
            format!("{USERS} users"),
        ]
    );
    // The deploy script's SHA-1, the plan's note and planner, as sqitch logs them.
    assert_eq!(
        scalar(&client, &format!("SELECT note || ' / ' || planner_name || ' / ' || (planned_at AT TIME ZONE 'UTC')::text || ' / ' || length(script_hash) FROM sqitch.changes WHERE change_id = '{USERS}'")).await,
        "Adds the twitter column. / Marge N. O’Vera / 2024-01-05 10:00:00 / 40"
    );
    assert_eq!(
        column(&client, "SELECT d.dependency || ' ' || d.type || ' ' || coalesce(c.change, '-') FROM sqitch.dependencies d LEFT JOIN sqitch.changes c ON c.change_id = d.dependency_id ORDER BY d.change_id, d.dependency").await,
        [
            "appschema require appschema",
            "email_index require email_index",
            "users@v1.0 require users",
            "users require users",
        ]
    );
    assert_eq!(
        scalar(
            &client,
            &format!("SELECT tag || ' ' || (change_id = '{USERS_V1}')::text FROM sqitch.tags")
        )
        .await,
        "@v1.0 true"
    );
    assert_eq!(
        column(&client, "SELECT event || ' ' || change || ' ' || array_to_string(requires, ',') || ' ' || array_to_string(tags, ',') FROM sqitch.events ORDER BY committed_at").await,
        [
            "deploy appschema  ",
            "deploy users appschema @v1.0",
            "deploy email_index users ",
            "deploy users users@v1.0,email_index ",
        ]
    );
    assert_eq!(
        scalar(&client, "SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'flipr' AND column_name = 'twitter'").await,
        "1"
    );
    // Nothing left to do: a second run agrees with the registry.
    let again = lab.run(&headless(&["run", DIR], &db, &[]));
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(
        scalar(&client, "SELECT count(*)::text FROM sqitch.events").await,
        "4"
    );

    let confirms = confirms_for(DIR, true);
    let back = lab.run(&headless(&["rollback", DIR], &db, &confirms));
    assert_eq!(back.code, 0, "{back}");
    assert_eq!(
        scalar(&client, "SELECT (to_regnamespace('flipr') IS NULL)::text").await,
        "true"
    );
    assert_eq!(
        scalar(&client, "SELECT count(*)::text FROM sqitch.changes").await,
        "0"
    );
    assert_eq!(
        scalar(&client, "SELECT count(*)::text FROM sqitch.tags").await,
        "0"
    );
    assert_eq!(
        column(&client, "SELECT event || ' ' || change || ' ' || array_to_string(tags, ',') FROM sqitch.events WHERE event = 'revert' ORDER BY committed_at").await,
        [
            "revert users ",
            "revert email_index ",
            "revert users @v1.0",
            "revert appschema ",
        ]
    );
}

/// A deployed change the plan does not know (the plan was edited after the
/// deploy): pgpilot would write rows sqitch cannot match, so it refuses
/// and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_disagrees_with_the_plan_is_refused() {
    let (lab, client, db) = database("sqitch_edited").await;
    create_registry(&client).await;
    client
        .batch_execute(
            "INSERT INTO sqitch.projects (project, uri, creator_name, creator_email)
                 VALUES ('flipr', 'https://github.com/sqitchers/sqitch-intro/', 'M', 'm@x');
             INSERT INTO sqitch.changes (change_id, change, project, committer_name, committer_email, planned_at, planner_name, planner_email)
                 VALUES ('0123456789012345678901234567890123456789', 'appschema', 'flipr', 'M', 'm@x', now(), 'M', 'm@x');",
        )
        .await
        .unwrap();
    let ran = lab.run(&headless(&["run", DIR], &db, &[]));
    assert_eq!(ran.code, 3, "{ran}");
    assert!(
        ran.stderr
            .contains("sqitch.plan does not have: appschema (012345678901)")
            && ran.stderr.contains("sqitch status"),
        "{ran}"
    );
    assert_eq!(
        scalar(&client, "SELECT (to_regnamespace('flipr') IS NULL)::text").await,
        "true"
    );
}
