//! Whatever a captured value holds, substituting it never changes what runs:
//! the same number of statements, of the same kinds, in every sample runbook
//! and in every form a reference can take.

use std::collections::HashMap;
use std::path::Path;

use pgpilot::analysis::{analyze_runbook, reanalyze};
use pgpilot::runbook::{load, parse_str, vars};
use proptest::prelude::*;

/// Steps written with every form and place a reference may take.
const TEMPLATES: &str = r#"[runbook]
id = "templates"
title = "Every place a value may stand"

[[phase]]
id = "p"

  [[phase.step]]
  id = "v"
  kind = "check"
  sql = "SELECT 1"
  capture = "v"

  [[phase.step]]
  id = "literals"
  kind = "change"
  sql = """
INSERT INTO notes (note) VALUES ({{v}});
UPDATE orders SET status = '{{v}}' WHERE id <= {{v}} AND note = 'x' || {{v}};
SELECT {{v}}::int;
COMMENT ON TABLE orders IS {{v}}"""
  rollback = "DELETE FROM notes WHERE note = {{v}}"

  [[phase.step]]
  id = "identifiers"
  kind = "change"
  sql = "CREATE INDEX {{v:ident}} ON {{v:ident}} ({{v:ident}})"
  rollback = "DROP TABLE IF EXISTS {{v:ident}}"

  [[phase.step]]
  id = "numbers"
  kind = "change"
  sql = "INSERT INTO notes (n) SELECT 1 - {{v:number}} LIMIT {{v:number}}"
"#;

fn sample_runbooks() -> Vec<pgpilot::runbook::Runbook> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut books: Vec<_> = std::fs::read_dir(root.join("runbooks"))
        .expect("runbooks/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| load(&p).unwrap_or_else(|d| panic!("{}: {d:?}", p.display())))
        .collect();
    books.push(
        parse_str(&root.join("templates.toml"), TEMPLATES.to_string()).expect("templates parse"),
    );
    books
}

/// Values that try every way out of a literal.
fn hostile_value() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'",
        "''",
        "\\",
        "\\'",
        "$$",
        "$t$",
        ";",
        "--",
        "/*",
        "*/",
        "\n",
        "\"",
        "COMMIT",
        "ROLLBACK",
        "DROP TABLE victims",
        ")",
        "(",
        "E'",
        "U&'",
        "{{v}}",
        "1",
        "-",
        "e",
        " ",
        "é",
        "→",
        "\u{202e}",
        "\t",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat()),
        "[^\u{0}]{0,40}",
        "-?[0-9]{1,6}(\\.[0-9]{1,3})?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn substituted_values_never_change_the_statements(value in hostile_value()) {
        let mut seen = 0;
        for book in sample_runbooks() {
            let analysis = analyze_runbook(&book).expect("sample runbooks analyse");
            for ((_, step), planned) in book.steps().zip(&analysis.steps) {
                let names: Vec<String> = step
                    .sql()
                    .into_iter()
                    .chain(step.rollback.as_ref())
                    .flat_map(|s| vars::references(&s.text).unwrap_or_default())
                    .map(|r| r.name)
                    .collect();
                if names.is_empty() {
                    continue;
                }
                let values: HashMap<String, String> =
                    names.into_iter().map(|n| (n, value.clone())).collect();
                for (text, is_rollback) in step
                    .sql()
                    .map(|s| (s, false))
                    .into_iter()
                    .chain(step.rollback.as_ref().map(|s| (s, true)))
                {
                    let sql = match vars::substitute_sql(&text.text, &values) {
                        Ok(s) => s,
                        // Only a number or identifier form may refuse a
                        // value (not a number, empty); nothing runs then.
                        Err(
                            vars::SubstituteError::NotANumber { .. }
                            | vars::SubstituteError::EmptyIdent(_),
                        ) => continue,
                        Err(e) => panic!("{}: {e}", step.id),
                    };
                    seen += 1;
                    let again = if is_rollback {
                        reanalyze(step, planned, None, Some(&sql))
                    } else {
                        reanalyze(step, planned, Some(&sql), None)
                    };
                    let again = again.unwrap_or_else(|m| panic!("{}: {m}\n{sql}", step.id));
                    let kinds = |a: &pgpilot::analysis::StepAnalysis| {
                        let v = if is_rollback { &a.rollback } else { &a.statements };
                        v.iter().map(|s| s.kind).collect::<Vec<_>>()
                    };
                    prop_assert_eq!(kinds(&again), kinds(planned), "{}", sql);
                }
            }
        }
        // The property is about something: sample runbooks and templates use values.
        prop_assert!(seen >= 4, "only {} texts with values", seen);
    }
}
