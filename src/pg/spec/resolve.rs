//! Resolving `--db` plus libpq's environment variables and defaults into a
//! [`ConnSpec`].

use std::collections::HashSet;
use std::ffi::CStr;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::pg::pgpass;
use crate::pg::tls::{Roots, SslMode, TlsSettings};
use crate::pg::{PgError, redact};

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

/// Reads environment variables; a seam so unit tests need not touch the
/// process environment.
pub(crate) trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The facts about this machine that defaults depend on.
pub(crate) struct System {
    pub os_user: Option<String>,
    pub home: Option<PathBuf>,
    pub socket_dir_exists: bool,
}

impl System {
    fn current(env: &dyn Env) -> System {
        let pw = passwd_entry();
        System {
            os_user: pw
                .as_ref()
                .map(|(name, _)| name.clone())
                .or_else(|| env.var("USER").or_else(|| env.var("LOGNAME"))),
            home: env
                .var("HOME")
                .map(PathBuf::from)
                .or_else(|| pw.map(|(_, home)| home)),
            socket_dir_exists: Path::new(DEFAULT_SOCKET_DIR).is_dir(),
        }
    }
}

/// The effective user's name and home directory from the password database.
fn passwd_entry() -> Option<(String, PathBuf)> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for an out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: geteuid cannot fail; all pointers are valid for the call and
    // buf.len() is the buffer's real size.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name (and pw_dir when non-null)
    // point to NUL-terminated strings inside `buf`, which is still alive.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    let home = if pwd.pw_dir.is_null() {
        PathBuf::new()
    } else {
        // SAFETY: as above.
        PathBuf::from(
            unsafe { CStr::from_ptr(pwd.pw_dir) }
                .to_string_lossy()
                .into_owned(),
        )
    };
    Some((name, home))
}

/// libpq settings tokio-postgres does not parse, taken out of the string.
#[derive(Default)]
struct Extras {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    passfile: Option<String>,
    fallback_application_name: Option<String>,
    /// `ssl=true` in a URI (JDBC style) means sslmode=require.
    ssl_true: bool,
    warnings: Vec<String>,
}

impl Extras {
    /// Takes `key` if it is ours; false when it should go to tokio-postgres.
    fn take(&mut self, key: &str, value: String) -> Result<bool, PgError> {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            "sslcert" => self.sslcert = Some(value),
            "sslkey" => self.sslkey = Some(value),
            "passfile" => self.passfile = Some(value),
            "fallback_application_name" => self.fallback_application_name = Some(value),
            "ssl" => self.ssl_true = value == "true" || value == "1",
            "service" => {
                return Err(PgError::InvalidConnString {
                    reason: "service= (pg_service.conf) is not supported; give host, port and \
                             dbname instead"
                        .to_string(),
                });
            }
            "gssencmode" if value == "require" => {
                return Err(PgError::InvalidConnString {
                    reason: "gssencmode=require is not supported (pgpilot has no GSSAPI \
                             encryption); use TLS with sslmode=require or verify-full"
                        .to_string(),
                });
            }
            "gssencmode"
            | "sslcompression"
            | "sslsni"
            | "sslcrl"
            | "sslcrldir"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "krbsrvname"
            | "gsslib"
            | "requirepeer"
            | "client_encoding"
            | "replication"
            | "sslpassword" => {
                self.warnings.push(format!(
                    "connection option {key} is not supported and was ignored"
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// What the connection string said, before fallbacks.
struct Parsed {
    config: tokio_postgres::Config,
    extras: Extras,
    /// Keys given explicitly (for settings whose getters have defaults).
    present: HashSet<String>,
    /// Whether any port was given (a URI host without a port gets 5432
    /// from tokio-postgres, but libpq would then use PGPORT).
    port_given: bool,
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

/// [`ConnSpec::resolve`] with the environment and machine facts given.
pub(crate) fn resolve_with(
    db: Option<&str>,
    env: &dyn Env,
    system: &System,
) -> Result<ConnSpec, PgError> {
    let db = db.map(str::trim).unwrap_or("");
    let parsed = parse(db)?;
    let Parsed {
        config,
        mut extras,
        present,
        port_given,
    } = parsed;
    let mut warnings = std::mem::take(&mut extras.warnings);
    if env.var("PGSERVICE").is_some() {
        warnings.push("PGSERVICE is set, but pgpilot does not read pg_service.conf".to_string());
    }

    // Hosts and host addresses.
    let mut names: Vec<HostName> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => HostName::Tcp(name.clone()),
            Host::Unix(path) => HostName::Unix(path.clone()),
        })
        .collect();
    let mut addrs: Vec<IpAddr> = config.get_hostaddrs().to_vec();
    if names.is_empty()
        && let Some(v) = env.var("PGHOST")
    {
        names = v.split(',').map(|h| host_name(h.trim(), system)).collect();
    }
    if addrs.is_empty()
        && let Some(v) = env.var("PGHOSTADDR")
    {
        addrs = v
            .split(',')
            .map(|a| {
                a.trim().parse().map_err(|_| {
                    PgError::Config(format!(
                        "PGHOSTADDR={v} is not a list of IP addresses — unset it or give \
                         addresses like 10.0.0.5"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if names.is_empty() && addrs.is_empty() {
        names.push(host_name("", system));
    }
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(PgError::Config(format!(
            "{} hosts but {} hostaddrs were given — give one hostaddr per host, or none",
            names.len(),
            addrs.len()
        )));
    }
    let count = names.len().max(addrs.len());

    // Ports.
    let mut ports: Vec<u16> = if port_given {
        config.get_ports().to_vec()
    } else {
        Vec::new()
    };
    if ports.is_empty()
        && let Some(v) = env.var("PGPORT")
    {
        ports = v
            .split(',')
            .map(|p| {
                let p = p.trim();
                if p.is_empty() {
                    return Ok(DEFAULT_PORT);
                }
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    PgError::Config(format!(
                        "PGPORT={v} is not a port number — set it to a number like 5432, or \
                         unset it"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if ports.is_empty() {
        ports.push(DEFAULT_PORT);
    }
    if ports.len() != 1 && ports.len() != count {
        return Err(PgError::Config(format!(
            "{} ports for {count} hosts — give one port, or one per host",
            ports.len()
        )));
    }

    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| env.var("PGUSER"))
        .or_else(|| system.os_user.clone())
        .ok_or_else(|| {
            PgError::Config(
                "cannot tell which user to connect as: the OS user is unknown — set PGUSER or \
                 user= in --db"
                    .to_string(),
            )
        })?;
    let dbname = config
        .get_dbname()
        .map(str::to_string)
        .or_else(|| env.var("PGDATABASE"))
        .unwrap_or_else(|| user.clone());

    let password = match config.get_password() {
        Some(p) if !p.is_empty() => Some(Secret {
            value: p.to_vec(),
            from: "the connection string".to_string(),
        }),
        _ => env.var("PGPASSWORD").map(|p| Secret {
            value: p.into_bytes(),
            from: "PGPASSWORD".to_string(),
        }),
    };

    let application_name = config
        .get_application_name()
        .map(str::to_string)
        .or_else(|| env.var("PGAPPNAME"))
        .or(extras.fallback_application_name.take())
        .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_string());

    // TLS.
    let sslrootcert = extras.sslrootcert.or_else(|| env.var("PGSSLROOTCERT"));
    let system_roots = sslrootcert.as_deref() == Some("system");
    let ssl_mode = match extras.sslmode.or_else(|| env.var("PGSSLMODE")) {
        Some(m) => m.parse::<SslMode>().map_err(PgError::Config)?,
        None if extras.ssl_true => SslMode::Require,
        // libpq: sslrootcert=system makes verify-full the default.
        None if system_roots => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if system_roots && ssl_mode != SslMode::VerifyFull {
        return Err(PgError::Config(format!(
            "sslrootcert=system needs sslmode=verify-full, not {ssl_mode} — drop sslmode or set \
             it to verify-full"
        )));
    }
    let dot_postgresql = system.home.as_ref().map(|h| h.join(".postgresql"));
    let roots = match sslrootcert {
        Some(s) if s == "system" => Roots::System,
        Some(path) => Roots::File(expand_home(&path, system)),
        None => {
            let default = dot_postgresql.as_ref().map(|d| d.join("root.crt"));
            match default {
                Some(path) if path.is_file() => Roots::File(path),
                Some(path) if ssl_mode.verifies() => {
                    return Err(PgError::Config(format!(
                        "sslmode={ssl_mode} needs the CA certificate that signed the server's \
                         certificate, and root certificate file {} does not exist — set \
                         sslrootcert (or PGSSLROOTCERT) to it, use sslrootcert=system for the \
                         system's trusted CAs, or use sslmode=require",
                        path.display()
                    )));
                }
                None if ssl_mode.verifies() => {
                    return Err(PgError::Config(format!(
                        "sslmode={ssl_mode} needs sslrootcert (or PGSSLROOTCERT) naming the CA \
                         certificate that signed the server's certificate"
                    )));
                }
                _ => Roots::None,
            }
        }
    };
    let sslcert = extras
        .sslcert
        .or_else(|| env.var("PGSSLCERT"))
        .map(|p| expand_home(&p, system))
        .or_else(|| {
            dot_postgresql
                .as_ref()
                .map(|d| d.join("postgresql.crt"))
                .filter(|p| p.is_file())
        });
    let sslkey = extras
        .sslkey
        .or_else(|| env.var("PGSSLKEY"))
        .map(|p| expand_home(&p, system))
        .or_else(|| {
            dot_postgresql
                .as_ref()
                .map(|d| d.join("postgresql.key"))
                .filter(|p| p.is_file())
        });
    let client_cert = match (sslcert, sslkey) {
        (Some(c), Some(k)) if c.is_file() => Some((c, k)),
        (Some(c), None) if c.is_file() => {
            return Err(PgError::Config(format!(
                "client certificate {} given without its key — set sslkey (or PGSSLKEY)",
                c.display()
            )));
        }
        _ => None,
    };
    let tls = TlsSettings {
        check_name: ssl_mode == SslMode::VerifyFull,
        roots,
        client_cert,
    };

    let connect_timeout = match config.get_connect_timeout() {
        Some(t) => Some(*t),
        None if present.contains("connect_timeout") => None, // 0: wait forever
        None => match env.var("PGCONNECT_TIMEOUT") {
            Some(v) => {
                let secs: i64 = v.trim().parse().map_err(|_| {
                    PgError::Config(format!(
                        "PGCONNECT_TIMEOUT={v} is not a number of seconds — set it to e.g. 10, \
                         or unset it"
                    ))
                })?;
                // libpq: 0 or less waits forever; 1 is raised to 2.
                (secs > 0).then(|| Duration::from_secs(secs.max(2).unsigned_abs()))
            }
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        },
    };

    let mut base = config;
    if base.get_options().is_none()
        && let Some(o) = env.var("PGOPTIONS")
    {
        base.options(o);
    }
    if !present.contains("target_session_attrs")
        && let Some(v) = env.var("PGTARGETSESSIONATTRS")
    {
        base.target_session_attrs(match v.as_str() {
            "any" => tokio_postgres::config::TargetSessionAttrs::Any,
            "read-write" => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
            "read-only" => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
            _ => {
                return Err(PgError::Config(format!(
                    "PGTARGETSESSIONATTRS={v} is not supported — use any, read-write or read-only"
                )));
            }
        });
    }
    if !present.contains("channel_binding")
        && let Some(v) = env.var("PGCHANNELBINDING")
    {
        base.channel_binding(match v.as_str() {
            "disable" => tokio_postgres::config::ChannelBinding::Disable,
            "prefer" => tokio_postgres::config::ChannelBinding::Prefer,
            "require" => tokio_postgres::config::ChannelBinding::Require,
            _ => {
                return Err(PgError::Config(format!(
                    "PGCHANNELBINDING={v} is not valid — use disable, prefer or require"
                )));
            }
        });
    }

    let mut hosts = Vec::with_capacity(count);
    for i in 0..count {
        let hostaddr = addrs.get(i).copied();
        let host = match names.get(i) {
            Some(h) => h.clone(),
            // hostaddr alone: the address is also the name TLS checks.
            None => HostName::Tcp(hostaddr.map(|a| a.to_string()).unwrap_or_default()),
        };
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT);
        hosts.push(HostSpec {
            host,
            hostaddr,
            port,
            pgpass: None,
        });
    }

    // The password file, when no password was given.
    if password.is_none() {
        let passfile = extras
            .passfile
            .or_else(|| env.var("PGPASSFILE"))
            .map(|p| expand_home(&p, system))
            .or_else(|| system.home.as_ref().map(|h| h.join(".pgpass")));
        if let Some(path) = passfile {
            for h in &mut hosts {
                let host = match (&h.host, h.hostaddr) {
                    (HostName::Unix(p), _) if p == Path::new(DEFAULT_SOCKET_DIR) => {
                        "localhost".to_string()
                    }
                    (HostName::Tcp(name), Some(addr)) if name.is_empty() => addr.to_string(),
                    (name, _) => name.as_display(),
                };
                let port = h.port.to_string();
                let key = pgpass::Key {
                    host: &host,
                    port: &port,
                    database: &dbname,
                    user: &user,
                };
                match pgpass::lookup(&path, key) {
                    Ok(Some(found)) => {
                        h.pgpass = Some(Secret {
                            value: found.password.into_bytes(),
                            from: format!("{} line {}", path.display(), found.line),
                        });
                    }
                    Ok(None) => {}
                    Err(warning) => {
                        if !warnings.contains(&warning) {
                            warnings.push(warning);
                        }
                    }
                }
            }
        }
    }

    Ok(ConnSpec {
        hosts,
        user,
        dbname,
        password,
        application_name,
        ssl_mode,
        tls,
        connect_timeout,
        base,
        warnings,
    })
}

/// A PGHOST entry: a directory (Unix socket) or a host name; empty means
/// the default.
fn host_name(h: &str, system: &System) -> HostName {
    if h.is_empty() {
        if system.socket_dir_exists {
            HostName::Unix(PathBuf::from(DEFAULT_SOCKET_DIR))
        } else {
            HostName::Tcp("localhost".to_string())
        }
    } else if h.starts_with('/') {
        HostName::Unix(PathBuf::from(h))
    } else {
        HostName::Tcp(h.to_string())
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str, system: &System) -> PathBuf {
    match (path.strip_prefix("~/"), &system.home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// Parses `--db`.
fn parse(db: &str) -> Result<Parsed, PgError> {
    if db.is_empty() {
        return Ok(Parsed {
            config: tokio_postgres::Config::new(),
            extras: Extras::default(),
            present: HashSet::new(),
            port_given: false,
        });
    }
    if db.starts_with("postgresql://") || db.starts_with("postgres://") {
        return parse_uri(db);
    }
    if !db.contains('=') && !db.chars().any(char::is_whitespace) {
        // Like `psql -d NAME`: a bare word is a database name.
        let mut config = tokio_postgres::Config::new();
        config.dbname(db);
        return Ok(Parsed {
            config,
            extras: Extras::default(),
            present: HashSet::from(["dbname".to_string()]),
            port_given: false,
        });
    }
    parse_key_value(db)
}

fn invalid(reason: impl Into<String>) -> PgError {
    PgError::InvalidConnString {
        reason: redact(&reason.into()),
    }
}

/// tokio-postgres' parse error, with its cause (it never holds a value).
fn tokio_parse_error(e: &tokio_postgres::Error) -> PgError {
    invalid(crate::pg::error::describe(e).replace("invalid connection string: ", ""))
}

/// libpq's key=value syntax: `key = value`, values optionally in single
/// quotes, backslash escapes. Our keys are taken out; the rest is handed to
/// tokio-postgres, re-quoted.
fn parse_key_value(db: &str) -> Result<Parsed, PgError> {
    let mut extras = Extras::default();
    let mut present = HashSet::new();
    let mut rest_params: Vec<(String, String)> = Vec::new();
    let mut chars = db.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(invalid(format!("missing \"=\" after \"{key}\"")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(invalid(format!("unterminated quoted value of \"{key}\"")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if value.is_empty() {
            continue; // libpq: an empty value is the same as none
        }
        present.insert(key.clone());
        if !extras.take(&key, value.clone())? {
            rest_params.push((key, value));
        }
    }
    let rebuilt = rest_params
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ");
    let config: tokio_postgres::Config = if rebuilt.is_empty() {
        tokio_postgres::Config::new()
    } else {
        rebuilt.parse().map_err(|e| tokio_parse_error(&e))?
    };
    let port_given = present.contains("port");
    Ok(Parsed {
        config,
        extras,
        present,
        port_given,
    })
}

/// A `postgres[ql]://` URI: our query parameters are taken out, the rest
/// is parsed by tokio-postgres.
fn parse_uri(db: &str) -> Result<Parsed, PgError> {
    let scheme_len = if db.starts_with("postgresql://") {
        "postgresql://".len()
    } else {
        "postgres://".len()
    };
    let body = &db[scheme_len..];
    // tokio-postgres takes everything up to the first '@' as user info.
    let after_creds = body.find('@').map_or(0, |i| i + 1);
    let (head, query) = match body[after_creds..].find('?') {
        Some(q) => body.split_at(after_creds + q),
        None => (body, ""),
    };
    let authority_end = head[after_creds..]
        .find('/')
        .map_or(head.len(), |i| after_creds + i);
    let authority = &head[after_creds..authority_end];
    let mut port_given = authority.split(',').any(|chunk| {
        let after_host = if chunk.starts_with('[') {
            chunk.find(']').map_or("", |i| &chunk[i + 1..])
        } else {
            chunk
        };
        after_host.contains(':')
    });

    let mut extras = Extras::default();
    let mut present = HashSet::new();
    let mut kept: Vec<&str> = Vec::new();
    for param in query.strip_prefix('?').unwrap_or("").split('&') {
        if param.is_empty() {
            continue;
        }
        let Some((raw_key, raw_value)) = param.split_once('=') else {
            return Err(invalid(format!(
                "URI parameter \"{}\" has no \"=\"",
                percent_decode(param).unwrap_or_default()
            )));
        };
        let key = percent_decode(raw_key)?;
        let value = percent_decode(raw_value)?;
        if value.is_empty() {
            continue;
        }
        present.insert(key.clone());
        if key == "port" {
            port_given = true;
        }
        if !extras.take(&key, value)? {
            kept.push(param);
        }
    }
    let mut rebuilt = String::with_capacity(db.len());
    rebuilt.push_str(&db[..scheme_len]);
    rebuilt.push_str(head);
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    let config: tokio_postgres::Config = rebuilt.parse().map_err(|e| tokio_parse_error(&e))?;
    Ok(Parsed {
        config,
        extras,
        present,
        port_given,
    })
}

fn percent_decode(s: &str) -> Result<String, PgError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("bad percent-encoding in the URI"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("percent-encoded URI text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_string())
        }
    }

    fn sys() -> System {
        System {
            os_user: Some("osuser".into()),
            home: Some(PathBuf::from("/nonexistent-home")),
            socket_dir_exists: false,
        }
    }

    fn resolve(db: Option<&str>, env: &[(&'static str, &'static str)]) -> ConnSpec {
        resolve_with(db, &MapEnv(env.iter().copied().collect()), &sys()).unwrap()
    }

    #[test]
    fn defaults() {
        let s = resolve(None, &[]);
        assert_eq!(
            s.target(),
            Target {
                host: "localhost".into(),
                port: 5432,
                database: "osuser".into(),
                user: "osuser".into()
            }
        );
        assert_eq!(s.application_name(), "pgpilot");
        assert_eq!(s.ssl_mode(), SslMode::Prefer);
        assert_eq!(s.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        let with_socket = resolve_with(
            None,
            &MapEnv(HashMap::new()),
            &System {
                socket_dir_exists: true,
                ..sys()
            },
        )
        .unwrap();
        assert_eq!(with_socket.target().host, DEFAULT_SOCKET_DIR);
    }

    #[test]
    fn env_fills_gaps_only() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "1"),
        ];
        let s = resolve(None, &env);
        assert_eq!(s.to_string(), "envuser@envhost:6000/envdb");
        assert_eq!(s.ssl_mode(), SslMode::Require);
        assert_eq!(s.application_name(), "envapp");
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));

        let s = resolve(Some("postgresql://u@h/d?sslmode=disable"), &env);
        assert_eq!(
            s.to_string(),
            "u@h:6000/d",
            "a URI without port uses PGPORT"
        );
        assert_eq!(s.ssl_mode(), SslMode::Disable);
        let s = resolve(Some("postgresql://u@h:7000/d"), &env);
        assert_eq!(s.target().port, 7000);
        let s = resolve(Some("host=h dbname=d application_name=x"), &env);
        assert_eq!(s.to_string(), "envuser@h:6000/d");
        assert_eq!(s.application_name(), "x");
    }

    #[test]
    fn our_options_are_taken_out() {
        let s = resolve(
            Some(
                "postgresql://u:p%40ss@db.example:5433/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a%20b",
            ),
            &[],
        );
        assert_eq!(s.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(s.tls.roots, Roots::File(PathBuf::from("/ca.pem")));
        assert!(s.tls.check_name);
        assert_eq!(s.application_name(), "a b");
        assert_eq!(
            s.password.as_ref().map(|p| p.value.clone()),
            Some(b"p@ss".to_vec())
        );
        assert_eq!(s.to_string(), "u@db.example:5433/app");

        let s = resolve(
            Some("host=h sslmode = verify-ca sslrootcert='/my ca.pem' password='a\\'b c'"),
            &[],
        );
        assert_eq!(s.ssl_mode(), SslMode::VerifyCa);
        assert!(!s.tls.check_name);
        assert_eq!(s.tls.roots, Roots::File(PathBuf::from("/my ca.pem")));
        assert_eq!(
            s.password.as_ref().map(|p| p.value.clone()),
            Some(b"a'b c".to_vec())
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("a'b c"), "{debug}");
    }

    #[test]
    fn multiple_hosts_and_sockets() {
        let s = resolve(Some("host=/tmp,h2 port=1,2 dbname=d user=u"), &[]);
        assert_eq!(s.to_string(), "u@/tmp:1,h2:2/d");
        assert_eq!(s.hosts[0].host, HostName::Unix(PathBuf::from("/tmp")));
        let s = resolve(Some("postgresql://u@[::1]:5000,h2/d"), &[]);
        assert_eq!(s.to_string(), "u@[::1]:5000,h2:5432/d");
        assert!(
            resolve_with(Some("host=a,b,c port=1,2"), &MapEnv(HashMap::new()), &sys()).is_err()
        );
    }

    #[test]
    fn bare_word_is_a_database() {
        assert_eq!(resolve(Some("app"), &[]).target().database, "app");
    }

    #[test]
    fn errors_name_the_problem_without_values() {
        let e = |db: &str| {
            resolve_with(Some(db), &MapEnv(HashMap::new()), &sys())
                .unwrap_err()
                .to_string()
        };
        assert!(e("host=h sslmode=bogus").contains("invalid sslmode"));
        assert!(e("host=h nonsense=1").contains("nonsense"));
        let msg = e("host=h password='s3cret");
        assert!(
            msg.contains("unterminated") && !msg.contains("s3cret"),
            "{msg}"
        );
        assert!(e("host=h sslmode=verify-full").contains("root.crt"));
        assert!(e("host=h sslrootcert=system sslmode=require").contains("verify-full"));
        assert!(e("host=h service=x").contains("pg_service"));
    }

    #[test]
    fn system_roots_default_to_verify_full() {
        let s = resolve(Some("host=h sslrootcert=system"), &[]);
        assert_eq!(s.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(s.tls.roots, Roots::System);
    }
}
