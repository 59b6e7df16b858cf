//! A notice or an error message is written by whoever wrote the function
//! or trigger that raised it, and may hold line breaks. In `--headless`
//! output every line pgpilot writes starts with `[STEP]` or `pgpilot:`; a
//! message's later lines must not pass for such lines ("[drop] applied",
//! "pgpilot: done"): they are indented under the line they belong to.

mod common;

use common::Lab;

/// What a hostile message tries to print as lines of pgpilot's own.
const FORGED: [&str; 2] = [
    "[boom] applied in 1 ms",
    "pgpilot: done (2 applied, 1 checks passed)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cannot_print_lines_that_pass_for_pgpilots_own() {
    let lab = Lab::new();
    let client = lab.database("lines", &[]).await;
    let forged = FORGED.join("\n");
    let literal = pgpilot::runbook::vars::quote_literal(&format!("all is well\n{forged}"));
    client
        .batch_execute(&format!(
            "CREATE FUNCTION noisy() RETURNS int LANGUAGE plpgsql AS $f$
             BEGIN RAISE NOTICE '%', {literal}; RETURN 1; END $f$;
             CREATE FUNCTION boom() RETURNS int LANGUAGE plpgsql AS $f$
             BEGIN RAISE EXCEPTION '%', {literal}; END $f$;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("lines.toml");
    std::fs::write(
        &rb,
        r#"[runbook]
id = "forged-lines"
title = "Messages with line breaks"

[[phase]]
id = "p"

  [[phase.step]]
  id = "notice"
  kind = "check"
  sql = "SELECT noisy()"

  [[phase.step]]
  id = "boom"
  kind = "check"
  sql = "SELECT boom()"
"#,
    )
    .unwrap();
    let rb = rb.display().to_string();
    let db = lab.conninfo("lines");
    let ran = lab.run(&["run", &rb, "--headless", "--db", &db, "--env", "staging"]);
    assert_eq!(ran.code, 1, "the second step fails\n{ran}");
    for line in ran.stdout.lines().chain(ran.stderr.lines()) {
        for f in FORGED {
            assert!(
                !line.starts_with(f),
                "a message printed a line of pgpilot's own: {line:?}\n{ran}"
            );
        }
    }
    // The text is still shown, under the line it belongs to.
    let out = format!("{}{}", ran.stdout, ran.stderr);
    assert!(out.contains("[notice] NOTICE: all is well"), "{ran}");
    assert!(out.contains(&format!("\n    {}", FORGED[0])), "{ran}");
    assert!(out.contains("[boom] FAILED [P0001]: all is well"), "{ran}");
}
