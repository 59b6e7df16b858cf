//! Every finding rule, shown on the statement it is about and on the safer
//! form its advice names: the risky SQL raises exactly the listed rule ids,
//! and the safer form raises none of them. A rule with no row here fails
//! `every_rule_has_a_case`, so a new rule arrives with its proof.

use std::collections::BTreeSet;

use pgpilot::analysis::{Context, RULES, RuleId, analyze_sql};

/// One row: risky SQL, the rule ids it raises (all of them, nothing else),
/// and the safer SQL the advice describes, which raises none of those ids.
/// Tables named in the SQL are existing ones (not created earlier in it),
/// which is where the rules apply.
struct Case {
    risky: &'static str,
    raises: &'static [RuleId],
    safer: &'static str,
}

use RuleId::*;

const CASES: &[Case] = &[
    Case {
        risky: "CREATE INDEX readings_at ON readings (at)",
        raises: &[IndexNotConcurrent],
        safer: "CREATE INDEX CONCURRENTLY readings_at ON readings (at)",
    },
    Case {
        risky: "DROP INDEX readings_at",
        raises: &[DropIndexNotConcurrent],
        safer: "DROP INDEX CONCURRENTLY readings_at",
    },
    Case {
        risky: "REINDEX INDEX readings_at",
        raises: &[ReindexNotConcurrent],
        safer: "REINDEX INDEX CONCURRENTLY readings_at",
    },
    Case {
        risky: "REINDEX TABLE readings",
        raises: &[ReindexNotConcurrent],
        safer: "REINDEX TABLE CONCURRENTLY readings",
    },
    Case {
        risky: "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id)",
        raises: &[ForeignKeyNotValid],
        safer: "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
                ALTER TABLE orders VALIDATE CONSTRAINT orders_user",
    },
    Case {
        risky: "ALTER TABLE readings ADD CONSTRAINT positive CHECK (value > 0)",
        raises: &[CheckNotValid],
        safer: "ALTER TABLE readings ADD CONSTRAINT positive CHECK (value > 0) NOT VALID;
                ALTER TABLE readings VALIDATE CONSTRAINT positive",
    },
    Case {
        risky: "ALTER TABLE readings ALTER COLUMN station SET NOT NULL",
        raises: &[SetNotNull],
        safer: "ALTER TABLE readings ADD CONSTRAINT station_nn CHECK (station IS NOT NULL) NOT VALID;
                ALTER TABLE readings VALIDATE CONSTRAINT station_nn;
                ALTER TABLE readings ALTER COLUMN station SET NOT NULL;
                ALTER TABLE readings DROP CONSTRAINT station_nn",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        raises: &[VolatileDefault],
        safer: "ALTER TABLE users ADD COLUMN token uuid;
                ALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid()",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN n bigserial",
        raises: &[VolatileDefault, PreferIdentity],
        safer: "ALTER TABLE users ADD COLUMN n bigint",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN n int GENERATED ALWAYS AS IDENTITY",
        raises: &[VolatileDefault],
        safer: "ALTER TABLE users ADD COLUMN n int DEFAULT 0",
    },
    Case {
        risky: "ALTER TABLE readings ALTER COLUMN value TYPE numeric",
        raises: &[ColumnTypeChange],
        safer: "ALTER TABLE readings ADD COLUMN value_new numeric",
    },
    Case {
        risky: "ALTER TABLE readings RENAME COLUMN value TO celsius",
        raises: &[RenameColumn],
        safer: "ALTER TABLE readings ADD COLUMN celsius real",
    },
    Case {
        risky: "ALTER TABLE readings RENAME TO measurements",
        raises: &[RenameTable],
        safer: "CREATE VIEW measurements AS SELECT * FROM readings",
    },
    Case {
        risky: "ALTER TABLE users DROP COLUMN legacy_id",
        raises: &[DropColumn],
        safer: "CREATE TABLE users_legacy_id AS SELECT id, legacy_id FROM users",
    },
    Case {
        risky: "DROP TABLE sessions",
        raises: &[DropTable],
        safer: "CREATE TABLE sessions_backup AS TABLE sessions",
    },
    Case {
        risky: "ALTER TABLE users ADD CONSTRAINT users_email UNIQUE (email)",
        raises: &[UniqueConstraint],
        safer: "CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email);
                ALTER TABLE users ADD CONSTRAINT users_email UNIQUE USING INDEX users_email_idx",
    },
    Case {
        risky: "ALTER TABLE users ADD CONSTRAINT users_pk PRIMARY KEY (id)",
        raises: &[UniqueConstraint],
        safer: "ALTER TABLE users ADD CONSTRAINT users_pk PRIMARY KEY USING INDEX users_id_idx",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN email text UNIQUE",
        raises: &[UniqueConstraint],
        safer: "ALTER TABLE users ADD COLUMN email text",
    },
    Case {
        risky: "TRUNCATE sessions CASCADE",
        raises: &[TruncateCascade],
        safer: "TRUNCATE sessions",
    },
    Case {
        risky: "VACUUM FULL readings",
        raises: &[VacuumFull],
        safer: "VACUUM readings",
    },
    Case {
        risky: "CLUSTER readings USING readings_at",
        raises: &[Cluster],
        safer: "VACUUM (ANALYZE) readings",
    },
    Case {
        risky: "ALTER TABLE readings ADD COLUMN doc json",
        raises: &[PreferJsonb],
        safer: "ALTER TABLE readings ADD COLUMN doc jsonb",
    },
    Case {
        risky: "CREATE TABLE events (doc json)",
        raises: &[PreferJsonb],
        safer: "CREATE TABLE events (doc jsonb)",
    },
    Case {
        risky: "CREATE TABLE events (at timestamp)",
        raises: &[PreferTimestamptz],
        safer: "CREATE TABLE events (at timestamptz)",
    },
    Case {
        risky: "ALTER TABLE readings ADD COLUMN at timestamp without time zone",
        raises: &[PreferTimestamptz],
        safer: "ALTER TABLE readings ADD COLUMN at timestamp with time zone",
    },
    Case {
        risky: "BEGIN",
        raises: &[TransactionControl],
        safer: "SELECT 1",
    },
    Case {
        risky: "COMMIT",
        raises: &[TransactionControl],
        safer: "SELECT 1",
    },
    Case {
        risky: "SAVEPOINT s",
        raises: &[TransactionControl],
        safer: "SELECT 1",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN tier int NOT NULL",
        raises: &[AddColumnNotNull],
        safer: "ALTER TABLE users ADD COLUMN tier int NOT NULL DEFAULT 0",
    },
    Case {
        risky: "UPDATE readings SET value = 0",
        raises: &[UnboundedDml],
        safer: "UPDATE readings SET value = 0 WHERE id BETWEEN 1 AND 5000",
    },
    Case {
        risky: "DELETE FROM sessions",
        raises: &[UnboundedDml],
        safer: "DELETE FROM sessions WHERE id BETWEEN 1 AND 5000",
    },
    Case {
        risky: "REFRESH MATERIALIZED VIEW daily",
        raises: &[RefreshMatviewNotConcurrent],
        safer: "REFRESH MATERIALIZED VIEW CONCURRENTLY daily",
    },
    Case {
        risky: "DO $$ BEGIN UPDATE readings SET value = 0 WHERE id = 1; END $$",
        raises: &[OpaqueStatement],
        safer: "UPDATE readings SET value = 0 WHERE id = 1",
    },
    Case {
        risky: "CALL archive_readings()",
        raises: &[OpaqueStatement],
        safer: "INSERT INTO readings_archive SELECT * FROM readings WHERE id BETWEEN 1 AND 5000",
    },
    Case {
        risky: "COPY readings TO PROGRAM 'gzip > /tmp/readings.gz'",
        raises: &[OpaqueStatement],
        safer: "COPY readings TO STDOUT",
    },
    Case {
        risky: "LOCK TABLE readings IN ACCESS EXCLUSIVE MODE",
        raises: &[LockTable],
        safer: "SELECT count(*) FROM readings",
    },
    Case {
        risky: "ALTER TABLE orders ADD COLUMN user_id bigint REFERENCES users (id)",
        raises: &[ForeignKeyNotValid],
        safer: "ALTER TABLE orders ADD COLUMN user_id bigint;
                ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN token text DEFAULT make_token()",
        raises: &[VolatileDefault],
        safer: "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now()",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN name varchar(100)",
        raises: &[PreferText],
        safer: "ALTER TABLE users ADD COLUMN name text",
    },
    Case {
        risky: "ALTER TABLE users ADD COLUMN country char(2)",
        raises: &[CharType],
        safer: "ALTER TABLE users ADD COLUMN country text",
    },
    Case {
        risky: "CREATE TABLE posts (id integer PRIMARY KEY, body text)",
        raises: &[IntKey],
        safer: "CREATE TABLE posts (id bigint PRIMARY KEY, body text)",
    },
    Case {
        risky: "CREATE TABLE posts (id bigserial PRIMARY KEY)",
        raises: &[PreferIdentity],
        safer: "CREATE TABLE posts (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)",
    },
    Case {
        risky: "CREATE TABLE readings_by_station_and_hour_with_extreme_cold_and_heat_flags_and_notes (id bigint)",
        raises: &[IdentifierTooLong],
        safer: "CREATE TABLE readings_extremes (id bigint)",
    },
    Case {
        risky: "ALTER TABLE readings ADD COLUMN note text",
        raises: &[UnqualifiedName],
        safer: "ALTER TABLE public.readings ADD COLUMN IF NOT EXISTS note text",
    },
    Case {
        risky: "CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0)",
        raises: &[DomainConstraint],
        safer: "CREATE DOMAIN station_code AS text",
    },
    Case {
        risky: "ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0)",
        raises: &[AlterDomainConstraint],
        safer: "ALTER TABLE public.readings ADD CONSTRAINT positive CHECK (value > 0) NOT VALID",
    },
    Case {
        risky: "ALTER TABLE public.readings ALTER COLUMN station DROP NOT NULL",
        raises: &[DropNotNull],
        safer: "ALTER TABLE public.readings ALTER COLUMN station SET DEFAULT 'unknown'",
    },
    Case {
        risky: "ALTER TABLE public.readings DETACH PARTITION public.readings_2020",
        raises: &[DetachPartitionNotConcurrent],
        safer: "ALTER TABLE public.readings DETACH PARTITION public.readings_2020 CONCURRENTLY",
    },
    Case {
        risky: "ALTER TYPE status ADD VALUE 'pending'",
        raises: &[EnumValueOrder],
        safer: "ALTER TYPE status ADD VALUE 'pending' BEFORE 'approved'",
    },
    Case {
        risky: "ALTER TYPE status RENAME VALUE 'pending' TO 'waiting'",
        raises: &[RenameEnumValue],
        safer: "ALTER TYPE status ADD VALUE 'waiting' AFTER 'pending'",
    },
    Case {
        risky: "UPDATE public.readings SET value = 1, value = 2 WHERE id = 1",
        raises: &[DuplicateColumn],
        safer: "UPDATE public.readings SET value = 2 WHERE id = 1",
    },
    Case {
        risky: "CREATE TABLE public.stations (id bigint)",
        raises: &[RerunUnsafe],
        safer: "CREATE TABLE IF NOT EXISTS public.stations (id bigint)",
    },
    Case {
        risky: "DROP DATABASE weather",
        raises: &[DropDatabase],
        safer: "SELECT 1",
    },
    Case {
        risky: "ALTER SCHEMA weather RENAME TO climate",
        raises: &[RenameSchema],
        safer: "CREATE SCHEMA IF NOT EXISTS climate",
    },
    Case {
        risky: "DROP VIEW IF EXISTS public.daily_readings CASCADE",
        raises: &[DropCascade],
        safer: "DROP VIEW IF EXISTS public.daily_readings",
    },
    Case {
        risky: "ALTER TABLE public.readings SET SCHEMA archive",
        raises: &[SetSchema],
        safer: "CREATE VIEW archive.readings AS SELECT * FROM public.readings",
    },
    Case {
        risky: "ALTER TABLE public.readings ADD CONSTRAINT positive CHECK (value > 0) NOT VALID;
                ALTER TABLE public.readings VALIDATE CONSTRAINT positive",
        raises: &[ValidateSameTransaction],
        safer: "ALTER TABLE public.readings VALIDATE CONSTRAINT positive",
    },
    Case {
        risky: "ALTER TABLE public.readings ALTER COLUMN station TYPE text",
        raises: &[CoercibleTypeChange],
        safer: "ALTER TABLE public.readings ADD COLUMN IF NOT EXISTS station_name text",
    },
];

/// The rule ids every statement of `sql` raises, analysed as one step.
/// Opt-in rules are enabled only for the case that shows them.
fn raised(sql: &str, enable: &[RuleId]) -> BTreeSet<&'static str> {
    let mut ctx = Context {
        enabled: enable.iter().copied().collect(),
        ..Context::default()
    };
    let analysis =
        analyze_sql(sql, &mut ctx).unwrap_or_else(|e| panic!("{sql}: does not parse: {e:?}"));
    analysis
        .iter()
        .flat_map(|s| s.findings.iter().map(|f| f.rule))
        .collect()
}

fn ids(rules: &[RuleId]) -> BTreeSet<&'static str> {
    rules.iter().map(|r| r.as_str()).collect()
}

#[test]
fn risky_sql_raises_exactly_its_rules() {
    let mut wrong = Vec::new();
    for case in CASES {
        let got = raised(case.risky, case.raises);
        let want = ids(case.raises);
        if got != want {
            wrong.push(format!(
                "{}\n  raises {got:?}\n  expected {want:?}",
                case.risky
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_safer_form_raises_none_of_them() {
    let mut wrong = Vec::new();
    for case in CASES {
        let got = raised(case.safer, case.raises);
        let still: Vec<_> = ids(case.raises).intersection(&got).copied().collect();
        if !still.is_empty() {
            wrong.push(format!("{}\n  still raises {still:?}", case.safer));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Rules raised only for an older target (`[target] server_version`,
/// `check --pg-version`): the version each case is analysed for.
/// tests/pg_version.rs shows each on both sides of its boundary.
const VERSIONED: &[(u32, Case)] = &[
    (
        13,
        Case {
            risky: "ALTER TABLE public.m DETACH PARTITION public.m_2020 CONCURRENTLY",
            raises: &[NeedsNewerPostgres],
            safer: "ALTER TABLE public.m DETACH PARTITION public.m_2020",
        },
    ),
    (
        10,
        Case {
            risky: "ALTER TABLE public.users ADD COLUMN score int DEFAULT 0",
            raises: &[AddColumnDefaultRewrite],
            safer: "ALTER TABLE public.users ADD COLUMN score int;
                    ALTER TABLE public.users ALTER COLUMN score SET DEFAULT 0",
        },
    ),
];

/// Rules raised only from what the target's catalog says (`check --db`):
/// tests/check_db.rs shows them on a real server.
const FROM_THE_TARGET: &[RuleId] = &[DropWithDependents];

#[test]
fn versioned_rules_raise_exactly_their_rules_on_their_version() {
    for (major, case) in VERSIONED {
        let analyse = |sql: &str| -> BTreeSet<&'static str> {
            let mut ctx = Context {
                version: pgpilot::analysis::version::TargetVersion {
                    major: *major,
                    source: pgpilot::analysis::version::VersionSource::Flag,
                },
                ..Context::default()
            };
            analyze_sql(sql, &mut ctx)
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .iter()
                .flat_map(|s| s.findings.iter().map(|f| f.rule))
                .collect()
        };
        assert_eq!(analyse(case.risky), ids(case.raises), "{}", case.risky);
        assert!(
            ids(case.raises).is_disjoint(&analyse(case.safer)),
            "{}",
            case.safer
        );
    }
}

#[test]
fn every_rule_has_a_case() {
    let covered: BTreeSet<RuleId> = CASES
        .iter()
        .chain(VERSIONED.iter().map(|(_, c)| c))
        .flat_map(|c| c.raises.iter().copied())
        .chain(FROM_THE_TARGET.iter().copied())
        .collect();
    let missing: Vec<_> = RuleId::ALL
        .iter()
        .filter(|r| !covered.contains(r))
        .map(|r| r.as_str())
        .collect();
    assert!(missing.is_empty(), "rules without a case: {missing:?}");
}

/// The ids users see are the table's, one per rule, in the kebab-case the
/// docs and `plan --format json` use.
#[test]
fn every_rule_in_the_table_has_one_id() {
    let shown: BTreeSet<&str> = RULES.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(shown.len(), RULES.len(), "two rules share an id");
    assert_eq!(RULES.len(), RuleId::ALL.len());
    for r in RULES {
        let id = r.id.as_str();
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{id}: rule ids are lower-case words joined by '-'"
        );
        assert!(!r.catches.is_empty() && !r.advice.is_empty(), "{id}");
    }
}

/// Code names rules by `RuleId`, never by a string: a rule that is not in
/// the table cannot be raised (it does not compile). This keeps it so.
#[test]
fn the_analyzer_names_rules_by_their_enum() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/analysis");
    // Every source file under src/analysis, subfolders (classify/) included.
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/analysis") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 5, "no analysis sources found");
    let mut strings = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("source");
        for (n, line) in text.lines().enumerate() {
            let l = line.trim_start();
            if ["f.find(\"", "self.find(\"", "finding(\"", "rule(\""]
                .iter()
                .any(|p| l.contains(p))
            {
                strings.push(format!("{}:{}: {l}", path.display(), n + 1));
            }
        }
    }
    assert!(
        strings.is_empty(),
        "rules named by string:\n{}",
        strings.join("\n")
    );
}
