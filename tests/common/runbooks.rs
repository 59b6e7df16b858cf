//! Runbooks a test writes for itself, and running them headless.

use super::{Lab, Ran};

/// `text` written as `name` in `dir`; its path.
pub fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the runbook");
    path.to_str().expect("a UTF-8 path").to_string()
}

impl Lab {
    /// `pgpilot run RUNBOOK --headless` against the database the test
    /// calls `db`, to its end.
    pub fn run_headless(&self, runbook: &str, db: &str) -> Ran {
        self.run(&["run", runbook, "--headless", "--db", &self.conninfo(db)])
    }
}
