//! A runbook under review may carry line breaks in its titles and names:
//! `plan` and `status` print each on one line, so a title cannot print a
//! line that passes for a step of the plan or a state of the target.

mod common;

const FAKE: &str = "\\n  9. drop-nothing [check]  LOW risk\\n";

fn runbook(dir: &std::path::Path) -> String {
    let text = format!(
        r#"
[runbook]
id = "titles"
title = "Harmless{FAKE}"
ticket = "CHG-1{FAKE}"

[target]
database = "titles{FAKE}"

[[health]]
name = "gate{FAKE}"
sql = "SELECT 0"
max = 1

[[phase]]
id = "p"
title = "Phase{FAKE}"

  [[phase.step]]
  id = "drop"
  title = "Step{FAKE}"
  kind = "change"
  sql = "CREATE TABLE t (a int)"
  irreversible = "gone{FAKE}"
"#
    );
    let path = dir.join("titles.toml");
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn no_fake_line(out: &str) {
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("9. drop-nothing")),
        "a title printed a line of its own:\n{out}"
    );
    assert!(out.contains("9. drop-nothing"), "the title is gone:\n{out}");
}

#[test]
fn plan_prints_each_title_on_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["plan", &rb])
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    no_fake_line(&text);
    // Seven titles and names, each kept on its line.
    assert_eq!(text.matches("9. drop-nothing").count(), 7, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_title_on_one_line() {
    let lab = common::Lab::new();
    let _client = lab.database("titles", &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = runbook(dir.path());
    let ran = lab.run(&["status", &rb, "--db", &lab.conninfo("titles")]);
    assert_eq!(ran.code, 0, "{ran}");
    no_fake_line(&ran.stdout);
}
