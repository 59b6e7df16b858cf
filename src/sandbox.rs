//! Throwaway PostgreSQL clusters for `pgpilot demo` and the integration tests.
//!
//! A [`Sandbox`] runs `initdb` into a temporary directory, starts the server
//! with `pg_ctl` on a free loopback port, and stops it and deletes the
//! directory on drop (also when a test panics, because `Drop` runs on
//! unwind). When the process runs as root the cluster is created and run as
//! the `postgres` user, because PostgreSQL refuses to run as root.
//!
//! With the `test-support` feature (on for this crate's own tests and
//! benches through its dev-dependency on itself, never in a user's build),
//! `test_server` lets tests use an existing server named by `DATABASE_URL`
//! instead, with the same `conninfo`/`create_database` interface.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod error;
mod sql;
// The demo starts a standby too, not only the tests.
mod standby;
#[cfg(feature = "test-support")]
mod test_server;

pub use error::SandboxError;
#[cfg(feature = "test-support")]
use sql::quote_ident;
use sql::{create_database_at, percent_encode, quote_conninfo_value, simple_query};
pub use standby::Standby;
#[cfg(feature = "test-support")]
pub use test_server::{TestServer, test_server};

/// Loopback address the sandbox listens on (never a public interface).
const HOST: &str = "127.0.0.1";
/// Superuser created by `initdb -U`.
const SUPERUSER: &str = "postgres";
/// Server start attempts; a retry picks a new port, in case another process
/// grabbed ours between probing and binding.
const START_ATTEMPTS: usize = 5;
/// Seconds `pg_ctl -w` waits for start/stop before giving up.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// Lines of the server log quoted in start errors.
const LOG_TAIL_LINES: usize = 40;
/// Client connect timeout, so a dead server fails fast instead of hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for [`Sandbox::start_with`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// `max_connections` for the server (default 100).
    pub max_connections: u32,
    /// Extra `-c name=value` server settings, applied last (so they win).
    pub settings: Vec<(String, String)>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            max_connections: 100,
            settings: Vec::new(),
        }
    }
}

impl SandboxOptions {
    /// Sets `max_connections`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Adds a `-c name=value` server setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
#[derive(Debug)]
pub struct Sandbox {
    /// Held only so it is deleted after the server stops (field drop runs
    /// after `Drop::drop`).
    dir: TempDir,
    data_dir: PathBuf,
    log_path: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    port: u16,
    /// Whether a server may be running that `Drop` must stop.
    started: bool,
}

/// The account the server runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

impl Sandbox {
    /// Starts a sandbox with default [`SandboxOptions`].
    pub fn start() -> Result<Sandbox, SandboxError> {
        Sandbox::start_with(SandboxOptions::default())
    }

    /// Creates, starts and returns a fresh cluster.
    pub fn start_with(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        for (name, _) in &opts.settings {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !ok {
                return Err(SandboxError::InvalidSetting(name.clone()));
            }
        }

        let bin_dir = find_bin_dir()?;
        let run_as = if crate::os_user::effective_uid() == 0 {
            Some(lookup_user(SUPERUSER)?.ok_or(SandboxError::NoPostgresUser)?)
        } else {
            None
        };

        let dir = tempfile::Builder::new()
            .prefix("pgpilot-sandbox-")
            .tempdir()
            .map_err(|e| {
                SandboxError::io("cannot create a temporary directory (check TMPDIR)", e)
            })?;
        let root = dir.path().to_path_buf();
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir)
            .map_err(|e| SandboxError::io(format!("cannot create {}", socket_dir.display()), e))?;
        if let Some(user) = run_as {
            for path in [&root, &socket_dir] {
                chown(path, user)?;
            }
            // The server user must be able to reach the directory; a root-only
            // TMPDIR (e.g. under /root) would make initdb fail obscurely.
            check_traversable(&root)?;
        }

        let mut sandbox = Sandbox {
            data_dir: root.join("data"),
            log_path: root.join("server.log"),
            dir,
            bin_dir,
            run_as,
            port: 0,
            started: false,
        };
        sandbox.initdb()?;

        let mut last_err = None;
        for attempt in 1..=START_ATTEMPTS {
            sandbox.port = free_port()?;
            sandbox.started = true;
            match sandbox.pg_ctl_start(&socket_dir, &opts) {
                Ok(()) => return Ok(sandbox),
                Err(err) => {
                    // Make sure nothing half-started survives before retrying.
                    sandbox.stop();
                    let log_tail = sandbox.log_tail();
                    let retryable = port_collision(&log_tail);
                    last_err = Some(match err {
                        SandboxError::Command { .. } => SandboxError::Start {
                            attempts: attempt,
                            log_tail: if log_tail.trim().is_empty() {
                                err.to_string()
                            } else {
                                log_tail
                            },
                        },
                        other => other,
                    });
                    if !retryable {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| SandboxError::Start {
            attempts: START_ATTEMPTS,
            log_tail: sandbox.log_tail(),
        }))
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host the server listens on (always loopback).
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// libpq/tokio-postgres key=value connection string for `dbname`.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} dbname={}",
            self.port,
            quote_conninfo_value(dbname)
        )
    }

    /// `postgresql://` URL for `dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@{HOST}:{}/{}",
            self.port,
            percent_encode(dbname)
        )
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log, useful when a test fails.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Directory the PostgreSQL binaries were taken from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's `server_version` (e.g. "15.8").
    pub fn server_version(&self) -> Result<String, SandboxError> {
        let rows = simple_query(&self.conninfo("postgres"), "SHOW server_version")?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .unwrap_or_default())
    }

    /// Creates database `name` (synchronous, usable from tests and `demo`).
    pub fn create_database(&self, name: &str) -> Result<(), SandboxError> {
        create_database_at(&self.conninfo("postgres"), name)
    }

    /// The last lines of the server log (empty if it does not exist yet).
    pub fn log_tail(&self) -> String {
        match fs::read_to_string(&self.log_path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(LOG_TAIL_LINES);
                lines[start..].join("\n")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => format!("(cannot read {}: {e})", self.log_path.display()),
        }
    }

    /// A command for a PostgreSQL tool, run as the server user when root.
    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(name));
        // A directory the server user can enter; root's cwd may not be.
        cmd.current_dir(self.dir.path());
        // Keep the caller's libpq settings from leaking into the tools.
        for var in ["PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGOPTIONS"] {
            cmd.env_remove(var);
        }
        cmd.env("LC_MESSAGES", "C");
        if let Some(user) = self.run_as {
            // std drops supplementary groups before setuid when root.
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    fn initdb(&self) -> Result<(), SandboxError> {
        let mut cmd = self.tool("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync"])
            .arg("--locale=C");
        run(cmd)
    }

    fn pg_ctl_start(&self, socket_dir: &Path, opts: &SandboxOptions) -> Result<(), SandboxError> {
        // pg_ctl hands -o to /bin/sh, so every word is shell-quoted.
        let mut words = vec![
            "-p".to_string(),
            self.port.to_string(),
            "-c".to_string(),
            format!("listen_addresses={HOST}"),
            "-k".to_string(),
            socket_dir.display().to_string(),
        ];
        let mut settings = vec![
            ("fsync".to_string(), "off".to_string()),
            ("synchronous_commit".to_string(), "off".to_string()),
            ("full_page_writes".to_string(), "off".to_string()),
            (
                "max_connections".to_string(),
                opts.max_connections.to_string(),
            ),
        ];
        settings.extend(opts.settings.iter().cloned());
        for (name, value) in settings {
            words.push("-c".to_string());
            words.push(format!("{name}={value}"));
        }
        let options = words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ");

        let mut cmd = self.tool("pg_ctl");
        cmd.arg("start")
            .arg("-w")
            .args(["-t", PG_CTL_TIMEOUT_SECS])
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .arg("-o")
            .arg(options);
        run(cmd)
    }

    /// Stops the server if it may be running; best effort, never panics.
    fn stop(&mut self) {
        if !self.started {
            return;
        }
        self.started = false;
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("stop")
            .args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT_SECS])
            .arg("-D")
            .arg(&self.data_dir);
        let stopped = cmd.output().is_ok_and(|o| o.status.success());
        if !stopped {
            // pg_ctl may be gone or the server wedged: signal the postmaster
            // directly so no server outlives its (about to be deleted) data.
            kill_postmaster(&self.data_dir);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
        // `self.dir` (TempDir) is dropped after this and removes the files.
    }
}

/// Locates a directory holding both `initdb` and `pg_ctl`: PATH first, then
/// the newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
fn find_bin_dir() -> Result<PathBuf, SandboxError> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name();
                    let version = parse_version(&name)?;
                    Some((version, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    candidates.extend(versioned.into_iter().map(|(_, p)| p));

    candidates
        .iter()
        .find(|dir| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl")))
        .cloned()
        .ok_or_else(|| SandboxError::BinariesNotFound {
            searched: if candidates.is_empty() {
                "nothing".to_string()
            } else {
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            },
        })
}

/// "15" -> [15], "9.6" -> [9, 6]; None for non-version names. Also how
/// `crate::backup` orders the server folders it searches for pg_dump.
pub(crate) fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Looks up a user's uid/gid (reentrant variant, safe with parallel tests).
fn lookup_user(name: &str) -> Result<Option<RunAs>, SandboxError> {
    let account = crate::os_user::by_name(name)
        .map_err(|e| SandboxError::io(format!("cannot look up user `{name}`"), e))?;
    Ok(account.map(|a| RunAs {
        uid: a.uid,
        gid: a.gid,
    }))
}

fn chown(path: &Path, user: RunAs) -> Result<(), SandboxError> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
        SandboxError::io(
            format!("cannot hand {} to the postgres user", path.display()),
            e,
        )
    })
}

/// Fails with advice when a parent of `dir` is not searchable by others,
/// which would stop the `postgres` user from reaching the sandbox.
fn check_traversable(dir: &Path) -> Result<(), SandboxError> {
    for ancestor in dir.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(ancestor)
            && meta.permissions().mode() & 0o001 == 0
        {
            return Err(SandboxError::io(
                format!(
                    "the postgres user cannot enter {} (parent of the sandbox); \
                     set TMPDIR to a world-searchable directory such as /tmp",
                    ancestor.display()
                ),
                io::Error::from(io::ErrorKind::PermissionDenied),
            ));
        }
    }
    Ok(())
}

/// Asks the kernel for a free loopback port. Another process may take it
/// before the server binds; the caller retries on that.
fn free_port() -> Result<u16, SandboxError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| SandboxError::io("cannot bind a probe socket on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| SandboxError::io("cannot read the probe socket's port", e))?
        .port();
    Ok(port)
}

/// Whether a failed start looks like a lost race for the port.
fn port_collision(log: &str) -> bool {
    [
        "Address already in use",
        "could not bind",
        "could not create any TCP/IP sockets",
        "could not create lock file",
    ]
    .iter()
    .any(|needle| log.contains(needle))
}

/// Runs a tool, turning a non-zero exit into [`SandboxError::Command`].
fn run(mut cmd: Command) -> Result<(), SandboxError> {
    let line = command_line(&cmd);
    let output: Output = cmd
        .output()
        .map_err(|e| SandboxError::io(format!("cannot run `{line}`"), e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(SandboxError::Command {
        command: line,
        status: output.status.to_string(),
        output: text.trim_end().to_string(),
    })
}

fn command_line(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(line, " {}", shell_quote(&arg.to_string_lossy()));
    }
    line
}

/// Single-quotes a word for /bin/sh unless it is plainly safe.
fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Last resort when `pg_ctl stop` fails: SIGQUIT (immediate shutdown) to the
/// postmaster named in postmaster.pid, then SIGKILL if it lingers.
fn kill_postmaster(data_dir: &Path) {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<libc::pid_t>().ok())
    else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: plain syscalls on a pid; a stale pid at worst yields ESRCH.
    unsafe {
        libc::kill(pid, libc::SIGQUIT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // SAFETY: signal 0 only checks for existence.
    while Instant::now() < deadline && unsafe { libc::kill(pid, 0) } == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe {
        if libc::kill(pid, 0) == 0 {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("host=h password=x"), "host=h password=***");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("fsync=off"), "fsync=off");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec![
            parse_version(OsStr::new("9.6")).unwrap(),
            parse_version(OsStr::new("15")).unwrap(),
            parse_version(OsStr::new("10")).unwrap(),
        ];
        v.sort();
        assert_eq!(v, vec![vec![9, 6], vec![10], vec![15]]);
        assert!(parse_version(OsStr::new("common")).is_none());
    }
}
