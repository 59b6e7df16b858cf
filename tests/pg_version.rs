//! Version-aware advice: every rule that depends on the target's PostgreSQL
//! version, on both sides of its boundary; and how `check` learns the
//! version (`--pg-version`, `[target] server_version`, the default) and says
//! which it assumed.

use std::process::Command;

use pgpilot::analysis::version::{TargetVersion, VersionSource};
use pgpilot::analysis::{Context, StatementAnalysis, analyze_sql};

fn on(major: u32, sql: &str) -> Vec<StatementAnalysis> {
    let mut ctx = Context {
        version: TargetVersion {
            major,
            source: VersionSource::Flag,
        },
        ..Context::default()
    };
    analyze_sql(sql, &mut ctx).unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

fn rules(a: &[StatementAnalysis]) -> Vec<&'static str> {
    a.iter()
        .flat_map(|s| s.findings.iter().map(|f| f.rule))
        .collect()
}

fn advice(a: &[StatementAnalysis], rule: &str) -> String {
    a.iter()
        .flat_map(|s| &s.findings)
        .find(|f| f.rule == rule)
        .map(|f| f.advice.clone())
        .unwrap_or_else(|| panic!("no {rule} in {:?}", rules(a)))
}

/// Syntax a version lacks: (SQL, the first version that has it).
const SYNTAX: &[(&str, u32)] = &[
    (
        "ALTER TABLE public.m DETACH PARTITION public.m_2020 CONCURRENTLY",
        14,
    ),
    (
        "ALTER TABLE public.m DETACH PARTITION public.m_2020 FINALIZE",
        14,
    ),
    ("REINDEX INDEX CONCURRENTLY public.readings_at", 12),
    (
        "CREATE UNIQUE INDEX CONCURRENTLY u ON public.t (a) NULLS NOT DISTINCT",
        15,
    ),
    (
        "CREATE TABLE public.n (a int, CONSTRAINT u UNIQUE NULLS NOT DISTINCT (a))",
        15,
    ),
    ("ALTER TABLE public.t SET ACCESS METHOD heap", 15),
    (
        "MERGE INTO public.t USING public.s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        15,
    ),
    (
        "CREATE TABLE public.n (a int, b int GENERATED ALWAYS AS (a * 2) STORED)",
        12,
    ),
    ("DROP DATABASE scratch WITH (FORCE)", 13),
];

#[test]
fn syntax_the_target_lacks_is_an_error_naming_both_versions() {
    for (sql, since) in SYNTAX {
        let before = on(since - 1, sql);
        let f = before
            .iter()
            .flat_map(|s| &s.findings)
            .find(|f| f.rule == "needs-newer-postgres")
            .unwrap_or_else(|| panic!("{sql} on {}: {:?}", since - 1, rules(&before)));
        assert!(
            f.message.contains(&format!(
                "needs PostgreSQL {since}; target is {}",
                since - 1
            )),
            "{sql}: {}",
            f.message
        );
        assert_eq!(f.severity, pgpilot::analysis::FindingSeverity::Error);
        let from = on(*since, sql);
        assert!(
            !rules(&from).contains(&"needs-newer-postgres"),
            "{sql} on {since}: {:?}",
            rules(&from)
        );
    }
}

#[test]
fn detach_advice_names_concurrently_only_from_14() {
    let sql = "ALTER TABLE public.m DETACH PARTITION public.m_2020";
    let on13 = advice(&on(13, sql), "detach-partition-not-concurrent");
    assert!(!on13.contains("use ALTER TABLE"), "{on13}");
    assert!(
        on13.contains("PostgreSQL 13 has no DETACH PARTITION"),
        "{on13}"
    );
    let on14 = advice(&on(14, sql), "detach-partition-not-concurrent");
    assert!(
        on14.contains("DETACH PARTITION … CONCURRENTLY in a step"),
        "{on14}"
    );
}

#[test]
fn reindex_advice_names_concurrently_only_from_12() {
    let sql = "REINDEX INDEX public.readings_at";
    let on11 = advice(&on(11, sql), "reindex-not-concurrent");
    assert!(
        on11.contains("PostgreSQL 11 has no REINDEX CONCURRENTLY"),
        "{on11}"
    );
    assert!(on11.contains("CREATE INDEX CONCURRENTLY"), "{on11}");
    let on12 = advice(&on(12, sql), "reindex-not-concurrent");
    assert!(on12.starts_with("use REINDEX … CONCURRENTLY"), "{on12}");
}

#[test]
fn a_constant_default_rewrites_before_11_only() {
    let sql = "ALTER TABLE public.users ADD COLUMN score int DEFAULT 0";
    let on10 = on(10, sql);
    assert!(on10[0].rewrites);
    assert_eq!(rules(&on10), ["add-column-default-rewrite"]);
    let on11 = on(11, sql);
    assert!(!on11[0].rewrites);
    assert!(rules(&on11).is_empty(), "{:?}", rules(&on11));
    // DEFAULT NULL writes nothing on any version.
    let null = on(
        10,
        "ALTER TABLE public.users ADD COLUMN score int DEFAULT NULL",
    );
    assert!(!null[0].rewrites);
}

#[test]
fn a_validated_check_spares_set_not_null_its_scan_from_12() {
    let sql = "ALTER TABLE public.r ADD CONSTRAINT s_nn CHECK (s IS NOT NULL) NOT VALID;
               ALTER TABLE public.r VALIDATE CONSTRAINT s_nn;
               ALTER TABLE public.r ALTER COLUMN s SET NOT NULL";
    let on11 = on(11, sql);
    assert!(rules(&on11[2..]).contains(&"set-not-null"));
    assert!(advice(&on11[2..], "set-not-null").contains("PostgreSQL 11 scans"));
    let on12 = on(12, sql);
    assert!(rules(&on12[2..]).is_empty(), "{:?}", rules(&on12[2..]));
}

#[test]
fn enum_values_are_added_outside_a_transaction_before_12() {
    let sql = "ALTER TYPE public.mood ADD VALUE 'meh' AFTER 'ok'";
    assert!(!on(11, sql)[0].transactional);
    assert!(on(12, sql)[0].transactional);
}

fn pgpilot(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const DETACH_RUNBOOK: &str = r#"[runbook]
id = "detach"
title = "Detach 2020"

[target]
server_version = 13

[[phase]]
id = "p"

  [[phase.step]]
  id = "detach"
  kind = "change"
  sql = "ALTER TABLE public.m DETACH PARTITION public.m_2020 CONCURRENTLY"
  rollback = "ALTER TABLE public.m ATTACH PARTITION public.m_2020 FOR VALUES FROM (2020) TO (2021)"
"#;

fn runbook(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("rb.toml");
    std::fs::write(&path, text).expect("write runbook");
    path.display().to_string()
}

#[test]
fn check_says_which_version_it_assumed_and_where_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(&dir, DETACH_RUNBOOK);
    // The runbook says 13: DETACH … CONCURRENTLY fails there.
    let (code, _, err) = pgpilot(&["check", &rb]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("rb.toml:14:10: error: needs-newer-postgres: DETACH PARTITION … CONCURRENTLY needs PostgreSQL 14; target is 13 (from [target] server_version)"),
        "{err}"
    );
    assert!(
        err.contains("assuming PostgreSQL 13 (from [target] server_version)"),
        "{err}"
    );
    // --pg-version wins, and the runbook's other claim is pointed at.
    let (code, out, err) = pgpilot(&["check", &rb, "--pg-version", "16"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("rb.toml:6:18: warning: [target] server_version = 13, but the findings assume PostgreSQL 16 from --pg-version"),
        "{err}"
    );
    assert!(
        out.contains("assuming PostgreSQL 16 (from --pg-version)"),
        "{out}"
    );
    let (_, json, _) = pgpilot(&["check", &rb, "--pg-version", "16", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["pg_version"], 16);
    assert_eq!(v["pg_version_source"], "flag");
    let (_, json, _) = pgpilot(&["check", &rb, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["pg_version"], 13);
    assert_eq!(v["pg_version_source"], "runbook");
    // Nothing known: the newest supported, said so.
    let plain = runbook(&dir, &DETACH_RUNBOOK.replace("server_version = 13\n", ""));
    let (code, out, err) = pgpilot(&["check", &plain, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["pg_version"], 18);
    assert_eq!(v["pg_version_source"], "default");
}

#[test]
fn an_unsupported_server_version_is_an_error_at_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(
        &dir,
        &DETACH_RUNBOOK.replace("server_version = 13", "server_version = 9"),
    );
    let (code, _, err) = pgpilot(&["check", &rb]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("rb.toml:6:18: error: server_version: PostgreSQL 9 is not supported"),
        "{err}"
    );
}
