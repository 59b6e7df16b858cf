//! Connections to PostgreSQL, following libpq's conventions.
//!
//! [`ConnSpec::resolve`] turns `--db` (a URI or `key=value` string) plus
//! the PG* environment variables, `~/.pgpass` and libpq's defaults into a
//! connection spec; [`ConnSpec::connect`] opens a [`Connection`] with TLS
//! per `sslmode` (rustls), whose server notices arrive on a channel; and
//! [`ConnSpec::cancel_query`] sends the protocol's cancel request.
//!
//! Passwords never appear in anything this module displays, logs or
//! returns as an error; [`redact`] does the same for other modules' text.

mod error;
mod pgpass;

mod spec;
mod tls;

use std::borrow::Borrow;
use std::fmt;
use std::future::poll_fn;

use tokio::sync::mpsc;
use tokio_postgres::config::LoadBalanceHosts;
use tokio_postgres::{AsyncMessage, CancelToken, Client, Socket};

pub use crate::text::redact;
pub use error::{PgError, ServerRefusal};
pub use spec::{
    ConnSpec, DEFAULT_APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT, DEFAULT_SOCKET_DIR,
    Target,
};
pub use tls::SslMode;

use error::{Attempt, classify, describe};
use spec::{HostName, HostSpec, host_port};
use tls::{Handshake, PgTls, Roots, TlsSettings, TlsStream};

/// How serious a server message is, as PostgreSQL names it (not localized;
/// the protocol's `V` field). pgpilot's own notes use `Info` and `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Debug,
    Log,
    Info,
    Notice,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "DEBUG",
            Severity::Log => "LOG",
            Severity::Info => "INFO",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
        }
    }

    /// A warning or worse: shown as a warning, not as information.
    pub fn is_warning(self) -> bool {
        match self {
            Severity::Warning | Severity::Error | Severity::Fatal | Severity::Panic => true,
            Severity::Debug | Severity::Log | Severity::Info | Severity::Notice => false,
        }
    }

    /// The connection cannot go on after a message of this severity.
    pub fn ends_session(self) -> bool {
        matches!(self, Severity::Fatal | Severity::Panic)
    }

    fn from_driver(s: tokio_postgres::error::Severity) -> Severity {
        use tokio_postgres::error::Severity as D;
        match s {
            D::Panic => Severity::Panic,
            D::Fatal => Severity::Fatal,
            D::Error => Severity::Error,
            D::Warning => Severity::Warning,
            D::Notice => Severity::Notice,
            D::Debug => Severity::Debug,
            D::Info => Severity::Info,
            D::Log => Severity::Log,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message the server sent outside a query result: NOTICE, WARNING,
/// INFO… from `RAISE`, and (severity FATAL or ERROR) the reason the
/// connection ended, such as `pg_terminate_backend` (57P01) or a lost
/// network (08006).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    pub severity: Severity,
    /// SQLSTATE, e.g. `00000` for a plain RAISE NOTICE.
    pub code: String,
    /// The message text (passwords removed).
    pub message: String,
}

impl Notice {
    fn from_db(db: &tokio_postgres::error::DbError) -> Notice {
        Notice {
            // A server too old to send the unlocalized field: the worst
            // case that still lets the session go on.
            severity: db
                .parsed_severity()
                .map_or(Severity::Warning, Severity::from_driver),
            code: db.code().code().to_string(),
            message: redact(db.message()),
        }
    }
}

/// An open connection. Dropping `client` closes it.
pub struct Connection {
    /// The driver's client: run statements with it.
    pub client: Client,
    /// Server notices, in the order they arrived. Unbounded: drain it.
    pub notices: mpsc::UnboundedReceiver<Notice>,
    /// Token for [`ConnSpec::cancel_query`] (or use [`Connection::canceller`]).
    pub cancel: CancelToken,
    /// The host actually connected to (with several hosts, the one that
    /// answered).
    pub target: Target,
    /// Whether the connection is encrypted with TLS.
    pub tls: bool,
    /// The TLS setup, for cancel requests.
    tls_setup: PgTls,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.target.to_string())
            .field("tls", &self.tls)
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// A handle that cancels this connection's running statement, for a
    /// Ctrl-C handler or another task.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            token: self.cancel.clone(),
            tls: self.tls_setup.clone(),
            target: self.target.to_string(),
        }
    }
}

/// Sends the protocol's cancel request for one connection, with the TLS
/// mode it was opened with. Cheap to clone.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    tls: PgTls,
    target: String,
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canceller")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Canceller {
    /// Asks the server to cancel the statement the connection is running
    /// (a no-op on the server when it is idle). The statement then fails
    /// with SQLSTATE 57014.
    pub async fn cancel(&self) -> Result<(), PgError> {
        send_cancel(&self.token, self.tls.fresh(), &self.target).await
    }
}

async fn send_cancel(token: &CancelToken, tls: PgTls, target: &str) -> Result<(), PgError> {
    token.cancel_query(tls).await.map_err(|e| PgError::Cancel {
        target: target.to_string(),
        reason: describe(&e),
    })
}

/// How one attempt on one host failed.
struct Failure {
    error: PgError,
    handshake_failed: bool,
}

impl ConnSpec {
    /// Opens a connection, trying the hosts in order (or shuffled with
    /// `load_balance_hosts=random`), with TLS per sslmode: `disable` plain;
    /// `allow` plain, then TLS if the server refuses; `prefer` TLS when the
    /// server offers it (falling back to plain if the handshake fails);
    /// `require` TLS without certificate checks (unless a root certificate
    /// is configured, as in libpq); `verify-ca` the chain must lead to
    /// sslrootcert; `verify-full` also the host name. Unix sockets are
    /// always plain, as in libpq. A task drives the connection and
    /// forwards server notices to [`Connection::notices`].
    pub async fn connect(&self) -> Result<Connection, PgError> {
        let tls = self.tls_setup()?;
        let mut order: Vec<usize> = (0..self.hosts.len()).collect();
        if self.base.get_load_balance_hosts() == LoadBalanceHosts::Random {
            fastrand::shuffle(&mut order);
        }
        let mut errors = Vec::new();
        for i in order {
            let Some(host) = self.hosts.get(i) else {
                continue;
            };
            match self.connect_host(host, &tls).await {
                Ok(conn) => return Ok(conn),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Err(PgError::Config(
                "no host to connect to — set host= in --db or PGHOST".to_string(),
            )),
            1 => Err(errors.remove(0)),
            _ => Err(PgError::AllHostsFailed { errors }),
        }
    }

    /// Sends the protocol's cancel request for the connection `token` came
    /// from, over TLS when this spec's sslmode calls for it. Accepts the
    /// token by value or by reference.
    pub async fn cancel_query(&self, token: impl Borrow<CancelToken>) -> Result<(), PgError> {
        let tls = self.tls_setup()?;
        send_cancel(token.borrow(), tls, &self.redacted()).await
    }

    /// The TLS connector; with sslmode=disable (or only Unix sockets) one
    /// that is never used for a handshake, so no certificate is read.
    fn tls_setup(&self) -> Result<PgTls, PgError> {
        let any_tcp = self
            .hosts
            .iter()
            .any(|h| matches!(h.host, HostName::Tcp(_)) || h.hostaddr.is_some());
        let settings = if self.ssl_mode == SslMode::Disable || !any_tcp {
            TlsSettings {
                roots: Roots::None,
                check_name: false,
                client_cert: None,
            }
        } else {
            self.tls.clone()
        };
        Ok(PgTls::new(tls::client_config(&settings)?))
    }

    async fn connect_host(&self, host: &HostSpec, tls: &PgTls) -> Result<Connection, PgError> {
        use tokio_postgres::config::SslMode as Wire;
        let unix = matches!(host.host, HostName::Unix(_)) && host.hostaddr.is_none();
        if unix {
            return self
                .attempt(host, Wire::Disable, tls)
                .await
                .map_err(|f| f.error);
        }
        match self.ssl_mode {
            SslMode::Disable => self
                .attempt(host, Wire::Disable, tls)
                .await
                .map_err(|f| f.error),
            SslMode::Allow => match self.attempt(host, Wire::Disable, tls).await {
                Ok(c) => Ok(c),
                // The server refused the plain connection (pg_hba.conf
                // hostssl): try again with TLS, as libpq does.
                Err(Failure {
                    error: PgError::Server(_),
                    ..
                }) => self
                    .attempt(host, Wire::Require, tls)
                    .await
                    .map_err(|f| f.error),
                Err(f) => Err(f.error),
            },
            SslMode::Prefer => match self.attempt(host, Wire::Prefer, tls).await {
                Ok(c) => Ok(c),
                // The server offered TLS but the handshake failed: libpq
                // then tries without TLS.
                Err(f) if f.handshake_failed => self
                    .attempt(host, Wire::Disable, tls)
                    .await
                    .map_err(|f| f.error),
                Err(f) => Err(f.error),
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => self
                .attempt(host, Wire::Require, tls)
                .await
                .map_err(|f| f.error),
        }
    }

    /// One connection attempt to one host with one wire sslmode.
    async fn attempt(
        &self,
        host: &HostSpec,
        wire: tokio_postgres::config::SslMode,
        tls: &PgTls,
    ) -> Result<Connection, Failure> {
        let config = self.host_config(host, wire);
        let tls = tls.fresh();
        let target = self.target_of(host);
        let target_text = target.to_string();
        let secret = self.password_for(host);
        let (addr, host_text) = match (&host.host, host.hostaddr) {
            (_, Some(ip)) => (host_port(&ip.to_string(), host.port), ip.to_string()),
            (HostName::Tcp(name), None) => (host_port(name, host.port), name.clone()),
            (HostName::Unix(dir), None) => (
                dir.join(format!(".s.PGSQL.{}", host.port))
                    .display()
                    .to_string(),
                dir.display().to_string(),
            ),
        };
        let connecting = config.connect(tls.clone());
        let result = match self.connect_timeout {
            Some(limit) => match tokio::time::timeout(limit, connecting).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Failure {
                        error: PgError::Timeout {
                            target: target_text,
                            seconds: limit.as_secs(),
                        },
                        handshake_failed: false,
                    });
                }
            },
            None => connecting.await,
        };
        let handshake = tls.handshake();
        let (client, connection) = match result {
            Ok(pair) => pair,
            Err(e) => {
                let handshake_failed = matches!(handshake, Handshake::Failed { .. });
                let error = match io_kind(&e) {
                    Some(std::io::ErrorKind::TimedOut) => PgError::Timeout {
                        target: target_text,
                        seconds: self.connect_timeout.map_or(0, |t| t.as_secs()),
                    },
                    _ => classify(
                        &e,
                        &Attempt {
                            target: &target_text,
                            addr: &addr,
                            host: &host_text,
                            unix_socket: matches!(host.host, HostName::Unix(_))
                                && host.hostaddr.is_none(),
                            user: &self.user,
                            password_from: secret.map(|s| s.from.as_str()),
                            mode: self.ssl_mode,
                            handshake,
                        },
                    ),
                };
                return Err(Failure {
                    error,
                    handshake_failed,
                });
            }
        };
        let cancel = client.cancel_token();
        let (tx, notices) = mpsc::unbounded_channel();
        tokio::spawn(drive(connection, tx));
        Ok(Connection {
            client,
            notices,
            cancel,
            target,
            tls: handshake == Handshake::Established,
            tls_setup: tls,
        })
    }

    /// A tokio-postgres config for one host.
    fn host_config(
        &self,
        host: &HostSpec,
        wire: tokio_postgres::config::SslMode,
    ) -> tokio_postgres::Config {
        let base = &self.base;
        let mut c = tokio_postgres::Config::new();
        match &host.host {
            HostName::Tcp(name) => c.host(name),
            HostName::Unix(dir) => c.host_path(dir),
        };
        if let Some(ip) = host.hostaddr {
            c.hostaddr(ip);
        }
        c.port(host.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .ssl_mode(wire)
            .ssl_negotiation(base.get_ssl_negotiation())
            .keepalives(base.get_keepalives())
            .keepalives_idle(base.get_keepalives_idle())
            .target_session_attrs(base.get_target_session_attrs())
            .channel_binding(base.get_channel_binding());
        if let Some(secret) = self.password_for(host) {
            c.password(&secret.value);
        }
        if let Some(options) = base.get_options() {
            c.options(options);
        }
        if let Some(t) = self.connect_timeout {
            c.connect_timeout(t);
        }
        if let Some(t) = base.get_tcp_user_timeout() {
            c.tcp_user_timeout(*t);
        }
        if let Some(t) = base.get_keepalives_interval() {
            c.keepalives_interval(t);
        }
        if let Some(n) = base.get_keepalives_retries() {
            c.keepalives_retries(n);
        }
        c
    }
}

/// The io error kind behind a driver error, if any.
fn io_kind(e: &tokio_postgres::Error) -> Option<std::io::ErrorKind> {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
}

/// Drives the connection until it ends, forwarding notices; the reason a
/// connection ends abnormally is forwarded as a last notice.
async fn drive(
    mut connection: tokio_postgres::Connection<Socket, TlsStream>,
    tx: mpsc::UnboundedSender<Notice>,
) {
    loop {
        match poll_fn(|cx| connection.poll_message(cx)).await {
            None => break,
            Some(Ok(AsyncMessage::Notice(db))) => {
                let _ = tx.send(Notice::from_db(&db));
            }
            Some(Ok(_)) => {} // LISTEN/NOTIFY is not used
            Some(Err(e)) => {
                let notice = match e.as_db_error() {
                    Some(db) => Notice::from_db(db),
                    None => Notice {
                        severity: Severity::Fatal,
                        code: "08006".to_string(),
                        message: format!("connection lost: {}", describe(&e)),
                    },
                };
                let _ = tx.send(notice);
                break;
            }
        }
    }
}
