//! `pgpilot import DIR`: a runbook that passes `check` and runs the
//! folder's own files (never copies), and the runbook keys it uses
//! (`rollback_file`, `section`, `rollback_section`, `statement`,
//! `migration`, `[runbook] history`) with errors at their place.

mod common;

use std::path::Path;

use common::migrations::{FIXTURES, pgpilot};

#[test]
fn each_layout_imports_to_a_runbook_that_passes_check_and_names_the_original_files() {
    for (layout, first, undo) in [
        (
            "flyway",
            "V1__create_users.sql",
            "rollback_file = \"../../../../../tests/fixtures/migrations/flyway/U1__create_users.sql\"",
        ),
        (
            "golang-migrate",
            "1_create_users.up.sql",
            "rollback_file = \"../../../../../tests/fixtures/migrations/golang-migrate/1_create_users.down.sql\"",
        ),
        (
            "dbmate",
            "20240101000001_create_users.sql",
            "rollback_section = \"down\"",
        ),
        ("plain", "001_create_users.sql", ""),
    ] {
        let out_dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/import-test/{layout}/x/y"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = out_dir.join("runbook.toml");
        let out = out.to_str().unwrap();
        let (code, _, err) = pgpilot(&["import", &format!("{FIXTURES}/{layout}"), "-o", out]);
        assert_eq!(code, 0, "{layout}: {err}");
        let text = std::fs::read_to_string(out).unwrap();
        let root = format!("sql_root = \"../../../../../{FIXTURES}/{layout}\"");
        assert!(text.contains(&root), "{layout}: {text}");
        assert!(
            text.contains(&format!(
                "file = \"../../../../../{FIXTURES}/{layout}/{first}\""
            )),
            "{layout}: {text}"
        );
        assert!(text.contains(undo), "{layout}: {text}");
        // Nothing copied beside the runbook.
        assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1, "{layout}");
        let (code, stdout, err) = pgpilot(&["check", out]);
        assert_eq!(code, 0, "{layout}: {stdout}{err}");
        // Without -o the same runbook (with the folder as its own root) on stdout.
        let (code, stdout, _) = pgpilot(&["import", &format!("{FIXTURES}/{layout}")]);
        assert_eq!(code, 0);
        assert!(stdout.contains(&format!("file = \"{first}\"")), "{stdout}");
        assert!(stdout.contains("[runbook]\nid = "), "{stdout}");
    }
}

/// A CONCURRENTLY statement runs in a step of its own: the migration's
/// statements become one step each, by `statement = N`.
#[test]
fn concurrently_statements_get_steps_of_their_own() {
    let (code, stdout, _) = pgpilot(&["import", &format!("{FIXTURES}/flyway")]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("id = \"V5__name_index.2\"\n  title = \"name index\"\n  kind = \"change\"\n  file = \"V5__name_index.sql\"\n  statement = 2\n  migration = \"5\""),
        "{stdout}"
    );
    let (code, plan, err) = pgpilot(&["plan", &format!("{FIXTURES}/flyway"), "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let cic = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "V5__name_index.2")
        .expect("the CONCURRENTLY step");
    assert_eq!(cic["transactional"], false);
    assert_eq!(cic["statements"].as_array().unwrap().len(), 1);
}

/// The runbook id is the same by both paths, so step_state never splits:
/// the folder's name, or what `.pgpilot-id` declares.
#[test]
fn the_runbook_id_is_the_folders_or_the_declared_one_by_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("billing-db");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("001_a.sql"), "CREATE TABLE a (x int);\n").unwrap();
    let f = folder.to_str().unwrap();
    let id = |args: &[&str]| {
        let (code, out, err) = pgpilot(args);
        assert_eq!(code, 0, "{err}");
        let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
        plan["runbook"]["id"].as_str().unwrap().to_string()
    };
    let out = dir.path().join("rb.toml");
    let o = out.to_str().unwrap();
    assert_eq!(pgpilot(&["import", f, "-o", o]).0, 0);
    assert_eq!(id(&["plan", f, "--format", "json"]), "billing-db");
    assert_eq!(id(&["plan", o, "--format", "json"]), "billing-db");
    std::fs::write(folder.join(".pgpilot-id"), "billing\n").unwrap();
    assert_eq!(pgpilot(&["import", f, "-o", o]).0, 0);
    assert_eq!(id(&["plan", f, "--format", "json"]), "billing");
    assert_eq!(id(&["plan", o, "--format", "json"]), "billing");
}

fn runbook_with(dir: &Path, step: &str) -> String {
    let path = dir.join("rb.toml");
    std::fs::write(
        &path,
        format!("[runbook]\nid = \"r\"\ntitle = \"T\"\nsql_root = \"migrations\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"change\"\n{step}\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn file_part_keys_pick_sections_and_statements_and_say_where_they_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("migrations");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("1_x.sql"),
        "-- migrate:up\nCREATE TABLE a (x int);\nCREATE TABLE b (x int);\n-- migrate:down\nDROP TABLE b;\nDROP TABLE a;\n",
    )
    .unwrap();
    let rb = runbook_with(
        dir.path(),
        "file = \"migrations/1_x.sql\"\nsection = \"up\"\nstatement = 2\nrollback_section = \"down\"",
    );
    let (code, plan, err) = pgpilot(&["plan", &rb, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let statements = plan["steps"][0]["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["sql"], "CREATE TABLE b (x int)");

    let rb = runbook_with(
        dir.path(),
        "file = \"migrations/1_x.sql\"\nsection = \"sideways\"",
    );
    let (code, _, err) = pgpilot(&["check", &rb]);
    assert_eq!(code, 1);
    assert!(
        err.contains("rb.toml:11:11: error:") && err.contains("no section \"sideways\""),
        "{err}"
    );

    let rb = runbook_with(
        dir.path(),
        "file = \"migrations/1_x.sql\"\nsection = \"up\"\nstatement = 3",
    );
    let (code, _, err) = pgpilot(&["check", &rb]);
    assert_eq!(code, 1);
    assert!(
        err.contains("rb.toml:12:13: error: statement = 3") && err.contains("has 2 statement(s)"),
        "{err}"
    );
}

/// `sql_root` widens where files may lie to one folder, and no further: a
/// `..` out of it, or a link in it to a file outside, is refused.
#[test]
fn a_root_does_not_let_files_escape_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("migrations");
    std::fs::create_dir(&m).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.sql");
    std::fs::write(&secret, "DROP TABLE users;\n").unwrap();
    std::os::unix::fs::symlink(&secret, m.join("link.sql")).unwrap();
    let escape = format!(
        "rollback_file = \"migrations/../../{}/secret.sql\"\nsql = \"CREATE TABLE a (x int)\"",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    let (code, _, err) = pgpilot(&["check", &runbook_with(dir.path(), &escape)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("rb.toml:10:17: error:")
            && err.contains("outside the runbook's folder and its sql_root"),
        "{err}"
    );
    let (code, _, err) = pgpilot(&[
        "check",
        &runbook_with(dir.path(), "file = \"migrations/link.sql\""),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("outside the runbook's folder and its sql_root")
            && err.contains("resolves to"),
        "{err}"
    );
}
