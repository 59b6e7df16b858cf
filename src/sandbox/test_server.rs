//! The server the integration tests use: `DATABASE_URL` when set (so CI can
//! supply one), else a fresh [`Sandbox`]. Test-only: compiled with the
//! `test-support` feature, which this crate's dev-dependency on itself turns
//! on for its tests and benches, so `pgpilot` as users build it carries no
//! code that drops databases on a server named by the environment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    Sandbox, SandboxError, create_database_at, percent_encode, quote_conninfo_value, quote_ident,
    simple_query,
};
use crate::text::redact;

/// A server for tests: `DATABASE_URL` when set, else a fresh [`Sandbox`].
#[derive(Debug)]
pub struct TestServer {
    inner: TestServerInner,
}

#[derive(Debug)]
enum TestServerInner {
    Sandbox(Sandbox),
    External { url: String },
}

/// Returns the server tests should use: the one named by `DATABASE_URL` if
/// set (so CI can supply a server), otherwise a new sandbox.
pub fn test_server() -> Result<TestServer, SandboxError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let url = url.trim().to_string();
            // Validate early so a typo fails with a clear message.
            url.parse::<tokio_postgres::Config>().map_err(|source| {
                SandboxError::InvalidConninfo {
                    conninfo: redact(&url),
                    source,
                }
            })?;
            Ok(TestServer {
                inner: TestServerInner::External { url },
            })
        }
        _ => Ok(TestServer {
            inner: TestServerInner::Sandbox(Sandbox::start()?),
        }),
    }
}

impl TestServer {
    /// Connection string for `dbname` on this server.
    pub fn conninfo(&self, dbname: &str) -> String {
        match &self.inner {
            TestServerInner::Sandbox(s) => s.conninfo(dbname),
            TestServerInner::External { url } => with_dbname(url, dbname),
        }
    }

    /// Creates database `name`; fails if it already exists.
    pub fn create_database(&self, name: &str) -> Result<(), SandboxError> {
        match &self.inner {
            TestServerInner::Sandbox(s) => s.create_database(name),
            TestServerInner::External { url } => create_database_at(url, name),
        }
    }

    /// Creates a database with a unique name starting with `prefix` and
    /// returns the name; safe on a shared `DATABASE_URL` server across runs.
    pub fn fresh_database(&self, prefix: &str) -> Result<String, SandboxError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.create_database(&name)?;
        Ok(name)
    }

    /// Drops database `name`, ending its sessions. Only for a database the
    /// caller created (a [`TestServer::fresh_database`] name): on a
    /// `DATABASE_URL` server, other databases are someone else's.
    pub fn drop_database(&self, name: &str) -> Result<(), SandboxError> {
        let admin = self.conninfo("postgres");
        simple_query(
            &admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
        )
        .map(|_| ())
    }

    /// The sandbox, when not using `DATABASE_URL`.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        match &self.inner {
            TestServerInner::Sandbox(s) => Some(s),
            TestServerInner::External { .. } => None,
        }
    }
}

/// Replaces the database of a URL (`postgres[ql]://.../db?...`) or, for a
/// key=value conninfo, appends `dbname=` (later keys override earlier ones).
fn with_dbname(conninfo: &str, dbname: &str) -> String {
    let scheme_end = ["postgresql://", "postgres://"]
        .iter()
        .find(|s| conninfo.starts_with(*s))
        .map(|s| s.len());
    let Some(scheme_end) = scheme_end else {
        return format!("{conninfo} dbname={}", quote_conninfo_value(dbname));
    };
    let (body, query) = match conninfo.find('?') {
        Some(q) => conninfo.split_at(q),
        None => (conninfo, ""),
    };
    let authority_end = body[scheme_end..]
        .find('/')
        .map_or(body.len(), |i| scheme_end + i);
    format!(
        "{}/{}{}",
        &body[..authority_end],
        percent_encode(dbname),
        query
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dbname_is_replaced() {
        assert_eq!(
            with_dbname("postgresql://u:p@h:5432/old?sslmode=disable", "new db"),
            "postgresql://u:p@h:5432/new%20db?sslmode=disable"
        );
        assert_eq!(with_dbname("postgres://h", "x"), "postgres://h/x");
        assert_eq!(with_dbname("postgres://h/", "x"), "postgres://h/x");
        assert_eq!(with_dbname("postgres://h?a=b", "x"), "postgres://h/x?a=b");
    }

    #[test]
    fn keyvalue_dbname_is_appended_and_wins() {
        let s = with_dbname("host=h dbname=old", "it's");
        let config: tokio_postgres::Config = s.parse().unwrap();
        assert_eq!(config.get_dbname(), Some("it's"));
    }
}
