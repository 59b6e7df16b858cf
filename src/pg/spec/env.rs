//! What the environment and this machine supply to the defaults: PG*
//! variables (behind a seam, so unit tests need not touch the process
//! environment), the OS user and home directory, the default socket folder.

use std::path::{Path, PathBuf};

use super::{DEFAULT_SOCKET_DIR, HostName};

/// Reads environment variables; a seam so unit tests need not touch the
/// process environment.
pub(crate) trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub(super) struct ProcessEnv;

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
    pub(super) fn current(env: &dyn Env) -> System {
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

/// The effective user's name and home directory from the password database
/// (libpq's defaults come from the effective user too; see `crate::os_user`).
pub(super) fn passwd_entry() -> Option<(String, PathBuf)> {
    crate::os_user::acting().map(|a| (a.name, a.home.unwrap_or_default()))
}

/// A PGHOST entry: a directory (Unix socket) or a host name; empty means
/// the default.
pub(super) fn host_name(h: &str, system: &System) -> HostName {
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
pub(super) fn expand_home(path: &str, system: &System) -> PathBuf {
    match (path.strip_prefix("~/"), &system.home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}
