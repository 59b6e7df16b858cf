//! pgpilot over the migration tools' folders (Flyway, golang-migrate,
//! dbmate, plain files, sqitch): read without a server, or run headless
//! against one.

use std::process::Command;

use tokio_postgres::Client;

use super::Lab;

/// The tools' sample folders, one per layout.
pub const FIXTURES: &str = "tests/fixtures/migrations";

/// `pgpilot ARGS` from the crate's root, with no server and no colour:
/// its exit code, stdout and stderr.
pub fn pgpilot(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `args` run `--headless` against `conninfo`, with the typed `confirms`.
pub fn headless<'a>(args: &[&'a str], conninfo: &'a str, confirms: &'a [String]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args.to_vec();
    v.extend(["--headless", "--db", conninfo]);
    v.extend(confirms.iter().map(String::as_str));
    v
}

/// A lab with a fresh database the test calls `name`: the lab, the
/// operator's connection to it, and its conninfo.
pub async fn database(name: &str) -> (Lab, Client, String) {
    let lab = Lab::new();
    let client = lab.database(name, &[]).await;
    let db = lab.conninfo(name);
    (lab, client, db)
}
