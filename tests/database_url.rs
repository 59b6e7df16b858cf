//! With `DATABASE_URL` set, the tests run on a server others use: each test
//! gets fresh databases of its own, and no database it did not create is
//! dropped, or has its sessions ended, whatever name the test asks for.
//!
//! One test in this binary: it sets `DATABASE_URL` for its process, which
//! no other test may race with.

mod common;

use common::{Lab, column, connect, scalar};
use pgpilot::sandbox::Sandbox;

#[test]
fn a_shared_server_keeps_its_databases_and_each_lab_gets_its_own() {
    // The "shared" server: its own sandbox, holding a database with the name
    // the tests ask for, a table in it, and a session of someone else's.
    let shared = Sandbox::start().expect("a sandbox to play the shared server");
    shared
        .create_database("diagnosticpro")
        .expect("someone's database");
    // SAFETY: this binary holds this one test, and it sets the variable
    // before it starts any thread that could read the environment.
    unsafe { std::env::set_var("DATABASE_URL", shared.url("postgres")) };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let theirs = connect(&shared.conninfo("diagnosticpro")).await;
        theirs
            .batch_execute("CREATE TABLE precious (id int); INSERT INTO precious VALUES (1)")
            .await
            .expect("their table");

        let lab = Lab::new();
        assert!(!lab.owns_server(), "DATABASE_URL is the server");
        let ours = lab.database("diagnosticpro", &["diagnosticpro.sql"]).await;
        let mine = lab.db_name("diagnosticpro");
        assert_ne!(mine, "diagnosticpro", "a name of the test's own");
        assert_eq!(scalar(&ours, "SELECT current_database()").await, mine);

        // Theirs is untouched: the database, its table and their session.
        assert_eq!(
            scalar(&theirs, "SELECT count(*) FROM precious").await,
            "1",
            "their database was dropped or emptied"
        );

        // Another lab asking for the same name gets another database.
        let other = Lab::new();
        let _ = other.database("diagnosticpro", &[]).await;
        assert_ne!(other.db_name("diagnosticpro"), mine);

        // A URI with a password, built from the server's settings, reaches
        // the test's database.
        let by_uri = connect(&lab.uri("diagnosticpro", None, "a p@ss/word")).await;
        assert_eq!(scalar(&by_uri, "SELECT current_database()").await, mine);
        drop(by_uri);

        // A sample runbook that guards on the database's name runs on the
        // test's database through a copy naming it.
        let rb = lab.runbook("runbooks/rename-column-expand-contract.toml");
        assert_ne!(rb, "runbooks/rename-column-expand-contract.toml");
        let checked = lab.run(&["check", &rb]);
        assert_eq!(checked.code, 0, "{checked}");
        let status = lab.run(&["status", &rb, "--db", &lab.conninfo("diagnosticpro")]);
        assert_eq!(status.code, 0, "{status}");

        // Dropping the labs drops what they created, and only that.
        drop(ours);
        drop(lab);
        drop(other);
        let left = column(
            &theirs,
            "SELECT datname FROM pg_database WHERE datname LIKE 'diagnosticpro%' ORDER BY 1",
        )
        .await;
        assert_eq!(left, ["diagnosticpro"]);
        assert_eq!(scalar(&theirs, "SELECT count(*) FROM precious").await, "1");
    });
}
