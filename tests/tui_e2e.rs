//! `pgpilot run` in its TUI, driven through tmux like a person would: keys in,
//! screen read back, against a real server with a real blocker.

mod common;

use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{Lab, column, connect, scalar};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_steps_through_confirms_sees_the_blocker_and_quits() {
    let lab = Lab::new();
    let client = lab.database("diagnosticpro", &["diagnosticpro.sql"]).await;
    let db = lab.conninfo("diagnosticpro");
    let exit_file = lab.data_dir.path().join("exit");
    let cmd = format!(
        "cd {root} && PGPILOT_DATA_DIR={data} NO_COLOR=1 {bin} run tests/fixtures/valid/drop-column.toml --db '{db}'; echo $? > {exit}; sleep 30",
        root = common::ROOT,
        data = lab.data_dir.path().display(),
        bin = env!("CARGO_BIN_EXE_pgpilot"),
        exit = exit_file.display(),
    );
    let tui = Tmux::start(&cmd);
    tui.wait_for("r  run next");
    tui.keys(&["r"]);
    tui.wait_for("{{rows_before}} = 2000");
    tui.keys(&["r"]);
    tui.wait_for("[backup] applied");

    // Someone reads users in a long transaction: the drop will have to wait for it.
    let holder = connect(&db).await;
    let holder_pid = column(&holder, "SELECT pg_backend_pid()").await[0].clone();
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM users")
        .await
        .unwrap();

    tui.keys(&["r"]);
    tui.wait_for("Type drop column users.legacy_id to run it.");
    tui.text("drop column users.legacy_id");
    tui.keys(&["Enter"]);
    let s = tui.wait_for("hold locks drop needs");
    assert!(
        s.contains(&format!("{holder_pid} (postgres@")) && s.contains("    idle in transaction"),
        "{s}"
    );
    tui.keys(&["p"]);
    // The lock panel names the blocker of pgpilot's own ALTER.
    let s = tui.wait_for(&format!("blocked by {holder_pid} (idle in transaction"));
    assert!(
        s.contains("pgpilot is waiting for AccessExclusiveLock on users"),
        "{s}"
    );
    assert!(s.contains("(pgpilot) waits"), "{s}");
    holder.batch_execute("COMMIT").await.unwrap();
    tui.wait_for("[drop] applied");
    tui.keys(&["r"]);
    tui.wait_for("every step is done");
    tui.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exit_file.exists() {
        assert!(
            Instant::now() < deadline,
            "pgpilot did not exit:\n{}",
            tui.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
    // The terminal is restored: the shell's output is back on a normal screen.
    assert!(
        !tui.screen().contains("┌ Runbook"),
        "the TUI left its screen behind"
    );

    assert_eq!(scalar(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'legacy_id'").await, "0");
    assert_eq!(
        column(
            &client,
            "SELECT step_id || '=' || status FROM pgpilot.step_state ORDER BY step_id"
        )
        .await,
        [
            "backup=applied",
            "count=passed",
            "drop=applied",
            "same-count=passed"
        ]
    );
    let audit = std::fs::read_to_string(lab.audit_file()).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"confirmation\"")
                && l.contains("\"outcome\":\"accepted\"")),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"blockers\"")
                && l.contains(&format!("pid {holder_pid}"))),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"step_success\"") && l.contains("\"step\":\"drop\"")),
        "{audit}"
    );
}
