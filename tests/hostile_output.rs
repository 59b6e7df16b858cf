//! Text from outside — other sessions' queries, server notices, captured
//! values, a runbook under review — never reaches a terminal or an export as
//! control sequences, and no spelling of a password is ever written down.

mod common;

use common::Lab;
use tokio_postgres::Client;

/// An OSC title write, an OSC 52 clipboard write, a CSI screen clear, a C1
/// CSI and a bidi override.
const EVIL: &str =
    "\u{1b}]0;pwned\u{7}\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{1b}[2J\u{9b}31m\u{202e}gnp.exe";

/// Whether `text` holds anything a terminal would act on.
fn dangerous(text: &str) -> Option<char> {
    text.chars().find(|c| {
        (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

fn assert_safe(what: &str, text: &str) {
    if let Some(c) = dangerous(text) {
        panic!("{what} passes {c:?} to the terminal:\n{text}");
    }
}

/// A session that stays idle in transaction with `sql` as its last query.
async fn idle_session(lab: &Lab, db: &str, sql: &str) -> Client {
    let c = common::connect(&lab.conninfo(db)).await;
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute(sql).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_control_sequence_reaches_a_terminal_or_an_export() {
    let lab = Lab::new();
    let client = lab.database("evil", &[]).await;
    client
        .execute(
            &format!(
                "CREATE FUNCTION noisy() RETURNS int LANGUAGE plpgsql AS $f$
                 BEGIN RAISE NOTICE '%', {}; RETURN 1; END $f$",
                pgpilot::runbook::vars::quote_literal(&format!("=HYPERLINK(\"x\") {EVIL}"))
            ),
            &[],
        )
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE labels (id int, label text); CREATE TABLE copies (label text)")
        .await
        .unwrap();
    client
        .execute("INSERT INTO labels VALUES (1, $1)", &[&EVIL])
        .await
        .unwrap();
    // Another session's query text, as pg_stat_activity shows it.
    let _idle = idle_session(&lab, "evil", &format!("SELECT 1 /* {EVIL} */")).await;

    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("evil.toml");
    let title = EVIL.replace('\u{7}', "").replace('\u{1b}', "\\u001b");
    std::fs::write(
        &rb,
        format!(
            r#"[runbook]
id = "evil-output"
title = "Labels {title}"

[[phase]]
id = "p"

  [[phase.step]]
  id = "notice"
  kind = "check"
  sql = "SELECT noisy() -- ```` fence"
  explain = "why {title}"

  [[phase.step]]
  id = "label"
  kind = "check"
  sql = "SELECT label FROM labels WHERE id = 1"
  capture = "label"

  [[phase.step]]
  id = "copy"
  kind = "change"
  sql = "INSERT INTO copies VALUES ({{{{label}}}})"
"#
        ),
    )
    .unwrap();
    let rb = rb.display().to_string();
    let db = lab.conninfo("evil");

    let mut outputs = Vec::new();
    for args in [
        vec!["check", &rb],
        vec!["plan", &rb],
        vec!["plan", &rb, "--format", "json"],
        vec!["run", &rb, "--headless", "--db", &db, "--env", "staging"],
        vec!["status", &rb, "--db", &db],
        vec!["status", &rb, "--db", &db, "--format", "json"],
        vec![
            "monitor",
            "--db",
            &db,
            "--once",
            "--long-transaction",
            "1ms",
        ],
        vec![
            "monitor",
            "--db",
            &db,
            "--once",
            "--format",
            "json",
            "--long-transaction",
            "1ms",
        ],
        vec!["audit", "show"],
        vec!["audit", "export", "--format", "csv"],
        vec!["audit", "export", "--format", "markdown"],
        vec!["audit", "export", "--format", "json"],
    ] {
        let ran = lab.run(&args);
        let what = args.join(" ");
        assert!(
            ran.code == 0,
            "{what} must succeed for its output to be checked\n{ran}"
        );
        assert_safe(&format!("{what} (stdout)"), &ran.stdout);
        assert_safe(&format!("{what} (stderr)"), &ran.stderr);
        outputs.push((what, ran));
    }
    let find = |w: &str| {
        &outputs
            .iter()
            .find(|(what, _)| what == w)
            .unwrap_or_else(|| panic!("{w}"))
            .1
    };
    // The value is still there, visibly: escaped, not dropped.
    let run = find(&format!("run {rb} --headless --db {db} --env staging"));
    assert!(run.stdout.contains("\\x1b]0;pwned"), "{run}");
    let monitor = find(&format!("monitor --db {db} --once --long-transaction 1ms"));
    assert!(monitor.stdout.contains("\\x1b[2J"), "{monitor}");
    // The capture went into the table as it was: data, not text for a terminal.
    assert_eq!(
        common::scalar(&client, "SELECT label FROM copies").await,
        EVIL
    );
    let csv = &find("audit export --format csv").stdout;
    assert!(csv.contains("'=HYPERLINK"), "formula neutralised:\n{csv}");
    assert!(
        !csv.lines()
            .any(|l| l.split(',').any(|cell| cell.starts_with('='))),
        "{csv}"
    );
    let md = &find("audit export --format markdown").stdout;
    assert!(
        md.contains("`````sql"),
        "a fence longer than the ```` inside:\n{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_password_is_written_down_or_shown() {
    let lab = Lab::new();
    let client = lab.database("secrets", &[]).await;
    client
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_login') THEN
                 CREATE ROLE app_login LOGIN;
               END IF;
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_other') THEN
                 CREATE ROLE app_other LOGIN;
               END IF;
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_third') THEN
                 CREATE ROLE app_third LOGIN;
               END IF;
             END $$",
        )
        .await
        .unwrap();
    // Another session changes a password and stays in its transaction, and
    // one more whose query is cut by the poll inside its literal (each its
    // own role: the first holds its role's row until it ends).
    let _a = idle_session(
        &lab,
        "secrets",
        "ALTER ROLE app_other PASSWORD $pw$Sekr1tA$pw$",
    )
    .await;
    let long = format!(
        "/* {} */ ALTER ROLE app_third PASSWORD 'Sekr1tB{}'",
        // pg_stat_activity keeps track_activity_query_size (1024) bytes:
        // the text it shows ends inside the literal.
        "x".repeat(970),
        "y".repeat(200)
    );
    let _b = idle_session(&lab, "secrets", &long).await;

    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("secrets.toml");
    std::fs::write(
        &rb,
        r#"[runbook]
id = "rotate-passwords"
title = "Rotate passwords"

[[phase]]
id = "p"

  [[phase.step]]
  id = "escape-string"
  kind = "change"
  sql = "ALTER ROLE app_login PASSWORD E'Sekr2tC'"
  rollback = "ALTER ROLE app_login PASSWORD U&'Sekr2tD'"

  [[phase.step]]
  id = "commented"
  kind = "change"
  sql = """ALTER ROLE app_login ENCRYPTED PASSWORD -- rotated today
  'Sekr2tE'"""

  [[phase.step]]
  id = "dollar"
  kind = "change"
  sql = "ALTER ROLE app_login PASSWORD $tag$Sekr2tF$tag$"
"#,
    )
    .unwrap();
    let rb = rb.display().to_string();
    let db = lab.conninfo("secrets");
    let mut seen = String::new();
    for args in [
        vec!["plan", &rb],
        vec!["plan", &rb, "--format", "json"],
        vec!["run", &rb, "--headless", "--db", &db, "--env", "staging"],
        vec![
            "monitor",
            "--db",
            &db,
            "--once",
            "--long-transaction",
            "1ms",
        ],
        vec![
            "monitor",
            "--db",
            &db,
            "--once",
            "--format",
            "json",
            "--long-transaction",
            "1ms",
        ],
        vec!["audit", "show"],
        vec!["audit", "export", "--format", "markdown"],
        vec!["audit", "export", "--format", "csv"],
    ] {
        let ran = lab.run(&args);
        assert_eq!(ran.code, 0, "{}\n{ran}", args.join(" "));
        seen.push_str(&ran.stdout);
        seen.push_str(&ran.stderr);
    }
    seen.push_str(&std::fs::read_to_string(lab.audit_file()).unwrap());
    for row in common::column(
        &client,
        "SELECT coalesce(sql, '') || ' ' || coalesce(message, '') FROM pgpilot.audit_log",
    )
    .await
    {
        seen.push_str(&row);
    }
    // The monitor saw both sessions and the steps ran (the password changed).
    assert!(
        seen.contains("ALTER ROLE app_other PASSWORD '***'"),
        "{seen}"
    );
    assert!(
        seen.contains("ALTER ROLE app_third PASSWORD '***'"),
        "{seen}"
    );
    assert!(seen.contains("3 applied"), "{seen}");
    for secret in [
        "Sekr1tA", "Sekr1tB", "Sekr2tC", "Sekr2tD", "Sekr2tE", "Sekr2tF",
    ] {
        if let Some(at) = seen.find(secret) {
            let from = at.saturating_sub(80);
            panic!(
                "{secret} is shown: …{}…",
                &seen[from..(at + 40).min(seen.len())]
            );
        }
    }
}
