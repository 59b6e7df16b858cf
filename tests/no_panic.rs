//! No input makes `check` panic: arbitrary bytes, and arbitrary TOML built from
//! the runbook format's own keys and values.

use std::path::Path;

use pgpilot::check::check_file;
use proptest::prelude::*;

fn check_text(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fuzz.toml");
    std::fs::write(&path, bytes).expect("write");
    // Either outcome is fine; a panic fails the property.
    let _ = check_file(&path);
}

fn line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "id",
        "title",
        "kind",
        "sql",
        "file",
        "instructions",
        "expect",
        "capture",
        "rollback",
        "transaction",
        "confirm",
        "explain",
        "irreversible",
        "lock_timeout",
        "statement_timeout",
        "lock_retries",
        "risk",
        "change_type",
        "environments",
        "database",
        "require_primary",
        "on_blockers",
        "bogus",
    ]);
    let value = prop_oneof![
        "\"[a-z_ {}]{0,12}\"".prop_map(|s| s),
        prop::sample::select(vec![
            "\"check\"",
            "\"change\"",
            "\"pause\"",
            "\"2s\"",
            "\"0\"",
            "\"high\"",
            "\"low\"",
            "\"major\"",
            "\"SELECT 1\"",
            "\"DROP TABLE t\"",
            "\"CREATE INDEX CONCURRENTLY i ON t (a); SELECT 1\"",
            "\"SELECT {{x}}\"",
            "\"ALTER TABLE t DROP COLUMN c\"",
            "\"DO $$ BEGIN END $$\"",
            "\"SELEC\"",
            "{ rows = 1 }",
            "{ scalar = \"{{x}}\" }",
            "{ empty = true, rows = 2 }",
            "true",
            "-1",
            "99999999999",
            "[\"a\", 1]",
            "'''\nSELECT\n 1'''",
            "\"sql/x.sql\"",
        ])
        .prop_map(str::to_string),
    ];
    prop_oneof![
        Just("[runbook]".to_string()),
        Just("[target]".to_string()),
        Just("[settings]".to_string()),
        Just("[[phase]]".to_string()),
        Just("[[phase.step]]".to_string()),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_text(&bytes);
    }

    #[test]
    fn arbitrary_runbook_shaped_toml_never_panics(lines in prop::collection::vec(line(), 0..40)) {
        check_text(lines.join("\n").as_bytes());
    }

    #[test]
    fn arbitrary_sql_never_panics(sql in "\\PC{0,200}") {
        let text = format!("[runbook]\nid = \"r\"\ntitle = \"t\"\n[[phase]]\nid = \"p\"\n[[phase.step]]\nid = \"s\"\nkind = \"change\"\nsql = '''{}'''\n", sql.replace("'''", ""));
        check_text(text.as_bytes());
    }
}

#[test]
fn a_directory_is_an_error_not_a_panic() {
    assert!(check_file(Path::new("tests")).is_err());
}
