//! Verified pg_dump backups: a backup step's dump of its tables into the
//! data directory (mode 0600), checked with `pg_restore --list`, and
//! `pgpilot restore` of one into a scratch database. The password reaches
//! the client tools in their environment only, never their argv.

mod dump;
mod tools;

use std::ffi::OsString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::pg::ConnSpec;
use crate::runbook::TableName;

pub use dump::{backup_dir, digest, take_dump, tool_message, verify_dump};
pub use tools::{BIN_DIR_ENV, Tool, find, fits, parse_version_line, server_major};

/// What identifies a backup: where it is, how big, and its SHA-256. Kept
/// in the audit, the step's state and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupId {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl BackupId {
    /// The short id a responder types: the first 12 hex digits of the hash.
    pub fn short(&self) -> &str {
        self.sha256.get(..12).unwrap_or(&self.sha256)
    }
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} bytes, sha256 {})",
            self.path.display(),
            self.size,
            self.sha256
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "no {tool} of PostgreSQL {server} or newer found (the server is {server}{}): install the client tools of version {server} or newer (e.g. postgresql-client-{server}), or set {} to their directory",
        if found.is_empty() { String::new() } else { format!("; found {}", found.join(", ")) },
        BIN_DIR_ENV
    )]
    NoTool {
        tool: String,
        server: u32,
        found: Vec<String>,
    },
    #[error("{tool} failed: {message}")]
    ToolFailed { tool: String, message: String },
    #[error(
        "pg_dump did not finish within {}: it was killed and its partial file removed (is a table locked? see who holds it, or raise dump.timeout)",
        crate::runbook::format_duration(*.0)
    )]
    TimedOut(std::time::Duration),
    #[error("cancelled by the operator: pg_dump was killed and its partial file removed")]
    Cancelled,
    #[error("the dump is incomplete: pg_restore --list shows no data of table {0}")]
    Missing(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// How a client tool reaches the server: libpq's environment variables,
/// the password among them (never an argument: argv is visible to every
/// user of the machine in `ps`).
#[derive(Clone)]
pub struct ToolConn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    pub sslmode: String,
    /// PGSSLROOTCERT, PGSSLCERT, PGSSLKEY as `--db` or the environment
    /// gave them (see [`ConnSpec::tls_env`]).
    pub tls: Vec<(&'static str, OsString)>,
    /// `pgpilot-backup-` and a random tag: finds this tool's own session
    /// on the server (a killed pg_dump's backend waiting on a lock does not
    /// notice its client is gone until the lock is granted).
    pub application_name: String,
    password: Option<Vec<u8>>,
}

impl ToolConn {
    /// The first host of the session's connection, and its password.
    pub fn from_spec(spec: &ConnSpec) -> ToolConn {
        let target = spec.target();
        let password = spec
            .hosts
            .first()
            .and_then(|h| spec.password_for(h))
            .map(|s| s.value.clone());
        ToolConn {
            host: target.host,
            port: target.port,
            user: target.user,
            dbname: target.database,
            sslmode: spec.ssl_mode().as_str().to_string(),
            tls: spec.tls_env(),
            application_name: format!("pgpilot-backup-{:08x}", fastrand::u32(..)),
            password,
        }
    }

    /// The same server, another database.
    pub fn with_dbname(&self, dbname: &str) -> ToolConn {
        ToolConn {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The child's environment: PGHOST, PGPORT, PGUSER, PGDATABASE,
    /// PGSSLMODE, the TLS files (PGSSLROOTCERT, PGSSLCERT, PGSSLKEY) and
    /// PGPASSWORD when there is one. The database name goes
    /// in PGDATABASE rather than `--dbname`, which would read a name with
    /// `=` in it as a connection string.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        use std::os::unix::ffi::OsStringExt;
        let mut env = vec![
            ("PGHOST", OsString::from(&self.host)),
            ("PGPORT", OsString::from(self.port.to_string())),
            ("PGUSER", OsString::from(&self.user)),
            ("PGDATABASE", OsString::from(&self.dbname)),
            ("PGSSLMODE", OsString::from(&self.sslmode)),
            ("PGAPPNAME", OsString::from(&self.application_name)),
        ];
        env.extend(self.tls.iter().cloned());
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", OsString::from_vec(p.clone())));
        }
        env
    }

    /// Applies [`env`](Self::env) to a command, dropping settings of the
    /// caller's environment that would point it elsewhere.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        for var in [
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGHOSTADDR",
            "PGPASSWORD",
            "PGSSLROOTCERT",
            "PGSSLCERT",
            "PGSSLKEY",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
    }
}

/// `pg_dump`'s `--table` pattern for exactly this table: each part in
/// double quotes, where pattern characters (`* ? . $` and regular
/// expression syntax) match literally and case is kept.
pub fn table_pattern(t: &TableName) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match &t.schema {
        Some(s) => format!("{}.{}", quote(s), quote(&t.name)),
        None => quote(&t.name),
    }
}

/// pg_dump's arguments: custom format, never a password prompt, every
/// table must exist (`--strict-names`), one `--table` per table. The
/// connection is in the environment (see [`ToolConn::env`]).
pub fn dump_args(tables: &[TableName]) -> Vec<String> {
    let mut args = vec![
        "--format=custom".to_string(),
        "--no-password".to_string(),
        "--strict-names".to_string(),
    ];
    args.extend(
        tables
            .iter()
            .map(|t| format!("--table={}", table_pattern(t))),
    );
    args
}

/// `dbname='NAME'`: pg_restore needs `--dbname`, which it reads as a
/// connection string when the value has `=` in it; so it always gets one,
/// with the name quoted as libpq quotes values (host, port, user and the
/// password stay in the environment).
pub fn dbname_conninfo(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// pg_restore's arguments for a restore into a fresh database: never a
/// password prompt, objects owned by the restoring role (the dump's owners
/// and grants may not exist there), stop at the first error; `--table`
/// (with `--schema` for a qualified one) restores only those tables.
pub fn restore_args(tables: &[TableName]) -> Vec<String> {
    let mut args = vec![
        "--no-password".to_string(),
        "--no-owner".to_string(),
        "--no-privileges".to_string(),
        "--exit-on-error".to_string(),
    ];
    for t in tables {
        if let Some(s) = &t.schema {
            args.push(format!("--schema={s}"));
        }
        args.push(format!("--table={}", t.name));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ToolConn {
        ToolConn {
            host: "db".into(),
            port: 5432,
            user: "alice".into(),
            dbname: "app".into(),
            sslmode: "prefer".into(),
            tls: Vec::new(),
            application_name: "pgpilot-backup-1".into(),
            password: Some(b"s3cret-pw".to_vec()),
        }
    }

    #[test]
    fn tls_files_of_the_connection_reach_the_tools_environment_not_their_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
        std::fs::write(&cert, "cert").unwrap();
        std::fs::write(&key, "key").unwrap();
        let db = format!(
            "host=db.example user=alice dbname=app password=s3cret-pw sslmode=verify-ca sslrootcert=/etc/ca.pem sslcert={} sslkey={}",
            cert.display(),
            key.display()
        );
        let spec = ConnSpec::resolve(Some(&db)).unwrap();
        let conn = ToolConn::from_spec(&spec);
        let env = conn.env();
        let get = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-ca"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/etc/ca.pem"));
        assert_eq!(get("PGSSLCERT"), Some(cert.display().to_string()));
        assert_eq!(get("PGSSLKEY"), Some(key.display().to_string()));
        assert_eq!(get("PGPASSWORD").as_deref(), Some("s3cret-pw"));
        let args = dump_args(&[TableName {
            schema: None,
            name: "users".into(),
        }]);
        assert!(
            args.iter()
                .all(|a| !a.contains("s3cret") && !a.contains("ssl")),
            "{args:?}"
        );
        // The URL form gives the same settings.
        let url =
            "postgresql://alice:s3cret-pw@db.example/app?sslmode=verify-full&sslrootcert=system";
        let env = ToolConn::from_spec(&ConnSpec::resolve(Some(url)).unwrap()).env();
        assert!(
            env.iter()
                .any(|(k, v)| *k == "PGSSLROOTCERT" && v == "system")
        );
        assert!(
            env.iter()
                .any(|(k, v)| *k == "PGSSLMODE" && v == "verify-full")
        );
    }

    #[test]
    fn the_password_is_in_the_environment_never_in_the_arguments() {
        let t = TableName {
            schema: Some("public".into()),
            name: "users".into(),
        };
        let args = dump_args(std::slice::from_ref(&t));
        assert!(args.iter().all(|a| !a.contains("s3cret")), "{args:?}");
        assert!(args.contains(&"--table=\"public\".\"users\"".to_string()));
        assert!(args.contains(&"--no-password".to_string()));
        let env = conn().env();
        assert!(
            env.iter()
                .any(|(k, v)| *k == "PGPASSWORD" && v == "s3cret-pw")
        );
        assert!(env.iter().any(|(k, v)| *k == "PGDATABASE" && v == "app"));
    }

    #[test]
    fn a_database_name_is_one_quoted_conninfo_value() {
        assert_eq!(dbname_conninfo("x"), "dbname='x'");
        assert_eq!(
            dbname_conninfo("a'b\\c host=evil"),
            "dbname='a\\'b\\\\c host=evil'"
        );
    }

    #[test]
    fn table_patterns_quote_each_part() {
        let t = TableName {
            schema: None,
            name: "a$b".into(),
        };
        assert_eq!(table_pattern(&t), "\"a$b\"");
    }
}
