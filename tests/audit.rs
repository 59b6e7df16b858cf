//! The audit trail as an auditor meets it: a log that proves its own
//! integrity, a database copy that survives a lost connection, and exports.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pgpilot::audit::chain::{self, GENESIS_HASH};
use pgpilot::audit::cli::{ExportFormat, Filter, export_cmd, show_cmd, verify_cmd};
use pgpilot::audit::export::to_csv;
use pgpilot::audit::markdown::change_record;
use pgpilot::audit::query::read_records;
use pgpilot::audit::verify::ProblemKind;
use pgpilot::audit::{
    Action, AuditError, AuditLog, AuditRecord, AuditTarget, Context, DbAudit, DbWrite, Event,
    verify,
};
use tokio_postgres::{Client, NoTls};

fn ctx(runbook: &str) -> Context {
    Context {
        session: format!("s-{runbook}"),
        operator: "alice".into(),
        role: Some("migrator".into()),
        client_host: "ws-12".into(),
        target: Some(AuditTarget {
            host: "db.internal".into(),
            port: 5432,
            database: "weatherinsight".into(),
        }),
        runbook: Some(runbook.into()),
        runbook_sha256: Some("ab".repeat(32)),
        ticket: Some("CHG-2041".into()),
        rehearsal: false,
        emergency: None,
    }
}

fn ev(action: Action, step: Option<&str>) -> Event {
    let mut e = Event::new(action);
    e.phase = step.map(|_| "change".to_string());
    e.step = step.map(str::to_string);
    e
}

/// A log in a fresh directory with `n` step records.
fn log_with(n: u64) -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open_in(dir.path()).unwrap();
    let c = ctx("weather-add-column");
    for i in 0..n {
        let mut e = ev(Action::StepSuccess, Some(&format!("step-{i}")));
        e.duration_ms = Some(10 + i);
        e.rows = Some(i);
        log.append(&c, e).unwrap();
    }
    (dir, log)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn problem(path: &Path) -> (u64, ProblemKind, String) {
    let report = verify(path).unwrap();
    let text = report.to_string();
    let p = report
        .problem
        .unwrap_or_else(|| panic!("tampering not detected: {text}"));
    (p.line, p.kind, text)
}

#[test]
fn appended_records_form_an_intact_chain() {
    let (_dir, log) = log_with(10);
    let report = verify(log.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(
        report.to_string(),
        "ok: 10 records, chain intact, last seq 10"
    );

    let records = read_records(log.path()).unwrap();
    assert_eq!(records.len(), 10);
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(
            r.hash,
            chain::hash_of(r).unwrap(),
            "hash rule reproducible from the typed record"
        );
        if i > 0 {
            assert_eq!(r.prev_hash, records[i - 1].hash);
        }
        assert_eq!(r.ticket.as_deref(), Some("CHG-2041"));
    }
    assert_eq!(verify_cmd(Some(log.path())), 0);
}

#[test]
fn edited_field_is_named_by_line() {
    let (_dir, log) = log_with(10);
    let mut ls = lines(log.path());
    let mut v: serde_json::Value = serde_json::from_str(&ls[4]).unwrap();
    v["rows"] = serde_json::json!(999);
    ls[4] = serde_json::to_string(&v).unwrap();
    write_lines(log.path(), &ls);

    let (line, kind, text) = problem(log.path());
    assert_eq!(line, 5);
    assert_eq!(kind, ProblemKind::Edited { seq: 5 });
    assert!(
        text.starts_with(&format!("{}:5: error: ", log.path().display())),
        "{text}"
    );
    assert!(text.contains("edited"), "{text}");
    assert_eq!(verify_cmd(Some(log.path())), 1);
}

#[test]
fn editing_one_character_of_a_message_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open_in(dir.path()).unwrap();
    for word in ["first", "second", "third"] {
        let mut e = ev(Action::Notice, None);
        e.message = Some(format!("{word} notice"));
        log.append(&ctx("r"), e).unwrap();
    }
    let text =
        fs::read_to_string(log.path())
            .unwrap()
            .replacen("second notice", "secund notice", 1);
    fs::write(log.path(), text).unwrap();
    assert_eq!(problem(log.path()).0, 2);
}

#[test]
fn deleted_middle_line_is_detected() {
    let (_dir, log) = log_with(10);
    let mut ls = lines(log.path());
    ls.remove(4);
    write_lines(log.path(), &ls);
    let (line, kind, text) = problem(log.path());
    assert_eq!(line, 5);
    assert_eq!(
        kind,
        ProblemKind::Gap {
            prev_seq: 4,
            seq: 6
        }
    );
    assert!(text.contains("deleted"), "{text}");
}

#[test]
fn deleted_first_line_is_detected() {
    let (_dir, log) = log_with(3);
    let mut ls = lines(log.path());
    ls.remove(0);
    write_lines(log.path(), &ls);
    assert_eq!(problem(log.path()).1, ProblemKind::BadStart { seq: 2 });
}

#[test]
fn inserted_copy_of_a_line_is_detected() {
    let (_dir, log) = log_with(10);
    let mut ls = lines(log.path());
    let copy = ls[2].clone();
    ls.insert(6, copy);
    write_lines(log.path(), &ls);
    let (line, kind, text) = problem(log.path());
    assert_eq!(line, 7);
    assert_eq!(
        kind,
        ProblemKind::OutOfOrder {
            prev_seq: 6,
            seq: 3
        }
    );
    assert!(text.contains("inserted"), "{text}");
}

#[test]
fn truncated_tail_is_detected_by_the_head_file_and_not_extended() {
    let (_dir, mut log) = log_with(10);
    let mut ls = lines(log.path());
    ls.pop();
    write_lines(log.path(), &ls);
    let (line, kind, text) = problem(log.path());
    assert_eq!(
        kind,
        ProblemKind::TailRemoved {
            last_seq: 9,
            head_seq: 10
        }
    );
    assert_eq!(line, 10);
    assert!(text.contains("removed from the end"), "{text}");

    // Appending would overwrite the evidence in the head file: refused.
    let err = log
        .append(&ctx("r"), ev(Action::SessionStart, None))
        .unwrap_err();
    assert!(matches!(err, AuditError::HeadMismatch { .. }), "{err}");
    assert!(err.to_string().contains("aside"), "says what to do: {err}");
    assert_eq!(lines(log.path()).len(), 9);
}

#[test]
fn emptied_log_is_detected() {
    let (_dir, log) = log_with(3);
    fs::write(log.path(), "").unwrap();
    assert_eq!(
        problem(log.path()).1,
        ProblemKind::TailRemoved {
            last_seq: 0,
            head_seq: 3
        }
    );
}

#[test]
fn unparsable_line_is_named() {
    let (_dir, log) = log_with(4);
    let mut ls = lines(log.path());
    ls[1] = "{not json".into();
    write_lines(log.path(), &ls);
    let (line, kind, _) = problem(log.path());
    assert_eq!(line, 2);
    assert!(matches!(kind, ProblemKind::Unparsable { .. }));
}

#[test]
fn interrupted_write_is_reported_then_repaired_by_the_next_append() {
    let (_dir, mut log) = log_with(3);
    let mut text = fs::read_to_string(log.path()).unwrap();
    text.push_str(r#"{"seq":4,"ts":"2026-"#);
    fs::write(log.path(), text).unwrap();
    let (line, kind, _) = problem(log.path());
    assert_eq!(line, 4);
    assert!(
        matches!(&kind, ProblemKind::Unparsable { reason } if reason.contains("interrupted")),
        "{kind}"
    );

    let rec = log.append(&ctx("r"), ev(Action::SessionEnd, None)).unwrap();
    assert_eq!(rec.seq, 4);
    let report = verify(log.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 4);
}

#[test]
fn head_one_record_behind_after_a_crash_is_accepted_and_caught_up() {
    let (_dir, mut log) = log_with(3);
    let records = read_records(log.path()).unwrap();
    // The state a crash between the record's sync and the head's update leaves.
    chain::write_head(
        log.head_path(),
        &chain::Head {
            seq: 2,
            hash: records[1].hash.clone(),
        },
    )
    .unwrap();
    let report = verify(log.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.notes.len(), 1);

    log.append(&ctx("r"), ev(Action::SessionEnd, None)).unwrap();
    let report = verify(log.path()).unwrap();
    assert!(
        report.is_intact() && report.notes.is_empty(),
        "{report} {:?}",
        report.notes
    );
}

#[test]
fn records_written_and_not_yet_synced_survive_the_process_and_the_chain_goes_on() {
    // What a kill leaves while a step's success record waits to be synced
    // with the next record: whole lines in the file, the head file behind.
    let (dir, mut log) = log_with(2);
    let c = ctx("r");
    log.write(&c, ev(Action::StepSuccess, Some("a"))).unwrap();
    log.write(&c, ev(Action::StepStart, Some("b"))).unwrap();
    log.write(&c, ev(Action::StepSuccess, Some("b"))).unwrap();
    drop(log);
    let report = verify(&dir.path().join("audit.jsonl")).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 5);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("3 record(s) before the end")),
        "{:?}",
        report.notes
    );

    // The next session finds the head behind, checks it against the chain,
    // and carries on; its head then names the end again.
    let mut next = AuditLog::open_in(dir.path()).unwrap();
    let rec = next.append(&c, ev(Action::SessionStart, None)).unwrap();
    assert_eq!(rec.seq, 6);
    let report = verify(next.path()).unwrap();
    assert!(
        report.is_intact() && report.notes.is_empty(),
        "{report} {:?}",
        report.notes
    );
}

#[test]
fn head_naming_a_record_that_was_replaced_is_detected() {
    let (_dir, log) = log_with(4);
    chain::write_head(
        log.head_path(),
        &chain::Head {
            seq: 2,
            hash: "0".repeat(64),
        },
    )
    .unwrap();
    let (line, kind, text) = problem(log.path());
    assert_eq!(kind, ProblemKind::HeadDiffers { seq: 2 });
    assert_eq!(line, 2);
    assert!(text.contains("record seq 2"), "{text}");
    // The next session refuses to extend it.
    let mut next = AuditLog::open_in(log.dir()).unwrap();
    let err = next
        .append(&ctx("r"), ev(Action::SessionStart, None))
        .unwrap_err();
    assert!(matches!(err, AuditError::HeadMismatch { .. }), "{err}");
    assert_eq!(lines(log.path()).len(), 4);
}

#[test]
fn missing_head_file_is_detected() {
    let (_dir, log) = log_with(3);
    fs::remove_file(log.head_path()).unwrap();
    assert!(matches!(
        problem(log.path()).1,
        ProblemKind::HeadMissing { .. }
    ));
}

#[test]
fn files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("pgpilot");
    let mut log = AuditLog::open_in(&data).unwrap();
    log.append(&ctx("r"), ev(Action::SessionStart, None))
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(log.path()), 0o600);
    assert_eq!(mode(log.head_path()), 0o600);
    assert_eq!(mode(&data), 0o700);

    // A log someone made world-readable is narrowed again.
    fs::set_permissions(log.path(), fs::Permissions::from_mode(0o644)).unwrap();
    let mut log = AuditLog::open_in(&data).unwrap();
    assert_eq!(mode(log.path()), 0o600);
    log.append(&ctx("r"), ev(Action::SessionEnd, None)).unwrap();
    assert_eq!(mode(log.path()), 0o600);
}

#[test]
fn passwords_never_reach_the_log() {
    let (_dir, mut log) = log_with(0);
    let mut e = ev(Action::StepStart, Some("create-role"));
    e.sql = Some("CREATE ROLE app LOGIN PASSWORD 'hunter2';".into());
    e.message = Some("connecting to postgresql://app:s3cret@db/x with password=topsecret".into());
    let rec = log.append(&ctx("r"), e).unwrap();
    let text = fs::read_to_string(log.path()).unwrap();
    for secret in ["hunter2", "s3cret", "topsecret"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(
        rec.sql.as_deref(),
        Some("CREATE ROLE app LOGIN PASSWORD '***';")
    );
    assert_eq!(
        rec.sql_sha256,
        Some(chain::sha256_hex(b"CREATE ROLE app LOGIN PASSWORD '***';"))
    );
    assert!(verify(log.path()).unwrap().is_intact());
}

#[test]
fn concurrent_appenders_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut log = AuditLog::open_in(&dir).unwrap();
                let c = Context {
                    session: format!("thread-{t}"),
                    ..ctx("r")
                };
                for i in 0..50 {
                    let mut e = ev(Action::Notice, None);
                    e.message = Some(format!("thread {t} record {i}"));
                    log.append(&c, e).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let path = dir.path().join("audit.jsonl");
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 100);
    assert_eq!(report.last_seq, Some(100));
}

/// A session with every kind of step outcome, as the engine records it.
fn full_session(log: &mut AuditLog) -> Vec<AuditRecord> {
    let c = ctx("users-drop-legacy");
    let mut out = Vec::new();
    let mut add = |e: Event| out.push(log.append(&c, e).unwrap());

    let mut e = ev(Action::SessionStart, None);
    e.outcome = Some("run".into());
    e.message = Some("env=production".into());
    add(e);
    let mut e = ev(Action::Guard, None);
    e.outcome = Some("pass".into());
    e.message = Some("database: current_database() is weatherinsight".into());
    add(e);

    let mut e = ev(Action::StepStart, Some("backup-users"));
    e.sql = Some("CREATE TABLE users_backup AS TABLE users".into());
    e.attempt = Some(1);
    add(e);
    let mut e = ev(Action::Retry, Some("backup-users"));
    e.attempt = Some(1);
    e.sqlstate = Some("55P03".into());
    e.message = Some("waited 2s for a lock".into());
    add(e);
    let mut e = ev(Action::StepSuccess, Some("backup-users"));
    e.attempt = Some(2);
    e.duration_ms = Some(2_400);
    e.rows = Some(1_000);
    add(e);

    let mut e = ev(Action::Confirmation, Some("drop-legacy"));
    e.outcome = Some("wrong".into());
    add(e);
    let mut e = ev(Action::Confirmation, Some("drop-legacy"));
    e.outcome = Some("accepted".into());
    add(e);
    let mut e = ev(Action::StepStart, Some("drop-legacy"));
    e.sql = Some("ALTER TABLE users DROP COLUMN legacy".into());
    add(e);
    let mut e = ev(Action::StepFailure, Some("drop-legacy"));
    e.duration_ms = Some(15);
    e.sqlstate = Some("42703".into());
    e.message = Some("column \"legacy\" of relation \"users\" does not exist".into());
    add(e);

    let mut e = ev(Action::Skip, Some("deploy-writer"));
    e.message = Some("writer already deployed | by CI".into());
    add(e);

    let mut e = ev(Action::RollbackStart, Some("backup-users"));
    e.sql = Some("DROP TABLE IF EXISTS users_backup".into());
    add(e);
    let mut e = ev(Action::RollbackSuccess, Some("backup-users"));
    e.duration_ms = Some(30);
    add(e);

    let mut e = ev(Action::SessionEnd, None);
    e.outcome = Some("failed".into());
    e.message = Some("step drop-legacy failed [42703]".into());
    add(e);
    out
}

#[test]
fn markdown_export_is_a_change_record() {
    let (_dir, mut log) = log_with(0);
    let records = full_session(&mut log);
    let report = verify(log.path()).unwrap();
    let md = change_record(&records, log.path(), Some(&report));

    for expected in [
        "Audit chain verified: 13 records, chain intact, last seq 13.",
        "## users-drop-legacy — run — session s-users-drop-legacy",
        "| Change ID | CHG-2041 |",
        "| Environment | production |",
        "| Rehearsal | no: changes are permanent |",
        "| Operator | alice, database role `migrator`, from host ws-12 |",
        "| Target | `db.internal:5432/weatherinsight` |",
        "| Result | **failed**: step drop-legacy failed [42703] |",
        "| Rollback required | **yes**: in this session: `backup-users` rolled back |",
        "| database | pass | current_database() is weatherinsight |",
        "| # | Phase | Step | Action | Outcome | Duration | Attempts | Confirmation | Notes |",
        "| 1 | change | backup-users | apply | succeeded | 2.4 s | 2 | - | 1 retry after lock_timeout; 1000 row(s) |",
        "| 2 | change | drop-legacy | apply | failed | 15 ms | 1 | wrong, then accepted | SQLSTATE 42703: column \"legacy\" of relation \"users\" does not exist |",
        "| 3 | change | deploy-writer | skip | skipped | - | - | - | reason: writer already deployed \\| by CI |",
        "| 4 | change | backup-users | rollback | rolled back | 30 ms |",
        "- `deploy-writer`: writer already deployed \\| by CI",
        "- `backup-users`: rolled back in 30 ms",
        "### Failures",
        "```sql\nALTER TABLE users DROP COLUMN legacy\n```",
    ] {
        assert!(md.contains(expected), "missing {expected:?} in:\n{md}");
    }
    assert!(
        md.contains("2 step(s)") || md.contains("1 step(s) succeeded"),
        "{md}"
    );
}

#[test]
fn markdown_marks_rehearsals_and_broken_chains() {
    let (_dir, mut log) = log_with(0);
    let c = Context {
        rehearsal: true,
        ..ctx("r")
    };
    let mut e = ev(Action::SessionStart, None);
    e.outcome = Some("rehearsal".into());
    log.append(&c, e).unwrap();
    log.append(&c, ev(Action::StepSuccess, Some("a"))).unwrap();
    let mut ls = lines(log.path());
    ls.remove(0);
    write_lines(log.path(), &ls);
    let report = verify(log.path()).unwrap();
    let md = change_record(
        &read_records(log.path()).unwrap(),
        log.path(),
        Some(&report),
    );
    assert!(md.contains("**Audit chain BROKEN**"), "{md}");
    assert!(md.contains("## REHEARSAL: r"), "{md}");
    assert!(md.contains("| Rehearsal | **yes**"), "{md}");
}

#[test]
fn csv_quotes_commas_and_quotes() {
    let (_dir, mut log) = log_with(0);
    let mut e = ev(Action::Skip, Some("deploy"));
    e.message = Some(r#"he said "wait", so we skipped"#.into());
    log.append(&ctx("r"), e).unwrap();
    let csv = to_csv(&read_records(log.path()).unwrap());
    let mut rows = csv.split("\r\n");
    let header = rows.next().unwrap();
    assert!(header.starts_with(
        "seq,ts,session,operator,role,client_host,target_host,target_port,target_database,runbook"
    ));
    let row = rows.next().unwrap();
    assert!(
        row.contains(r#","he said ""wait"", so we skipped","#),
        "{row}"
    );
    assert!(row.starts_with("1,"));
    assert_eq!(
        rows.next(),
        Some(""),
        "one record, then the final line break"
    );
}

#[test]
fn filters_choose_records_and_reject_bad_input() {
    let (_dir, mut log) = log_with(0);
    log.append(&ctx("alpha"), ev(Action::SessionStart, None))
        .unwrap();
    log.append(&ctx("beta"), ev(Action::SessionStart, None))
        .unwrap();
    log.append(&ctx("beta"), ev(Action::StepSuccess, Some("x")))
        .unwrap();
    let records = read_records(log.path()).unwrap();

    let pick = |f: Filter| {
        let sel = f.selection().unwrap();
        records
            .iter()
            .filter(|r| sel.matches(r))
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pick(Filter {
            runbook: Some("beta".into()),
            ..Filter::default()
        }),
        vec![2, 3]
    );
    assert_eq!(
        pick(Filter {
            action: Some("session_start".into()),
            ..Filter::default()
        }),
        vec![1, 2]
    );
    assert_eq!(
        pick(Filter {
            since: Some("2000-01-01".into()),
            ..Filter::default()
        }),
        vec![1, 2, 3]
    );
    assert_eq!(
        pick(Filter {
            since: Some("2999-01-01T00:00:00Z".into()),
            ..Filter::default()
        }),
        Vec::<u64>::new()
    );

    let bad_since = Filter {
        since: Some("last tuesday".into()),
        ..Filter::default()
    };
    assert!(bad_since.selection().unwrap_err().contains("2026-11-23"));
    assert_eq!(show_cmd(Some(log.path()), &bad_since), 2);
    let bad_action = Filter {
        action: Some("stepsuccess".into()),
        ..Filter::default()
    };
    assert!(bad_action.selection().unwrap_err().contains("step_success"));
    assert_eq!(
        export_cmd(Some(log.path()), ExportFormat::Json, &bad_action),
        2
    );

    let nothing = Filter {
        runbook: Some("no-such-runbook".into()),
        ..Filter::default()
    };
    assert_eq!(show_cmd(Some(log.path()), &nothing), 0);
    assert_eq!(
        export_cmd(Some(log.path()), ExportFormat::Json, &nothing),
        0
    );
    assert_eq!(verify_cmd(Some(&log.dir().join("no-such.jsonl"))), 1);
}

/// The binary's contract, when this crate builds it.
#[test]
fn cli_verify_prints_the_contract_lines() {
    let Some(bin) = option_env!("CARGO_BIN_EXE_pgpilot") else {
        return;
    };
    let (dir, log) = log_with(3);
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("PGPILOT_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: 3 records, chain intact, last seq 3\n"
    );

    let out = run(&["audit", "export", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split("\r\n").count(),
        5
    );

    let mut ls = lines(log.path());
    ls.remove(1);
    write_lines(log.path(), &ls);
    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:2: error: ", log.path().display())),
        "{err}"
    );

    let out = run(&["audit", "show", "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

// ---- hostile files: what the readers refuse ----

/// `pgpilot audit …` in a bounded child (deadline, 1 GiB of address space).
fn audit_bounded(args: &[&str], data_dir: &Path) -> common::Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpilot"));
    cmd.arg("audit")
        .args(args)
        .env("NO_COLOR", "1")
        .env("PGPILOT_DATA_DIR", data_dir);
    common::run_bounded(&mut cmd, Duration::from_secs(20))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn audit_show_verify_and_export_of_a_device_or_a_fifo_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.jsonl");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    for (file, kind) in [
        ("/dev/zero", "a character device"),
        (fifo, "a FIFO (named pipe)"),
    ] {
        for args in [
            vec!["show", file],
            vec!["verify", file],
            vec!["export", "--format", "json", file],
            vec!["export", "--format", "markdown", file],
        ] {
            let ran = audit_bounded(&args, dir.path());
            assert_eq!(ran.code, 1, "{args:?}\n{ran}");
            assert!(
                ran.stderr.contains(&format!(
                    "cannot read {file}: it is {kind}, not a regular file"
                )),
                "{args:?}\n{ran}"
            );
        }
    }

    // The default log, when something other than a file sits at its path.
    let data = tempfile::tempdir().unwrap();
    mkfifo(&data.path().join("audit.jsonl"));
    let ran = audit_bounded(&["show"], data.path());
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("not a regular file"), "{ran}");
}

#[test]
fn a_line_longer_than_any_record_is_an_error_naming_the_file_and_line() {
    let (dir, log) = log_with(2);
    // Two good records, then 65 MiB without a newline (sparse: no disk used).
    let len = fs::metadata(log.path()).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(log.path())
        .unwrap()
        .set_len(len + 65 * 1024 * 1024)
        .unwrap();
    let path = log.path().to_str().unwrap();
    let ran = audit_bounded(&["verify", path], dir.path());
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "{path}:3: error: a line longer than 64 MiB, more than any record pgpilot writes"
        )),
        "{ran}"
    );
    for args in [vec!["show", path], vec!["export", "--format", "csv", path]] {
        let ran = audit_bounded(&args, dir.path());
        assert_eq!(ran.code, 1, "{args:?}\n{ran}");
        assert!(
            ran.stderr
                .contains(&format!("{path}:3: a line longer than 64 MiB")),
            "{args:?}\n{ran}"
        );
    }
}

// ---- hostile files: what the writers refuse ----

/// A file outside the data directory that a planted link points at; empty,
/// so that a log following the link would take it for a fresh log and
/// write to it.
fn victim(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("victim");
    fs::write(&path, "").unwrap();
    path
}

#[test]
fn a_symlink_planted_at_an_audit_file_is_not_followed() {
    let (_src, source) = log_with(1);
    let rec = read_records(source.path()).unwrap().remove(0);
    for name in ["audit.jsonl", "audit.head", "spool.jsonl", "spool.lock"] {
        let outside = tempfile::tempdir().unwrap();
        let target = victim(outside.path());
        let data = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&target, data.path().join(name)).unwrap();

        let err = if name.starts_with("audit") {
            AuditLog::open_in(data.path())
                .and_then(|mut log| log.append(&ctx("r"), ev(Action::SessionStart, None)))
                .unwrap_err()
        } else {
            DbAudit::new(data.path())
                .spool_all(std::slice::from_ref(&rec))
                .unwrap_err()
        };
        let text = err.to_string();
        assert!(
            text.contains(&data.path().join(name).display().to_string())
                && text.contains("it is a symbolic link")
                && text.contains("remove the link"),
            "{name}: {text}"
        );
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "",
            "{name}: the link's target was written"
        );
    }
}

#[test]
fn a_run_refuses_a_planted_link_and_a_data_directory_others_can_write() {
    let root = tempfile::tempdir().unwrap();
    let target = victim(root.path());
    let run = |data: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpilot"));
        cmd.args([
            "run",
            "tests/fixtures/valid/minimal.toml",
            "--headless",
            "--db",
            "host=/nonexistent",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PGPILOT_DATA_DIR", data);
        common::run_bounded(&mut cmd, Duration::from_secs(20))
    };

    let linked = root.path().join("linked");
    fs::create_dir(&linked).unwrap();
    fs::set_permissions(&linked, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&target, linked.join("audit.jsonl")).unwrap();
    let ran = run(&linked);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stderr.contains("cannot open the local audit log")
            && ran.stderr.contains("it is a symbolic link"),
        "{ran}"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "");

    let open = root.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let ran = run(&open);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "the data directory {} is writable by group or others (mode 0777)",
            open.display()
        )) && ran
            .stderr
            .contains(&format!("run `chmod 700 {}`", open.display())),
        "{ran}"
    );
    assert!(!open.join("audit.jsonl").exists());
}

#[test]
fn a_data_directory_others_could_write_or_that_is_not_yours_is_refused() {
    for mode in [0o777, 0o770, 0o702, 0o1777] {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        let err = AuditLog::open_in(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("is writable by group or others")
                && err.contains(&format!("chmod 700 {}", dir.path().display())),
            "mode {mode:o}: {err}"
        );
        assert!(!dir.path().join("audit.jsonl").exists());
        // The spool's directory is held to the same rule.
        assert!(
            DbAudit::new(dir.path()).spooled().is_err(),
            "mode {mode:o}: the spool was read"
        );
    }
    // A private directory, or a readable one, is fine.
    for mode in [0o700, 0o755] {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
        AuditLog::open_in(dir.path()).unwrap();
    }
    // Owned by someone else: only root can arrange that in a test.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        let err = AuditLog::open_in(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("is owned by uid 65534, not by you (uid 0)") && err.contains("chown"),
            "{err}"
        );
    }
}

/// "Who is acting" is the effective user: the audit's operator is the
/// account whose rights pgpilot uses, the one that owns the audit files and
/// that libpq connects as by default, not the real uid, which differs from
/// it in a setuid program. Only root can make the two differ in a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_in_the_audit_is_the_effective_user() {
    use std::os::unix::process::CommandExt;
    if pgpilot::os_user::effective_uid() != 0 {
        eprintln!(
            "skipped: only root can run pgpilot with a real uid other than its effective one"
        );
        return;
    }
    let lab = common::Lab::new();
    lab.database("operator", &[]).await;
    let conninfo = lab.conninfo("operator");
    let mut cmd = lab.command(&[
        "run",
        "tests/fixtures/valid/minimal.toml",
        "--headless",
        "--db",
        &conninfo,
    ]);
    // SAFETY: only setresuid, which is async-signal-safe, runs between fork
    // and exec; it changes the child's ids alone. Real uid nobody (65534),
    // effective and saved uid root, as in a setuid-root program run by nobody.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setresuid(65534, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ran = common::run_bounded(&mut cmd, Duration::from_secs(60));
    assert_eq!(ran.code, 0, "{ran}");
    let records = read_records(&lab.audit_file()).unwrap();
    assert!(!records.is_empty(), "no audit records\n{ran}");
    for r in &records {
        assert_eq!(
            r.operator, "root",
            "{:?} record names the real uid",
            r.action
        );
    }
}

/// Set in the child process of the test below: the data directory to append in.
const FULL_DISK_CHILD: &str = "PGPILOT_TEST_FULL_DISK_DIR";

#[test]
fn a_record_cut_short_by_a_full_disk_is_removed_and_the_log_still_verifies() {
    if let Some(dir) = std::env::var_os(FULL_DISK_CHILD) {
        // The child: a file size limit 100 bytes past the end of the log
        // stops the next record part way, as a full disk would.
        let dir = Path::new(&dir);
        let len = fs::metadata(dir.join("audit.jsonl")).unwrap().len();
        let limit = libc::rlimit {
            rlim_cur: len + 100,
            rlim_max: len + 100,
        };
        // SAFETY: plain system calls on valid arguments; SIGXFSZ ignored so
        // the write fails with EFBIG instead of killing the process.
        unsafe {
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let mut log = AuditLog::open_in(dir).unwrap();
        let mut e = ev(Action::Notice, None);
        e.message = Some("x".repeat(1000));
        match log.append(&ctx("r"), e) {
            Ok(rec) => println!("CHILD: written seq {}", rec.seq),
            Err(err) => println!("CHILD: refused: {err}"),
        }
        return;
    }
    let (dir, log) = log_with(3);
    let before = fs::read(log.path()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "a_record_cut_short_by_a_full_disk_is_removed_and_the_log_still_verifies",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(FULL_DISK_CHILD, dir.path());
    let ran = common::run_bounded(&mut cmd, Duration::from_secs(60));
    assert!(
        ran.stdout.contains("CHILD: refused: cannot append to"),
        "the write must fail\n{ran}"
    );
    assert_eq!(
        fs::read(log.path()).unwrap(),
        before,
        "no partial record may be left\n{ran}"
    );
    let report = verify(log.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.records, 3);
    // And the chain goes on from where it was.
    let mut log = AuditLog::open_in(dir.path()).unwrap();
    let rec = log.append(&ctx("r"), ev(Action::SessionEnd, None)).unwrap();
    assert_eq!(rec.seq, 4);
    assert!(verify(log.path()).unwrap().is_intact());
}

// ---- the database copy, against a real server ----

async fn connect(conninfo: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// The `count` column of `sql`'s one row (a `SELECT count(…)`).
async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap()
        .try_get("count")
        .unwrap()
}

fn spool_lines(dir: &Path) -> usize {
    fs::read_to_string(dir.join("spool.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn database_copy_spools_when_the_connection_is_gone_and_catches_up() {
    let server = pgpilot::sandbox::test_server().unwrap();
    let db = server.fresh_database("audit_copy").unwrap();
    let conninfo = server.conninfo(&db);
    let good = connect(&conninfo).await;

    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open_in(dir.path()).unwrap();
    let mut copy = DbAudit::new(log.dir());
    let c = ctx("users-drop-legacy");
    let mut written: Vec<AuditRecord> = Vec::new();

    // Local first, then the database.
    for step in ["a", "b", "c"] {
        let rec = log.append(&c, ev(Action::StepSuccess, Some(step))).unwrap();
        assert_eq!(copy.write(&good, &rec).await.unwrap(), DbWrite::Written);
        written.push(rec);
    }
    assert_eq!(
        count(&good, "SELECT count(*) FROM pgpilot.audit_log").await,
        3
    );
    let row = good
        .query_one(
            "SELECT action, step, hash, prev_hash, target_database, ticket, operator, role, rehearsal,
                    ts = $1::text::timestamptz AS same_ts
             FROM pgpilot.audit_log WHERE seq = 2",
            &[&written[1].ts.to_rfc3339()],
        )
        .await
        .unwrap();
    assert_eq!(row.try_get::<_, String>("action").unwrap(), "step_success");
    assert_eq!(row.try_get::<_, String>("step").unwrap(), "b");
    assert_eq!(row.try_get::<_, String>("hash").unwrap(), written[1].hash);
    assert_eq!(
        row.try_get::<_, String>("prev_hash").unwrap(),
        written[0].hash
    );
    assert_eq!(
        row.try_get::<_, String>("target_database").unwrap(),
        "weatherinsight"
    );
    assert_eq!(
        row.try_get::<_, Option<String>>("ticket")
            .unwrap()
            .as_deref(),
        Some("CHG-2041")
    );
    assert_eq!(row.try_get::<_, String>("operator").unwrap(), "alice");
    assert_eq!(
        row.try_get::<_, Option<String>>("role").unwrap().as_deref(),
        Some("migrator")
    );
    assert!(!row.try_get::<_, bool>("rehearsal").unwrap());
    assert!(
        row.try_get::<_, bool>("same_ts").unwrap(),
        "the timestamp survives to the microsecond"
    );

    // The connection dies (terminated by the server): records are spooled, the run goes on.
    let doomed = connect(&conninfo).await;
    let pid: i32 = doomed
        .query_one("SELECT pg_backend_pid() AS pid", &[])
        .await
        .unwrap()
        .try_get("pid")
        .unwrap();
    good.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    for step in ["d", "e"] {
        let rec = log.append(&c, ev(Action::StepSuccess, Some(step))).unwrap();
        match copy.write(&doomed, &rec).await.unwrap() {
            DbWrite::Spooled { reason } => assert!(!reason.is_empty()),
            other => panic!("expected the record to be spooled, got {other:?}"),
        }
        written.push(rec);
    }
    assert_eq!(spool_lines(dir.path()), 2);
    assert_eq!(copy.spooled().unwrap(), 2);
    assert_eq!(
        fs::metadata(copy.spool_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        count(&good, "SELECT count(*) FROM pgpilot.audit_log").await,
        3
    );

    // A record for another database waits for that database, not this one.
    let other = Context {
        target: Some(AuditTarget {
            host: "elsewhere".into(),
            port: 5432,
            database: "other".into(),
        }),
        ..ctx("x")
    };
    let foreign = AuditLog::open_in(&dir.path().join("other"))
        .unwrap()
        .append(&other, ev(Action::SessionStart, None))
        .unwrap();
    let mut other_copy = DbAudit::new(log.dir());
    assert!(matches!(
        other_copy.write(&doomed, &foreign).await.unwrap(),
        DbWrite::Spooled { .. }
    ));
    assert_eq!(spool_lines(dir.path()), 3);

    // Back on a good connection: the spool goes first, oldest first, then the new record.
    let rec = log.append(&c, ev(Action::SessionEnd, None)).unwrap();
    assert_eq!(copy.write(&good, &rec).await.unwrap(), DbWrite::Written);
    written.push(rec);
    assert_eq!(
        spool_lines(dir.path()),
        1,
        "only the other database's record is left"
    );
    let rows = good
        .query("SELECT seq, hash FROM pgpilot.audit_log ORDER BY seq", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows
        .iter()
        .map(|r| (r.try_get("seq").unwrap(), r.try_get("hash").unwrap()))
        .collect();
    let want: Vec<(i64, String)> = written
        .iter()
        .map(|r| (r.seq as i64, r.hash.clone()))
        .collect();
    assert_eq!(got, want, "every record once, none twice");
    let inserted_in_order = count(
        &good,
        "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (ORDER BY inserted_at, seq) AS prev FROM pgpilot.audit_log) s
         WHERE prev IS NOT NULL AND prev > seq",
    )
    .await;
    assert_eq!(inserted_in_order, 0);

    // Sending a record again (a re-flush after a crash) adds nothing.
    assert_eq!(
        copy.write(&good, &written[0]).await.unwrap(),
        DbWrite::Written
    );
    assert_eq!(copy.flush_spool(&good).await.unwrap(), 0);
    assert_eq!(
        count(&good, "SELECT count(*) FROM pgpilot.audit_log").await,
        6
    );
    assert!(verify(log.path()).unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread")]
async fn database_copy_is_created_once_even_by_two_writers() {
    let server = pgpilot::sandbox::test_server().unwrap();
    let db = server.fresh_database("audit_two").unwrap();
    let conninfo = server.conninfo(&db);
    let (a, b) = (connect(&conninfo).await, connect(&conninfo).await);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut logs: Vec<AuditLog> = dirs
        .iter()
        .map(|d| AuditLog::open_in(d.path()).unwrap())
        .collect();
    let r1 = logs[0]
        .append(
            &Context {
                session: "one".into(),
                ..ctx("r")
            },
            ev(Action::SessionStart, None),
        )
        .unwrap();
    let r2 = logs[1]
        .append(
            &Context {
                session: "two".into(),
                ..ctx("r")
            },
            ev(Action::SessionStart, None),
        )
        .unwrap();
    let (mut c1, mut c2) = (DbAudit::new(dirs[0].path()), DbAudit::new(dirs[1].path()));
    let (w1, w2) = tokio::join!(c1.write(&a, &r1), c2.write(&b, &r2));
    assert_eq!(w1.unwrap(), DbWrite::Written);
    assert_eq!(w2.unwrap(), DbWrite::Written);
    assert_eq!(
        count(&a, "SELECT count(DISTINCT session) FROM pgpilot.audit_log").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_allowed_only_to_insert_can_write_the_copy() {
    let server = pgpilot::sandbox::test_server().unwrap();
    let db = server.fresh_database("audit_role").unwrap();
    let admin = connect(&server.conninfo(&db)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::open_in(dir.path()).unwrap();

    // The DBA's session creates the table; the application role may only insert.
    let first = log
        .append(&ctx("r"), ev(Action::SessionStart, None))
        .unwrap();
    assert_eq!(
        DbAudit::new(dir.path())
            .write(&admin, &first)
            .await
            .unwrap(),
        DbWrite::Written
    );
    let role = format!("audit_writer_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} NOLOGIN;
             GRANT USAGE ON SCHEMA pgpilot TO {role};
             GRANT INSERT ON pgpilot.audit_log TO {role};
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        ))
        .await
        .unwrap();
    let app = connect(&server.conninfo(&db)).await;
    app.batch_execute(&format!("SET ROLE {role}"))
        .await
        .unwrap();
    let rec = log
        .append(&ctx("r"), ev(Action::StepSuccess, Some("a")))
        .unwrap();
    let outcome = DbAudit::new(dir.path()).write(&app, &rec).await.unwrap();
    assert_eq!(outcome, DbWrite::Written);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pgpilot.audit_log").await,
        2
    );
    drop(app);
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}
