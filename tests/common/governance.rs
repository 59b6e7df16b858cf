//! Approvers on a real server, made as docs/safety-model.md tells a DBA to
//! make them: login roles that are not superusers, granted what
//! `pgpilot approve` needs on pgpilot.approvals, and dropped with what they
//! own when the test is done.

use std::path::PathBuf;

use tokio_postgres::Client;

use super::{Lab, Ran, scalar};

/// The password every approver role logs in with.
pub const PASSWORD: &str = "approver-pw";

/// `role` made anew as a login role with [`PASSWORD`], not a superuser.
pub async fn create_role(client: &Client, role: &str) {
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"
        ))
        .await
        .unwrap_or_else(|e| panic!("create role {role}: {e}"));
}

/// What docs/safety-model.md tells a DBA to grant an approver, once
/// pgpilot's schema exists.
pub async fn grant_approvers(client: &Client, roles: &[&str]) {
    let roles = roles.join(", ");
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA pgpilot TO {roles};
             GRANT SELECT, INSERT, UPDATE ON pgpilot.approvals TO {roles};"
        ))
        .await
        .unwrap_or_else(|e| panic!("grant {roles}: {e}"));
}

/// Drops `roles` and what they own; best effort, as a test's last act.
pub async fn drop_roles(client: &Client, roles: &[&str]) {
    for role in roles {
        let _ = client
            .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
            .await;
    }
}

/// What a command printed, stdout then stderr.
pub fn said(ran: &Ran) -> String {
    format!("{}{}", ran.stdout, ran.stderr)
}

/// A database with a `users` table, a folder for the runbook under review
/// (`users.toml`), and two approvers, alice and bob, under names of this
/// process and test (`tag`), so that tests running at once do not meet.
pub struct ApprovalLab {
    pub lab: Lab,
    /// The operator's connection (a superuser on the test's server).
    pub client: Client,
    /// The name the test gives its one database.
    pub db: &'static str,
    /// The runbook's folder.
    pub folder: tempfile::TempDir,
    pub alice: String,
    pub bob: String,
}

impl ApprovalLab {
    /// The database `db` made with `users_sql` run in it, and the two
    /// approver roles; no grants yet ([`ApprovalLab::admit_approvers`]).
    pub async fn new(db: &'static str, tag: &str, users_sql: &str) -> ApprovalLab {
        let lab = Lab::new();
        let client = lab.database(db, &[]).await;
        client
            .batch_execute(users_sql)
            .await
            .unwrap_or_else(|e| panic!("{users_sql}: {e}"));
        let pid = std::process::id();
        let (alice, bob) = (format!("alice_{pid}_{tag}"), format!("bob_{pid}_{tag}"));
        for role in [&alice, &bob] {
            create_role(&client, role).await;
        }
        ApprovalLab {
            lab,
            client,
            db,
            folder: tempfile::tempdir().expect("tempdir"),
            alice,
            bob,
        }
    }

    /// The operator's first use (listing the approvals of `runbook`)
    /// creates pgpilot's schema, which holds pgpilot.approvals; then the
    /// DBA grants the approvers.
    pub async fn admit_approvers(&self, runbook: &str) {
        let listed = self
            .lab
            .run(&["approvals", &self.write(runbook), "--db", &self.operator()]);
        assert_eq!(listed.code, 0, "{listed}");
        grant_approvers(&self.client, &[&self.alice, &self.bob]).await;
    }

    /// The operator's conninfo.
    pub fn operator(&self) -> String {
        self.lab.conninfo(self.db)
    }

    /// A URI that logs in as the approver `role`.
    pub fn as_role(&self, role: &str) -> String {
        self.lab.uri(self.db, Some(role), PASSWORD)
    }

    /// `text` written as the runbook `users.toml` in the folder; its path.
    pub fn write(&self, text: &str) -> String {
        let path: PathBuf = self.folder.path().join("users.toml");
        std::fs::write(&path, text).expect("write the runbook");
        path.to_str().expect("a UTF-8 path").to_string()
    }

    /// `pgpilot approve RB --as KIND` logged in as `role`, with `extra` flags.
    pub fn approve(&self, rb: &str, role: &str, kind: &str, extra: &[&str]) -> Ran {
        let db = self.as_role(role);
        let mut args = vec!["approve", rb, "--db", &db, "--as", kind];
        args.extend_from_slice(extra);
        self.lab.run(&args)
    }

    /// `pgpilot run RB --headless` as the operator, with `extra` flags.
    pub fn run(&self, rb: &str, extra: &[&str]) -> Ran {
        let db = self.operator();
        let mut args = vec!["run", rb, "--headless", "--db", &db];
        args.extend_from_slice(extra);
        self.lab.run(&args)
    }

    /// Whether the change under approval, users.nickname, is in the database.
    pub async fn applied(&self) -> bool {
        scalar(
            &self.client,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'nickname'",
        )
        .await
            == "1"
    }

    pub async fn drop_roles(&self) {
        drop_roles(&self.client, &[&self.alice, &self.bob]).await;
    }
}
