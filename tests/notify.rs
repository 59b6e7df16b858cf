//! `[notify]` webhooks against a real server and a local HTTP receiver: the
//! events a run posts and their fields, a rehearsal's marked as such, no
//! password and no token anywhere, and a dead receiver (one that never
//! answers, or a closed port) that never holds a step up, audited and shown
//! once.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, Ran, run_bounded};
use pgpilot::audit::record::{Action, AuditRecord};

/// The secret part of every webhook URL here: it must never be printed.
const TOKEN: &str = "T0K3N-s3cr3t";
const HOOK_ENV: &str = "PGPILOT_TEST_WEBHOOK";

/// A receiver that answers 200 to every POST and keeps the bodies.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = read_post(stream) {
                    kept.lock().unwrap().push(body);
                }
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self) -> String {
        url(self.port)
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or_else(|e| panic!("not JSON ({e}): {b}")))
            .collect()
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/services/{TOKEN}?sig={TOKEN}")
}

/// Reads one HTTP/1.1 request, answers 200 and returns its body.
fn read_post(stream: TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    Some(String::from_utf8_lossy(&body).into_owned())
}

fn runbook(id: &str, notify: Option<&str>) -> String {
    let notify = notify
        .map(|events| format!("[notify]\nwebhook_env = \"{HOOK_ENV}\"\nevents = {events}\n"))
        .unwrap_or_default();
    format!(
        r#"[runbook]
id = "{id}"
title = "Notify me"

{notify}
[[phase]]
id = "p"

  [[phase.step]]
  id = "first"
  kind = "check"
  sql = "SELECT 1"

  [[phase.step]]
  id = "second"
  kind = "check"
  sql = "SELECT 2"

  [[phase.step]]
  id = "third"
  kind = "check"
  sql = "SELECT 3"
"#
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A URI with a password in it, so the test sees it never leaves.
fn db_with_password(lab: &Lab) -> (String, String) {
    let password = lab
        .password()
        .unwrap_or_else(|| "n0tify-pw-never-posted".into());
    (lab.uri("notify", None, &password), password)
}

fn run_headless(lab: &Lab, args: &[&str], hook: Option<&str>) -> Ran {
    let mut cmd = lab.command(args);
    cmd.env_remove(HOOK_ENV);
    if let Some(h) = hook {
        cmd.env(HOOK_ENV, h);
    }
    run_bounded(&mut cmd, Duration::from_secs(120))
}

fn audit(lab: &Lab) -> Vec<AuditRecord> {
    std::fs::read_to_string(lab.audit_file())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn a_run_posts_its_events_with_their_fields_and_a_rehearsal_says_so() {
    let lab = Lab::new();
    lab.database("notify", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        &dir,
        "n.toml",
        &runbook("notify-run", Some(r#"["start", "step", "end"]"#)),
    );
    let (db, password) = db_with_password(&lab);
    let receiver = Receiver::start();

    let ran = run_headless(
        &lab,
        &["run", &rb, "--db", &db, "--headless", "--rehearse"],
        Some(&receiver.url()),
    );
    assert_eq!(ran.code, 0, "{ran}");
    let rehearsal = receiver.events();
    assert_eq!(rehearsal.len(), 5, "{rehearsal:#?}");
    for e in &rehearsal {
        assert_eq!(e["rehearsal"], true, "{e}");
        assert!(e["text"].as_str().unwrap().contains("[REHEARSAL]"), "{e}");
    }
    receiver.bodies.lock().unwrap().clear();

    let ran = run_headless(
        &lab,
        &["run", &rb, "--db", &db, "--headless"],
        Some(&receiver.url()),
    );
    assert_eq!(ran.code, 0, "{ran}");
    let events = receiver.events();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["start", "step", "step", "step", "end"],
        "{events:#?}"
    );
    let steps: Vec<&str> = events[1..4]
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["first", "second", "third"]);
    let operator = pgpilot::os_user::operator_name();
    for e in &events {
        assert_eq!(e["runbook"], "notify-run", "{e}");
        assert_eq!(e["rehearsal"], false, "{e}");
        assert_eq!(e["operator"], operator.as_str(), "{e}");
        assert_eq!(
            e["target"]["database"],
            lab.db_name("notify").as_str(),
            "{e}"
        );
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
        let text = e["text"].as_str().unwrap();
        assert!(text.starts_with("pgpilot: ") && !text.contains('\n'), "{e}");
        assert!(!text.contains("[REHEARSAL]"), "{e}");
    }
    assert_eq!(events[1]["action"], "step_success");
    assert_eq!(events[4]["outcome"], "done");
    assert!(events[4]["text"].as_str().unwrap().contains("ended: done"));
    for body in receiver.bodies.lock().unwrap().iter() {
        assert!(!body.contains(&password), "a password was posted: {body}");
    }
    for out in [&ran.stdout, &ran.stderr] {
        assert!(!out.contains(TOKEN), "{ran}");
    }
}

/// The seconds from a session's start to its last step's success, by the
/// audit's clock: how long the steps took, notifications or not.
fn steps_span(records: &[AuditRecord], runbook: &str) -> f64 {
    let mine: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.runbook.as_deref() == Some(runbook))
        .collect();
    let start = mine
        .iter()
        .find(|r| r.action == Action::SessionStart)
        .expect("a session_start")
        .ts;
    let last = mine
        .iter()
        .rfind(|r| r.action == Action::StepSuccess)
        .expect("a step_success")
        .ts;
    (last - start).num_milliseconds() as f64 / 1000.0
}

#[tokio::test]
async fn a_dead_webhook_never_delays_a_step_and_is_audited_and_shown_once() {
    let lab = Lab::new();
    lab.database("notify", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = db_with_password(&lab);

    // The same steps without a webhook: the bound the others are held to.
    let plain = write(&dir, "plain.toml", &runbook("notify-plain", None));
    let ran = run_headless(&lab, &["run", &plain, "--db", &db, "--headless"], None);
    assert_eq!(ran.code, 0, "{ran}");
    let baseline = steps_span(&audit(&lab), "notify-plain");

    // A receiver that accepts connections (the kernel's backlog does) and
    // never answers; and a port where nothing listens.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let events = r#"["start", "step", "failure", "end"]"#;
    for (id, port) in [
        ("notify-hung", hung.local_addr().unwrap().port()),
        ("notify-closed", closed),
    ] {
        let rb = write(&dir, &format!("{id}.toml"), &runbook(id, Some(events)));
        let ran = run_headless(
            &lab,
            &["run", &rb, "--db", &db, "--headless"],
            Some(&url(port)),
        );
        assert_eq!(ran.code, 0, "{id}: {ran}");
        let records = audit(&lab);
        // Posting in line would hold the first step for the request's
        // timeout (5 s) and its retries: far past this bound.
        let span = steps_span(&records, id);
        assert!(
            span < baseline + 5.0,
            "{id}: the steps took {span:.2} s, without a webhook {baseline:.2} s"
        );
        let failures: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| r.runbook.as_deref() == Some(id) && r.action == Action::NotifyFailure)
            .collect();
        assert!(!failures.is_empty(), "{id}: no notify_failure audited");
        let shown = format!("http://127.0.0.1:{port}");
        for f in &failures {
            let message = f.message.as_deref().unwrap_or_default();
            assert!(message.contains(&shown), "{id}: {message}");
            assert!(!message.contains(TOKEN), "{id}: {message}");
        }
        let output = format!("{}{}", ran.stdout, ran.stderr);
        assert!(!output.contains(TOKEN), "{id}: {ran}");
        let lines: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("notification"))
            .collect();
        assert_eq!(lines.len(), 1, "{id}: {ran}");
        assert!(lines[0].contains(&shown), "{id}: {ran}");
    }
    drop(hung);
}

fn pgpilot(args: &[&str]) -> Ran {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Ran::from(out)
}

#[test]
fn check_warns_about_a_literal_webhook_and_plan_shows_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = runbook("notify-literal", None).replace(
        "[[phase]]",
        &format!("[notify]\nwebhook = \"http://localhost:9/services/{TOKEN}\"\n\n[[phase]]"),
    );
    let rb = write(&dir, "lit.toml", &text);
    let checked = pgpilot(&["check", &rb]);
    assert_eq!(checked.code, 0, "{checked}");
    assert!(
        checked.stderr.contains(&format!(
            "{rb}:7:11: warning: the webhook's URL is written in the runbook"
        )),
        "{checked}"
    );
    let planned = pgpilot(&["plan", &rb]);
    assert_eq!(planned.code, 0, "{planned}");
    assert!(
        planned
            .stdout
            .contains("notify: start, failure, paused, rollback, emergency, end posted to http://localhost:9 (warning"),
        "{planned}"
    );
    assert!(!planned.stdout.contains(TOKEN), "{planned}");

    let env = write(
        &dir,
        "env.toml",
        &runbook("notify-env", Some(r#"["start", "bogus"]"#)),
    );
    let checked = pgpilot(&["check", &env]);
    assert_eq!(checked.code, 1, "{checked}");
    assert!(
        checked.stderr.contains(&format!(
            "{env}:7:20: error: notify event \"bogus\" is not known"
        )),
        "{checked}"
    );
}

#[tokio::test]
async fn a_pause_and_a_rollback_are_posted_with_hostile_text_kept_on_one_line() {
    let lab = Lab::new();
    lab.database("notify", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        &dir,
        "pr.toml",
        &format!(
            r#"[runbook]
id = "notify-pause"
title = "Pause and roll back"

[notify]
webhook_env = "{HOOK_ENV}"
events = ["start", "paused", "rollback", "end"]

[[phase]]
id = "p"

  [[phase.step]]
  id = "add"
  kind = "change"
  sql = "CREATE TABLE notify_t (id int)"
  rollback = "DROP TABLE notify_t"

  [[phase.step]]
  id = "deploy"
  kind = "pause"
  instructions = "Deploy the writer\n\u001b[2J now \u202e"
"#
        ),
    );
    let (db, _) = db_with_password(&lab);
    let receiver = Receiver::start();
    let mut args = vec![
        "run".to_string(),
        rb.clone(),
        "--db".into(),
        db.clone(),
        "--headless".into(),
    ];
    args.extend(common::confirms_for(&rb, false));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run_headless(&lab, &args, Some(&receiver.url()));
    assert_eq!(ran.code, 0, "{ran}");
    let mut args = vec![
        "rollback".to_string(),
        rb.clone(),
        "--db".into(),
        db,
        "--headless".into(),
    ];
    args.extend(common::confirms_for(&rb, true));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = run_headless(&lab, &args, Some(&receiver.url()));
    assert_eq!(ran.code, 0, "{ran}");

    let events = receiver.events();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("start", "run"),
            ("paused", "waiting"),
            ("end", "done"),
            ("start", "rollback"),
            ("rollback", ""),
            ("end", "done"),
        ],
        "{events:#?}"
    );
    let paused = &events[1];
    assert_eq!(paused["step"], "deploy");
    let text = paused["text"].as_str().unwrap();
    assert!(text.contains("Deploy the writer"), "{text}");
    assert!(
        !text.contains('\n') && !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text}"
    );
    assert_eq!(events[4]["step"], "add");
    assert!(events[4]["text"].as_str().unwrap().contains("rolled back"));
}
