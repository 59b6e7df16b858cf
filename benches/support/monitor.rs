#![allow(dead_code)] // each bench uses a part
//! Shared by the monitor benchmarks (`benches/monitor.rs`, poll cost and
//! pgbench -S throughput; `benches/monitor_contention.rs`, a lock-churning
//! pgbench while a query polls): the crowd of sessions, pgbench, figures.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgpilot::sandbox::Sandbox;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Sessions waiting on the lock in every scenario.
pub const WAITERS: usize = 20;

/// pg_blocking_pids() on every row of pg_stat_activity.
pub const NAIVE_SQL: &str = "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity";

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn connect(conninfo: &str, application: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(&format!("{conninfo} application_name={application}"), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {conninfo}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The `count` column of `sql`'s one row (a `SELECT count(*)`).
pub async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .expect(sql)
        .try_get("count")
        .expect(sql)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Value at quantile `q` (nearest rank) of `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The sessions of a scenario: one holder of ACCESS EXCLUSIVE on `locked`,
/// WAITERS sessions blocked reading it, and the rest idle, one in four of
/// them idle in a transaction that read `other`.
pub struct Crowd {
    holder: Client,
    waiters: Vec<JoinHandle<Result<(), tokio_postgres::Error>>>,
    others: Vec<Client>,
}

impl Crowd {
    pub async fn start(db: &str, observer: &Client) -> Crowd {
        let holder = connect(db, "bench-holder").await;
        holder
            .batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("take the lock");
        let mut waiters = Vec::new();
        for _ in 0..WAITERS {
            let c = connect(db, "bench-waiter").await;
            waiters.push(tokio::spawn(async move {
                c.batch_execute("SELECT count(*) FROM locked").await
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(
            observer,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .await
            < WAITERS as i64
        {
            assert!(Instant::now() < deadline, "waiters never queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Crowd {
            holder,
            waiters,
            others: Vec::new(),
        }
    }

    pub fn sessions(&self) -> usize {
        1 + self.waiters.len() + self.others.len()
    }

    pub async fn grow_to(&mut self, db: &str, total: usize) {
        while self.sessions() < total {
            let c = connect(db, "bench-idle").await;
            if self.others.len().is_multiple_of(4) {
                c.batch_execute("BEGIN; SELECT count(*) FROM other")
                    .await
                    .expect("idle in transaction");
            }
            self.others.push(c);
        }
    }

    pub async fn release(self) {
        self.holder.batch_execute("COMMIT").await.expect("commit");
        for w in self.waiters {
            w.await.expect("waiter task").expect("waiter query");
        }
        drop(self.others);
        drop(self.holder);
    }
}

/// $PGBENCH, or the `pgbench` next to the sandbox's server binaries (where
/// `initdb` really lives when the sandbox found it through a symlink, e.g.
/// /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb).
pub fn pgbench_path(sb: &Sandbox) -> PathBuf {
    if let Some(p) = std::env::var_os("PGBENCH") {
        return PathBuf::from(p);
    }
    let beside_initdb = std::fs::canonicalize(sb.bin_dir().join("initdb"))
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("pgbench")));
    [Some(sb.bin_dir().join("pgbench")), beside_initdb]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pgbench not found in {} nor beside its initdb; set PGBENCH",
                sb.bin_dir().display()
            )
        })
}

pub fn pgbench_command(sb: &Sandbox, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(pgbench_path(sb));
    for var in [
        "PGDATABASE",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGOPTIONS",
        "PGSERVICE",
    ] {
        cmd.env_remove(var);
    }
    let port = sb.port().to_string();
    cmd.args(["-h", sb.host(), "-p", &port, "-U", "postgres"])
        .args(args)
        .arg("bench")
        .kill_on_drop(true);
    cmd
}

pub async fn run_pgbench(sb: &Sandbox, args: &[&str]) -> String {
    let out = pgbench_command(sb, args)
        .output()
        .await
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn tps(output: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps line in pgbench output:\n{output}"))
}

/// The 1-minute load average: other work on the machine shows up here.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpus} CPUs (nproc), {:.1} GiB RAM, {model}",
        mem_kib / 1024.0 / 1024.0
    )
}
