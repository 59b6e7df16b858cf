//! Connection errors that say what to do. None of them ever holds a
//! password: targets are shown as `user@host:port/db` and every free text
//! taken from elsewhere goes through [`redact`](super::redact).

use std::error::Error as _;
use std::io;

/// Why connecting (or cancelling) failed. Each message names the target
/// and says what the user can do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// `--db` could not be parsed.
    #[error(
        "invalid connection string: {reason} — use a URI like \
         postgresql://user@host:5432/dbname?sslmode=require or key=value pairs like \
         \"host=db1 port=5432 dbname=app user=me\""
    )]
    InvalidConnString {
        /// What is wrong (never the password).
        reason: String,
    },

    /// A setting from the environment, a file or the system is unusable.
    #[error("{0}")]
    Config(String),

    /// Nothing listens at the TCP address.
    #[error("connection refused at {addr} — is the server running? check --db or PGHOST/PGPORT")]
    Refused {
        /// `host:port`.
        addr: String,
    },

    /// No server socket in the Unix-socket directory.
    #[error(
        "no server at socket {socket} — is the server running? check --db or PGHOST/PGPORT \
         (a directory in host= means a Unix socket; use host=localhost for TCP)"
    )]
    NoSocket {
        /// Path of the socket file.
        socket: String,
    },

    /// The host name does not resolve.
    #[error("cannot resolve host {host} ({reason}) — check the host in --db or PGHOST")]
    UnknownHost {
        /// The host name.
        host: String,
        /// Resolver message.
        reason: String,
    },

    /// Connecting took longer than connect_timeout.
    #[error(
        "timed out after {seconds}s connecting to {target} — check the host and port, a \
         firewall, or raise connect_timeout (PGCONNECT_TIMEOUT)"
    )]
    Timeout {
        /// `user@host:port/db`.
        target: String,
        /// The timeout.
        seconds: u64,
    },

    /// The password was wrong.
    #[error(
        "password authentication failed for user {user} at {target} — check PGPASSWORD or \
         ~/.pgpass (the password used came from {password_from})"
    )]
    AuthFailed {
        /// The role name.
        user: String,
        /// `user@host:port/db`.
        target: String,
        /// Where the password came from, e.g. `PGPASSWORD` or `/home/me/.pgpass line 3`.
        password_from: String,
        /// SQLSTATE (28P01).
        code: String,
    },

    /// The server wants a password and none was given.
    #[error(
        "the server at {target} asks for a password for user {user} but none was given — set \
         PGPASSWORD, add a line to ~/.pgpass (or the file in PGPASSFILE), or put it in --db"
    )]
    PasswordMissing {
        /// The role name.
        user: String,
        /// `user@host:port/db`.
        target: String,
    },

    /// TLS was required but the server does not offer it.
    #[error(
        "the server at {target} does not accept TLS connections, but sslmode={mode} — turn on \
         ssl in the server's postgresql.conf, or use sslmode=prefer or disable"
    )]
    TlsUnsupported {
        /// `user@host:port/db`.
        target: String,
        /// The sslmode asked for.
        mode: String,
    },

    /// The TLS handshake failed (certificate not trusted, wrong name, …).
    #[error("TLS handshake with {target} failed (sslmode={mode}): {reason} — {advice}")]
    Tls {
        /// `user@host:port/db`.
        target: String,
        /// The sslmode used.
        mode: String,
        /// What went wrong.
        reason: String,
        /// What to do.
        advice: String,
    },

    /// The server refused the connection with an error (pg_hba.conf, a
    /// missing database or role, no free slots, …).
    #[error("{} ({}) — {}", .0.message, .0.target, .0.advice)]
    Server(Box<ServerRefusal>),

    /// Any other failure while connecting.
    #[error("could not connect to {target}: {reason} — check --db or PGHOST/PGPORT")]
    Connect {
        /// `user@host:port/db`.
        target: String,
        /// What went wrong.
        reason: String,
    },

    /// Every host of a multi-host connection string failed.
    #[error("could not connect to any of the {} hosts: {}", .errors.len(), join(.errors))]
    AllHostsFailed {
        /// One error per host, in the order tried.
        errors: Vec<PgError>,
    },

    /// The cancel request could not be delivered.
    #[error(
        "could not send the cancel request to {target}: {reason} — the statement may still be \
         running; check pg_stat_activity"
    )]
    Cancel {
        /// `user@host:port/db`.
        target: String,
        /// What went wrong.
        reason: String,
    },
}

/// The server's error when it refused a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRefusal {
    /// `user@host:port/db`.
    pub target: String,
    /// SQLSTATE.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The server's detail, if any.
    pub detail: Option<String>,
    /// The server's hint, if any.
    pub hint: Option<String>,
    /// What to do.
    pub advice: String,
}

fn join(errors: &[PgError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PgError {
    /// The SQLSTATE the server sent, when the server refused us.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::AuthFailed { code, .. } => Some(code),
            PgError::Server(refusal) => Some(&refusal.code),
            PgError::AllHostsFailed { errors } => errors.last().and_then(PgError::sqlstate),
            _ => None,
        }
    }
}

/// What the attempt was, for turning a driver error into a [`PgError`].
pub(crate) struct Attempt<'a> {
    /// `user@host:port/db`.
    pub target: &'a str,
    /// `host:port` (TCP) or the socket file path.
    pub addr: &'a str,
    /// The host name (for resolution errors).
    pub host: &'a str,
    pub unix_socket: bool,
    pub user: &'a str,
    /// Where the password came from, if one was sent.
    pub password_from: Option<&'a str>,
    pub mode: super::SslMode,
    /// How the TLS handshake went.
    pub handshake: super::tls::Handshake,
}

/// The driver's error with its causes, redacted.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    super::redact(&text)
}

/// Classifies a connection error.
pub(crate) fn classify(e: &tokio_postgres::Error, at: &Attempt<'_>) -> PgError {
    let target = at.target.to_string();
    if let Some(db) = e.as_db_error() {
        let code = db.code().code().to_string();
        let message = super::redact(db.message());
        if code == "28P01" {
            return PgError::AuthFailed {
                user: at.user.to_string(),
                target,
                password_from: at.password_from.unwrap_or("nowhere").to_string(),
                code,
            };
        }
        let advice = server_advice(&code, &message, at);
        return PgError::Server(Box::new(ServerRefusal {
            target,
            code,
            message,
            detail: db.detail().map(super::redact),
            hint: db.hint().map(super::redact),
            advice,
        }));
    }
    if let super::tls::Handshake::Failed { reason, problem } = &at.handshake {
        return PgError::Tls {
            target,
            mode: at.mode.to_string(),
            advice: super::tls::handshake_advice(*problem, at.mode).to_string(),
            reason: super::redact(reason),
        };
    }
    let cause = e.source().map(ToString::to_string).unwrap_or_default();
    if cause == "password missing" {
        return PgError::PasswordMissing {
            user: at.user.to_string(),
            target,
        };
    }
    if cause == "server does not support TLS" {
        return PgError::TlsUnsupported {
            target,
            mode: at.mode.to_string(),
        };
    }
    if let Some(io) = e.source().and_then(|s| s.downcast_ref::<io::Error>()) {
        match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                return PgError::Refused {
                    addr: at.addr.to_string(),
                };
            }
            io::ErrorKind::NotFound if at.unix_socket => {
                return PgError::NoSocket {
                    socket: at.addr.to_string(),
                };
            }
            _ => {}
        }
        let text = io.to_string();
        if !at.unix_socket
            && (text.contains("lookup address")
                || text.contains("Name or service not known")
                || text.contains("nodename nor servname"))
        {
            return PgError::UnknownHost {
                host: at.host.to_string(),
                reason: super::redact(&text),
            };
        }
    }
    PgError::Connect {
        target,
        reason: describe(e),
    }
}

fn server_advice(code: &str, message: &str, at: &Attempt<'_>) -> String {
    match code {
        "28000" if message.contains("pg_hba.conf") => {
            "the server's pg_hba.conf has no line letting this user connect to this database \
             from here: ask its administrator to add one (or, if only hostssl lines match, use \
             sslmode=require)"
                .to_string()
        }
        "28000" if message.contains("role") => "check the user in --db or PGUSER".to_string(),
        "28000" => "check the user and the server's pg_hba.conf".to_string(),
        "3D000" => "check the database name in --db or PGDATABASE".to_string(),
        "53300" => "the server has no free connection slots: try again later, or ask for \
                    max_connections to be raised"
            .to_string(),
        "57P03" => "the server is starting up, shutting down or in recovery: wait and try again"
            .to_string(),
        "42501" => format!(
            "the role {} may not connect to this database: GRANT CONNECT ON DATABASE … TO it",
            at.user
        ),
        _ => "check --db and the server log".to_string(),
    }
}
