//! Resolving `--db` plus libpq's environment variables and defaults into a
//! [`ConnSpec`].
//!
//! `mod.rs` holds the resolved spec and the views of it that are safe to
//! show; the files below do the resolving: `conninfo.rs` reads `--db`,
//! `resolve.rs` applies libpq's fallbacks in libpq's order, `env.rs` is what
//! the environment and this machine supply.

mod conninfo;
mod env;
mod resolve;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::pg::PgError;
use crate::pg::tls::{SslMode, TlsSettings};
use env::{ProcessEnv, System};
use resolve::resolve_with;

/// The application name used when none is given.
pub const DEFAULT_APPLICATION_NAME: &str = "pgpilot";
/// The Unix-socket directory tried when no host is given (Debian's libpq
/// default); `localhost` when it does not exist.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The port when none is given.
pub const DEFAULT_PORT: u16 = 5432;
/// Connect timeout when neither `connect_timeout` nor PGCONNECT_TIMEOUT
/// sets one (libpq waits forever; a DBA at a change window should not).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where one host of the connection is and the password for it.
#[derive(Clone)]
pub(crate) struct HostSpec {
    pub host: HostName,
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
    /// Password from the password file for this host, when no other.
    pub pgpass: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostName {
    Tcp(String),
    Unix(PathBuf),
}

impl HostName {
    pub fn as_display(&self) -> String {
        match self {
            HostName::Tcp(h) => h.clone(),
            HostName::Unix(p) => p.display().to_string(),
        }
    }
}

/// A password and where it came from (for error messages).
#[derive(Clone)]
pub(crate) struct Secret {
    pub value: Vec<u8>,
    pub from: String,
}

/// A connection target without its password: what the audit trail, the UI
/// and error messages name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Host name, IP address, or Unix-socket directory.
    pub host: String,
    /// TCP port (for a socket, the number in its file name).
    pub port: u16,
    /// Database name.
    pub database: String,
    /// Role name.
    pub user: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}/{}",
            self.user,
            host_port(&self.host, self.port),
            self.database
        )
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('/') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A resolved connection: `--db` with libpq's environment variables,
/// password file and defaults applied. Cheap to clone. Its `Display`
/// (and `Debug`) never shows the password.
#[derive(Clone)]
pub struct ConnSpec {
    pub(crate) hosts: Vec<HostSpec>,
    pub(crate) user: String,
    pub(crate) dbname: String,
    /// From the connection string or PGPASSWORD.
    pub(crate) password: Option<Secret>,
    pub(crate) application_name: String,
    pub(crate) ssl_mode: SslMode,
    pub(crate) tls: TlsSettings,
    pub(crate) connect_timeout: Option<Duration>,
    /// Other settings parsed by tokio-postgres (options, keepalives,
    /// target_session_attrs, channel_binding, …); its hosts are unused.
    pub(crate) base: tokio_postgres::Config,
    pub(crate) warnings: Vec<String>,
}

impl fmt::Debug for ConnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnSpec")
            .field("target", &self.redacted())
            .field("application_name", &self.application_name)
            .field("sslmode", &self.ssl_mode)
            .field("tls", &self.tls)
            .field(
                "password",
                &match (
                    &self.password,
                    self.hosts.iter().find_map(|h| h.pgpass.as_ref()),
                ) {
                    (Some(s), _) | (None, Some(s)) => format!("<hidden, from {}>", s.from),
                    (None, None) => "<none>".to_string(),
                },
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl fmt::Display for ConnSpec {
    /// `user@host:port/db` (hosts joined by `,` when there are several).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts = self
            .hosts
            .iter()
            .map(|h| host_port(&h.host.as_display(), h.port))
            .collect::<Vec<_>>()
            .join(",");
        write!(f, "{}@{}/{}", self.user, hosts, self.dbname)
    }
}

impl ConnSpec {
    /// Resolves `--db` (a `postgresql://` URI, a `key=value` string, or a
    /// bare database name) like libpq: what the string leaves out comes
    /// from PGHOST, PGHOSTADDR, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
    /// PGPASSFILE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGAPPNAME,
    /// PGCONNECT_TIMEOUT, PGOPTIONS, PGTARGETSESSIONATTRS and
    /// PGCHANNELBINDING, then defaults (a socket in /var/run/postgresql if
    /// that directory exists else localhost, port 5432, the OS user, a
    /// database named like the user). Without a password, the password file
    /// is searched. Problems that libpq only warns about end up in
    /// [`warnings`](Self::warnings).
    pub fn resolve(db: Option<&str>) -> Result<ConnSpec, PgError> {
        let env = ProcessEnv;
        let system = System::current(&env);
        resolve_with(db, &env, &system)
    }

    /// The same connection with another application_name (e.g.
    /// `pgpilot-monitor` for the monitor's connection).
    pub fn with_application_name(&self, name: &str) -> ConnSpec {
        let mut spec = self.clone();
        spec.application_name = name.to_string();
        spec
    }

    /// The first host's target (what is connected to when it is up).
    pub fn target(&self) -> Target {
        match self.hosts.first() {
            Some(h) => self.target_of(h),
            None => Target {
                host: String::new(),
                port: DEFAULT_PORT,
                database: self.dbname.clone(),
                user: self.user.clone(),
            },
        }
    }

    pub(crate) fn target_of(&self, h: &HostSpec) -> Target {
        Target {
            host: h.host.as_display(),
            port: h.port,
            database: self.dbname.clone(),
            user: self.user.clone(),
        }
    }

    /// `user@host:port/db`, never with a password (same as `Display`).
    pub fn redacted(&self) -> String {
        self.to_string()
    }

    /// The application_name the server will see.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// The sslmode in effect.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The TLS files this spec uses, as libpq's environment variables for
    /// a client tool (pg_dump, pg_restore) that must reach the server the
    /// same way: PGSSLROOTCERT (a file, or `system`), PGSSLCERT and
    /// PGSSLKEY. Paths only, never a secret.
    pub fn tls_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        use crate::pg::tls::Roots;
        let mut env = Vec::new();
        match &self.tls.roots {
            Roots::None => {}
            Roots::File(path) => env.push(("PGSSLROOTCERT", path.clone().into_os_string())),
            Roots::System => env.push(("PGSSLROOTCERT", "system".into())),
        }
        if let Some((cert, key)) = &self.tls.client_cert {
            env.push(("PGSSLCERT", cert.clone().into_os_string()));
            env.push(("PGSSLKEY", key.clone().into_os_string()));
        }
        env
    }

    /// Whether a password will be sent (from any source).
    pub fn has_password(&self) -> bool {
        self.password.is_some() || self.hosts.iter().any(|h| h.pgpass.is_some())
    }

    /// Things libpq would have warned about (an unsafe password file, an
    /// ignored option, …), for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The password to send to `h`, and where it came from.
    pub(crate) fn password_for<'a>(&'a self, h: &'a HostSpec) -> Option<&'a Secret> {
        self.password.as_ref().or(h.pgpass.as_ref())
    }
}
