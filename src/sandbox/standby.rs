//! A streaming standby of a sandbox: `pg_basebackup -R` from the primary
//! through a physical replication slot, started on a free port. Tests pause
//! its replay (`pg_wal_replay_pause()`) to make its lag grow, or stop it to
//! leave its slot inactive. The sandbox's defaults already stream:
//! `wal_level = replica`, `max_wal_senders = 10`, and initdb's pg_hba.conf
//! trusts replication connections from localhost.

use std::fs;
use std::path::Path;

use super::sql::{quote_conninfo_value, simple_query};
use super::{HOST, SUPERUSER, Sandbox, SandboxError, chown, free_port, run};

/// A running standby; stopped and deleted on drop, like its primary.
#[derive(Debug)]
pub struct Standby {
    server: Sandbox,
    name: String,
}

impl Sandbox {
    /// Starts a standby of this cluster named `name` (its application_name,
    /// through `cluster_name`), streaming through a slot of the same name.
    pub fn start_standby(&self, name: &str) -> Result<Standby, SandboxError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(SandboxError::InvalidSetting(name.to_string()));
        }
        simple_query(
            &self.conninfo("postgres"),
            &format!("SELECT pg_create_physical_replication_slot('{name}')"),
        )?;
        let dir = tempfile::Builder::new()
            .prefix("pgpilot-standby-")
            .tempdir()
            .map_err(|e| SandboxError::io("cannot create a temporary directory", e))?;
        let root = dir.path().to_path_buf();
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir)
            .map_err(|e| SandboxError::io(format!("cannot create {}", socket_dir.display()), e))?;
        if let Some(user) = self.run_as {
            for path in [&root, &socket_dir] {
                chown(path, user)?;
            }
        }
        // PATH may hold links to initdb and pg_ctl alone (no pg_basebackup):
        // the tools' real folder has them all.
        let bin_dir = if self.bin_dir.join("pg_basebackup").exists() {
            self.bin_dir.clone()
        } else {
            fs::canonicalize(self.bin_dir.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| self.bin_dir.clone())
        };
        let mut server = Sandbox {
            data_dir: root.join("data"),
            log_path: root.join("server.log"),
            dir,
            bin_dir,
            run_as: self.run_as,
            port: 0,
            started: false,
        };
        let mut cmd = server.tool("pg_basebackup");
        cmd.arg("-D")
            .arg(&server.data_dir)
            .args(["-h", HOST, "-p", &self.port.to_string(), "-U", SUPERUSER])
            // A fast checkpoint: the default spreads it over most of
            // checkpoint_timeout once the primary has dirty pages (the demo's
            // freshly loaded readings), which held the demo for minutes.
            .args(["-R", "-X", "stream", "-S", name, "--no-sync"])
            .arg("--checkpoint=fast");
        run(cmd)?;
        server.port = free_port()?;
        server.started = true;
        // Status every second (default 10 s): the primary learns of replay
        // promptly, so a lag shows and clears within a second or two.
        let opts = super::SandboxOptions::default()
            .setting("cluster_name", name)
            .setting("wal_receiver_status_interval", "1s");
        server.pg_ctl_start(&socket_dir, &opts)?;
        Ok(Standby {
            server,
            name: name.to_string(),
        })
    }
}

impl Standby {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={}",
            self.server.port,
            quote_conninfo_value(dbname)
        )
    }

    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// Replay stops; WAL still arrives, so the primary sees the lag grow.
    pub fn pause_replay(&self) -> Result<(), SandboxError> {
        simple_query(&self.conninfo("postgres"), "SELECT pg_wal_replay_pause()").map(|_| ())
    }

    pub fn resume_replay(&self) -> Result<(), SandboxError> {
        simple_query(&self.conninfo("postgres"), "SELECT pg_wal_replay_resume()").map(|_| ())
    }

    /// Stops the standby: it vanishes from the primary's
    /// pg_stat_replication, and its slot stays, inactive.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}
