//! Shared by the integration tests that run pgpilot against a real server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pgpilot::sandbox::{TestServer, test_server};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A server, an audit directory of the test's own, and helpers to drive pgpilot.
pub struct Lab {
    pub server: TestServer,
    pub data_dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        Lab {
            server: test_server().expect("a PostgreSQL server (sandbox or DATABASE_URL)"),
            data_dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn conninfo(&self, db: &str) -> String {
        self.server.conninfo(db)
    }

    pub fn audit_file(&self) -> PathBuf {
        self.data_dir.path().join("audit.jsonl")
    }

    /// Creates `name` afresh and loads SQL files from assets/ into it.
    pub async fn database(&self, name: &str, assets: &[&str]) -> Client {
        let admin = connect(&self.conninfo("postgres")).await;
        // Two statements, two round trips: a multi-statement string is one
        // implicit transaction, which DROP/CREATE DATABASE refuse.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop database");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
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
