//! Shared by the integration tests that run pgpilot against a real server.
#![allow(dead_code)]

pub mod governance;
pub mod migrations;
pub mod runbooks;
pub mod screen;
pub mod standby;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgpilot::sandbox::{TestServer, test_server};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A server, an audit directory of the test's own, and helpers to drive pgpilot.
///
/// On the sandbox (no `DATABASE_URL`) the server is the test's own, and a
/// database is created under the name the test asks for. On a server named
/// by `DATABASE_URL`, which others use too, every database the test asks for
/// is a fresh one with a unique name ([`Lab::db_name`] tells which); nothing
/// the test did not create is dropped, and what it created is dropped when
/// the lab is.
pub struct Lab {
    pub server: TestServer,
    pub data_dir: tempfile::TempDir,
    /// Requested database name → the name it was created under.
    names: Mutex<HashMap<String, String>>,
    /// Every database created on a shared server, dropped with the lab.
    created: Mutex<Vec<String>>,
    /// Copies of runbooks whose `[target] database` names a database that
    /// was created under another name ([`Lab::runbook`]).
    runbooks: tempfile::TempDir,
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        Lab {
            server: test_server().expect("a PostgreSQL server (sandbox or DATABASE_URL)"),
            data_dir: tempfile::tempdir().expect("tempdir"),
            names: Mutex::new(HashMap::new()),
            created: Mutex::new(Vec::new()),
            runbooks: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Whether the server is this test's own sandbox (not `DATABASE_URL`'s).
    pub fn owns_server(&self) -> bool {
        self.server.sandbox().is_some()
    }

    /// The name the database the test calls `name` was created under
    /// (`name` itself for a database the lab did not create, e.g. `postgres`).
    pub fn db_name(&self, name: &str) -> String {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// The database the test calls `name`, quoted for SQL.
    pub fn db_ident(&self, name: &str) -> String {
        format!("\"{}\"", self.db_name(name).replace('"', "\"\""))
    }

    pub fn conninfo(&self, db: &str) -> String {
        self.server.conninfo(&self.db_name(db))
    }

    /// A `postgresql://USER:PASSWORD@/DB?host=…&port=…` URI for the database
    /// the test calls `db`, from the server's own connection settings (no
    /// text is cut out of a connection string).
    pub fn uri(&self, db: &str, user: Option<&str>, password: &str) -> String {
        let config: tokio_postgres::Config = self
            .conninfo(db)
            .parse()
            .expect("the server's conninfo parses");
        let user = user.or(config.get_user()).unwrap_or("postgres");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgresql://{}:{}@/{}?host={}&port={port}",
            encode(user),
            encode(password),
            encode(&self.db_name(db)),
            encode(&host),
        )
    }

    /// The password the server's connection string carries, if any.
    pub fn password(&self) -> Option<String> {
        let config: tokio_postgres::Config = self
            .conninfo("postgres")
            .parse()
            .expect("the server's conninfo parses");
        config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    pub fn audit_file(&self) -> PathBuf {
        self.data_dir.path().join("audit.jsonl")
    }

    /// Creates a database the test calls `name` afresh and loads SQL files
    /// from assets/ into it. On the sandbox it is created under `name`
    /// (dropped first if an earlier call made it); on `DATABASE_URL`'s
    /// server under a unique name, so no database of anyone else's is
    /// touched.
    pub async fn database(&self, name: &str, assets: &[&str]) -> Client {
        let actual = if self.owns_server() {
            let admin = connect(&self.server.conninfo("postgres")).await;
            // Two statements, two round trips: a multi-statement string is one
            // implicit transaction, which DROP/CREATE DATABASE refuse. FORCE is
            // safe here: the server and every database on it are this test's.
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop database");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            name.to_string()
        } else {
            let fresh = self
                .server
                .fresh_database(name)
                .unwrap_or_else(|e| panic!("create a database for {name}: {e}"));
            self.created
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fresh.clone());
            fresh
        };
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), actual);
        let client = connect(&self.conninfo(name)).await;
        for a in assets {
            let sql =
                std::fs::read_to_string(Path::new(ROOT).join("assets").join(a)).expect("asset");
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("load {a}: {e}"));
        }
        client
    }

    /// The runbook at `path` (relative to the crate), ready to run against
    /// this lab: itself, or, when its `[target] database` names a database
    /// the lab created under another name, a copy (with its `sql/` folder)
    /// naming that one.
    pub fn runbook(&self, path: &str) -> String {
        let source = Path::new(ROOT).join(path);
        let text = std::fs::read_to_string(&source).expect("runbook");
        let mut changed = false;
        let rewritten: Vec<String> = text
            .lines()
            .map(|line| {
                let wanted = line
                    .strip_prefix("database = \"")
                    .and_then(|rest| rest.strip_suffix('"'));
                match wanted {
                    Some(name) if self.db_name(name) != name => {
                        changed = true;
                        format!("database = \"{}\"", self.db_name(name))
                    }
                    _ => line.to_string(),
                }
            })
            .collect();
        if !changed {
            return path.to_string();
        }
        let folder = source.parent().expect("the runbook's folder");
        let sql = folder.join("sql");
        if sql.is_dir() {
            let to = self.runbooks.path().join("sql");
            std::fs::create_dir_all(&to).expect("sql folder");
            for entry in std::fs::read_dir(&sql).expect("sql folder") {
                let entry = entry.expect("sql file");
                std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy sql file");
            }
        }
        let copy = self
            .runbooks
            .path()
            .join(source.file_name().expect("a runbook file"));
        std::fs::write(&copy, rewritten.join("\n") + "\n").expect("write runbook copy");
        copy.to_str().expect("a UTF-8 path").to_string()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgpilot"));
        c.args(args)
            .current_dir(ROOT)
            .env("PGPILOT_DATA_DIR", self.data_dir.path())
            .env("NO_COLOR", "1")
            .env_remove("PGPILOT_TEST_KILL_AT")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        Ran::from(self.command(args).output().expect("run pgpilot"))
    }
}

impl Drop for Lab {
    /// On a shared server, drops the databases this lab created (unique
    /// names, so nobody else's); best effort, a failure leaves them behind.
    fn drop(&mut self) {
        if self.owns_server() {
            return;
        }
        let created = self.created.get_mut().unwrap_or_else(|e| e.into_inner());
        for name in created.iter() {
            let _ = self.server.drop_database(name);
        }
    }
}

/// Percent-encodes a URI component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub async fn connect(conninfo: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(connection);
    client
}

/// First column of every row, as text.
pub async fn column(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

pub async fn scalar(client: &Client, sql: &str) -> String {
    column(client, sql)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Polls `check` every 20 ms until it holds; fails the test, naming `what`,
/// when `limit` passes first. Tests wait for a condition this way, never
/// for a guessed time.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `sql`, a query of one boolean, on `client` until it says true.
pub async fn until_sql(client: &Client, what: &str, limit: Duration, sql: &str) {
    eventually(what, limit, || async { scalar(client, sql).await == "t" }).await;
}

/// `--confirm` arguments for every question a runbook will ask: each
/// destructive step's phrase (from `plan --format json`) and `done` for pauses.
pub fn confirms_for(runbook: &str, rollback: bool) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(["plan", runbook, "--format", "json"])
        .current_dir(ROOT)
        .output()
        .expect("plan");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    let mut args = Vec::new();
    for s in plan["steps"].as_array().expect("steps") {
        let id = s["id"].as_str().unwrap_or_default();
        let phrase = if rollback {
            &s["rollback_confirm"]
        } else {
            &s["confirm"]
        };
        if let Some(p) = phrase.as_str() {
            args.push(format!("--confirm={id}={p}"));
        }
        if s["kind"] == "pause" && !rollback {
            args.push(format!("--confirm={id}=done"));
        }
    }
    args
}

/// Runs `cmd` to its end in a child whose address space is capped at 1 GiB,
/// killing it if it runs past `deadline`: a pgpilot that waits on a FIFO or
/// reads without end fails the test instead of hanging it or exhausting the
/// machine.
pub fn run_bounded(cmd: &mut Command, deadline: std::time::Duration) -> Ran {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::time::Instant;

    const ADDRESS_SPACE: libc::rlim_t = 1 << 30;
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgpilot");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pgpilot") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} was still running after {deadline:?}; stderr so far:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}
