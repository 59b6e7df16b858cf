//! Resolution against a given environment and machine (no process environment).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::env::{Env, System};
use super::resolve::resolve_with;
use super::*;
use crate::pg::tls::{Roots, SslMode};

struct MapEnv(HashMap<&'static str, &'static str>);

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| (*v).to_string())
    }
}

fn sys() -> System {
    System {
        os_user: Some("osuser".into()),
        home: Some(PathBuf::from("/nonexistent-home")),
        socket_dir_exists: false,
    }
}

fn resolve(db: Option<&str>, env: &[(&'static str, &'static str)]) -> ConnSpec {
    resolve_with(db, &MapEnv(env.iter().copied().collect()), &sys()).unwrap()
}

#[test]
fn defaults() {
    let s = resolve(None, &[]);
    assert_eq!(
        s.target(),
        Target {
            host: "localhost".into(),
            port: 5432,
            database: "osuser".into(),
            user: "osuser".into()
        }
    );
    assert_eq!(s.application_name(), "pgpilot");
    assert_eq!(s.ssl_mode(), SslMode::Prefer);
    assert_eq!(s.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
    let with_socket = resolve_with(
        None,
        &MapEnv(HashMap::new()),
        &System {
            socket_dir_exists: true,
            ..sys()
        },
    )
    .unwrap();
    assert_eq!(with_socket.target().host, DEFAULT_SOCKET_DIR);
}

#[test]
fn env_fills_gaps_only() {
    let env = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "require"),
        ("PGAPPNAME", "envapp"),
        ("PGCONNECT_TIMEOUT", "1"),
    ];
    let s = resolve(None, &env);
    assert_eq!(s.to_string(), "envuser@envhost:6000/envdb");
    assert_eq!(s.ssl_mode(), SslMode::Require);
    assert_eq!(s.application_name(), "envapp");
    assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));

    let s = resolve(Some("postgresql://u@h/d?sslmode=disable"), &env);
    assert_eq!(
        s.to_string(),
        "u@h:6000/d",
        "a URI without port uses PGPORT"
    );
    assert_eq!(s.ssl_mode(), SslMode::Disable);
    let s = resolve(Some("postgresql://u@h:7000/d"), &env);
    assert_eq!(s.target().port, 7000);
    let s = resolve(Some("host=h dbname=d application_name=x"), &env);
    assert_eq!(s.to_string(), "envuser@h:6000/d");
    assert_eq!(s.application_name(), "x");
}

#[test]
fn our_options_are_taken_out() {
    let s = resolve(
        Some(
            "postgresql://u:p%40ss@db.example:5433/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a%20b",
        ),
        &[],
    );
    assert_eq!(s.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(s.tls.roots, Roots::File(PathBuf::from("/ca.pem")));
    assert!(s.tls.check_name);
    assert_eq!(s.application_name(), "a b");
    assert_eq!(
        s.password.as_ref().map(|p| p.value.clone()),
        Some(b"p@ss".to_vec())
    );
    assert_eq!(s.to_string(), "u@db.example:5433/app");

    let s = resolve(
        Some("host=h sslmode = verify-ca sslrootcert='/my ca.pem' password='a\\'b c'"),
        &[],
    );
    assert_eq!(s.ssl_mode(), SslMode::VerifyCa);
    assert!(!s.tls.check_name);
    assert_eq!(s.tls.roots, Roots::File(PathBuf::from("/my ca.pem")));
    assert_eq!(
        s.password.as_ref().map(|p| p.value.clone()),
        Some(b"a'b c".to_vec())
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("a'b c"), "{debug}");
}

#[test]
fn multiple_hosts_and_sockets() {
    let s = resolve(Some("host=/tmp,h2 port=1,2 dbname=d user=u"), &[]);
    assert_eq!(s.to_string(), "u@/tmp:1,h2:2/d");
    assert_eq!(s.hosts[0].host, HostName::Unix(PathBuf::from("/tmp")));
    let s = resolve(Some("postgresql://u@[::1]:5000,h2/d"), &[]);
    assert_eq!(s.to_string(), "u@[::1]:5000,h2:5432/d");
    assert!(resolve_with(Some("host=a,b,c port=1,2"), &MapEnv(HashMap::new()), &sys()).is_err());
}

#[test]
fn bare_word_is_a_database() {
    assert_eq!(resolve(Some("app"), &[]).target().database, "app");
}

#[test]
fn errors_name_the_problem_without_values() {
    let e = |db: &str| {
        resolve_with(Some(db), &MapEnv(HashMap::new()), &sys())
            .unwrap_err()
            .to_string()
    };
    assert!(e("host=h sslmode=bogus").contains("invalid sslmode"));
    assert!(e("host=h nonsense=1").contains("nonsense"));
    let msg = e("host=h password='s3cret");
    assert!(
        msg.contains("unterminated") && !msg.contains("s3cret"),
        "{msg}"
    );
    assert!(e("host=h sslmode=verify-full").contains("root.crt"));
    assert!(e("host=h sslrootcert=system sslmode=require").contains("verify-full"));
    assert!(e("host=h service=x").contains("pg_service"));
}

#[test]
fn system_roots_default_to_verify_full() {
    let s = resolve(Some("host=h sslrootcert=system"), &[]);
    assert_eq!(s.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(s.tls.roots, Roots::System);
}
