//! Why a sandbox or test server could not be provided.

use std::io;

/// Why a sandbox or test server could not be provided. Each message says
/// what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No `initdb`/`pg_ctl` pair was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
         /usr/lib/postgresql/*/bin (searched: {searched}). Install them with \
         `apt-get install postgresql` (or run scripts/setup), or set DATABASE_URL \
         to use an existing server"
    )]
    BinariesNotFound {
        /// Directories that were searched.
        searched: String,
    },

    /// Running as root but there is no `postgres` account to drop to.
    #[error(
        "running as root, but there is no `postgres` user to run the server as \
         (PostgreSQL refuses to run as root). Install the `postgresql` package \
         (it creates the user), create the user with `useradd --system postgres`, \
         or run as an ordinary user"
    )]
    NoPostgresUser,

    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// A PostgreSQL tool exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line that failed.
        command: String,
        /// Exit status as text.
        status: String,
        /// Captured stdout and stderr.
        output: String,
    },

    /// The server did not come up.
    #[error(
        "PostgreSQL server failed to start after {attempts} attempt(s); \
         last lines of its log:\n{log_tail}"
    )]
    Start {
        /// How many ports were tried.
        attempts: usize,
        /// Tail of the server log (or why it could not be read).
        log_tail: String,
    },

    /// A `-c name=value` setting that could not be passed safely.
    #[error(
        "invalid server setting name {0:?}: use a PostgreSQL parameter name \
         (letters, digits, `_` and `.`)"
    )]
    InvalidSetting(String),

    /// `DATABASE_URL` (or a conninfo string) could not be parsed.
    #[error(
        "cannot parse connection string {conninfo:?}: {source}. Use a URL like \
         postgresql://user@host:5432/dbname or unset DATABASE_URL to use a sandbox"
    )]
    InvalidConninfo {
        /// The offending string, password removed.
        conninfo: String,
        /// Parser error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// Could not connect to the server.
    #[error(
        "could not connect to {conninfo}: {source}. Check that the server is \
         running and accepts this user (DATABASE_URL, or the sandbox log)"
    )]
    Connect {
        /// Where we tried to connect, password removed.
        conninfo: String,
        /// Driver error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// A statement failed.
    #[error("`{sql}` failed: {detail}")]
    Query {
        /// The statement.
        sql: String,
        /// Server message, including detail and hint when present.
        detail: String,
    },

    /// The helper thread that talks to the server could not run.
    #[error("database helper thread failed: {0}")]
    Runtime(String),
}

impl SandboxError {
    pub(super) fn io(context: impl Into<String>, source: io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}
