//! Integration tests for the throwaway PostgreSQL sandbox. They need the
//! PostgreSQL server binaries (scripts/setup installs them).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use pgpilot::sandbox::{Sandbox, SandboxError, SandboxOptions, test_server};

/// Connects with tokio-postgres and returns the first column of the first
/// row of `sql` as text.
async fn query_one(conninfo: &str, sql: &str) -> String {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {conninfo}: {e}"));
    let conn = tokio::spawn(connection);
    let rows = client.simple_query(sql).await.expect(sql);
    drop(client);
    conn.await.expect("connection task").expect("connection");
    rows.into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("one row")
}

fn port_refuses(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

#[tokio::test]
async fn sandbox_serves_queries_and_creates_databases() {
    let sb = Sandbox::start().expect("start sandbox");
    assert_eq!(sb.host(), "127.0.0.1");
    assert_eq!(
        sb.conninfo("postgres"),
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            sb.port()
        )
    );
    assert_eq!(
        sb.url("postgres"),
        format!("postgresql://postgres@127.0.0.1:{}/postgres", sb.port())
    );
    assert!(sb.data_dir().join("PG_VERSION").is_file());
    assert!(sb.log_path().is_file());

    let num: u32 = query_one(
        &sb.conninfo("postgres"),
        "SELECT current_setting('server_version_num')",
    )
    .await
    .parse()
    .expect("numeric server_version_num");
    assert!(num >= 90_000, "server_version_num {num}");
    let version = sb.server_version().expect("server_version");
    assert!(!version.is_empty());

    // create_database is sync but must also work inside a tokio runtime.
    sb.create_database("pgpilot_it").expect("create database");
    let db = query_one(&sb.conninfo("pgpilot_it"), "SELECT current_database()").await;
    assert_eq!(db, "pgpilot_it");
    let db = query_one(&sb.url("pgpilot_it"), "SELECT current_database()").await;
    assert_eq!(db, "pgpilot_it");

    // A name that needs quoting everywhere.
    sb.create_database("odd name's \"db\"")
        .expect("create odd database");
    let db = query_one(
        &sb.conninfo("odd name's \"db\""),
        "SELECT current_database()",
    )
    .await;
    assert_eq!(db, "odd name's \"db\"");
    let db = query_one(&sb.url("odd name's \"db\""), "SELECT current_database()").await;
    assert_eq!(db, "odd name's \"db\"");

    let err = sb.create_database("pgpilot_it").expect_err("duplicate");
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn drop_stops_server_and_removes_directory() {
    let sb = Sandbox::start().expect("start sandbox");
    let port = sb.port();
    let data_dir = sb.data_dir().to_path_buf();
    let root = data_dir.parent().expect("sandbox root").to_path_buf();
    assert!(!port_refuses(port), "server should accept on {port}");
    drop(sb);
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(port_refuses(port), "port {port} still accepts connections");
}

#[test]
fn panic_unwind_still_cleans_up() {
    let mut seen: Option<(u16, PathBuf)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sb = Sandbox::start().expect("start sandbox");
        seen = Some((sb.port(), sb.data_dir().to_path_buf()));
        panic!("simulated test failure");
    }));
    assert!(result.is_err());
    let (port, data_dir) = seen.expect("sandbox started before the panic");
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    assert!(port_refuses(port), "port {port} still accepts connections");
}

#[tokio::test]
async fn two_sandboxes_run_side_by_side() {
    let a = Sandbox::start().expect("start sandbox a");
    let b = Sandbox::start().expect("start sandbox b");
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.create_database("only_in_a").expect("create in a");
    let count = |sb: &Sandbox| {
        let conninfo = sb.conninfo("postgres");
        async move {
            query_one(
                &conninfo,
                "SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'",
            )
            .await
        }
    };
    assert_eq!(count(&a).await, "1");
    assert_eq!(count(&b).await, "0");
}

#[tokio::test]
async fn options_reach_the_server() {
    let sb = Sandbox::start_with(
        SandboxOptions::default()
            .max_connections(20)
            .setting("work_mem", "8MB")
            .setting("application_name", "with space's"),
    )
    .expect("start sandbox");
    let conninfo = sb.conninfo("postgres");
    assert_eq!(query_one(&conninfo, "SHOW max_connections").await, "20");
    assert_eq!(query_one(&conninfo, "SHOW work_mem").await, "8MB");
    assert_eq!(
        query_one(&conninfo, "SHOW application_name").await,
        "with space's"
    );
    assert_eq!(query_one(&conninfo, "SHOW fsync").await, "off");
    assert_eq!(
        query_one(&conninfo, "SHOW listen_addresses").await,
        "127.0.0.1"
    );
}

#[test]
fn bad_setting_name_is_rejected_up_front() {
    let err = Sandbox::start_with(SandboxOptions::default().setting("x; rm -rf /", "1"))
        .expect_err("invalid name");
    assert!(matches!(err, SandboxError::InvalidSetting(_)), "{err}");
}

#[tokio::test]
async fn test_server_provides_fresh_databases() {
    let server = test_server().expect("test server");
    let name = server.fresh_database("pgpilot_ts").expect("fresh database");
    assert!(name.starts_with("pgpilot_ts_"));
    let db = query_one(&server.conninfo(&name), "SELECT current_database()").await;
    assert_eq!(db, name);
    if std::env::var_os("DATABASE_URL").is_none() {
        assert!(server.sandbox().is_some());
    }
}

#[test]
fn failed_start_reports_the_server_log() {
    let err = Sandbox::start_with(SandboxOptions::default().setting("shared_buffers", "bogus"))
        .expect_err("server must refuse a bad setting");
    let text = err.to_string();
    assert!(matches!(err, SandboxError::Start { .. }), "{text}");
    assert!(text.contains("shared_buffers"), "{text}");
}
