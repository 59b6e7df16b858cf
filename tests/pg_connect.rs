//! Integration tests of `pgpilot::pg` against real PostgreSQL servers from
//! `pgpilot::sandbox` (they need the server binaries; scripts/setup
//! installs them).
//!
//! The process environment is global, and `ConnSpec::resolve` reads it, so
//! every resolve happens under `ENV_LOCK`, and the tests that set PG*
//! variables set and remove them while holding it.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use pgpilot::pg::{ConnSpec, Connection, Notice, PgError, SslMode, redact};
use pgpilot::sandbox::Sandbox;
use tokio_postgres::error::SqlState;

static ENV_LOCK: Mutex<()> = Mutex::new(());
static CLEAN_ENV: Once = Once::new();

/// Variables that would change how the tests' connection strings resolve.
const PG_VARS: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
    "PGTARGETSESSIONATTRS",
    "PGCHANNELBINDING",
    "PGSERVICE",
];

/// Takes the environment lock; the first time, removes the caller's PG*
/// settings and points HOME somewhere empty, so a developer's ~/.pgpass or
/// ~/.postgresql/root.crt cannot change the outcome.
fn env_lock() -> MutexGuard<'static, ()> {
    let guard = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    CLEAN_ENV.call_once(|| {
        for var in PG_VARS {
            // SAFETY: environment changes in this binary happen only under
            // ENV_LOCK, which we hold.
            unsafe { std::env::remove_var(var) };
        }
        // SAFETY: as above.
        unsafe { std::env::set_var("HOME", "/nonexistent/pgpilot-test-home") };
    });
    guard
}

/// Sets `vars`, resolves `db`, and removes the variables again.
fn resolve_with_env(db: Option<&str>, vars: &[(&str, &str)]) -> Result<ConnSpec, PgError> {
    let _guard = env_lock();
    for (k, v) in vars {
        // SAFETY: under ENV_LOCK (see env_lock).
        unsafe { std::env::set_var(k, v) };
    }
    let spec = ConnSpec::resolve(db);
    for (k, _) in vars {
        // SAFETY: under ENV_LOCK (see env_lock).
        unsafe { std::env::remove_var(k) };
    }
    spec
}

fn resolve(db: &str) -> ConnSpec {
    resolve_with_env(Some(db), &[]).unwrap_or_else(|e| panic!("resolve {db:?}: {e}"))
}

async fn connect(db: &str) -> Connection {
    let spec = resolve(db);
    spec.connect()
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", spec.redacted()))
}

/// First column of the first row, as text ("" for NULL).
async fn scalar(conn: &Connection, sql: &str) -> String {
    let messages = conn
        .client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(0).unwrap_or_default().to_string())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

async fn ssl_in_use(conn: &Connection) -> bool {
    scalar(
        conn,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
        == "t"
}

fn superuser(sb: &Sandbox) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        sb.port()
    )
}

async fn admin(sb: &Sandbox, sql: &str) {
    let conn = connect(&superuser(sb)).await;
    conn.client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Polls `check` every 100 ms for up to 10 s.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The password of role `alice`: `:` and `\` exercise the .pgpass escapes.
const ALICE_PASSWORD: &str = r"co:rrect\horse";
/// The same, escaped for a .pgpass line.
const ALICE_PGPASS: &str = r"co\:rrect\\horse";

/// A sandbox with role `alice` that must log in with a SCRAM password over
/// TCP (postgres stays trusted).
async fn password_sandbox() -> Sandbox {
    let sb = Sandbox::start().expect("start sandbox");
    admin(
        &sb,
        &format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}'"
        ),
    )
    .await;
    let hba = sb.data_dir().join("pg_hba.conf");
    let old = fs::read_to_string(&hba).expect("read pg_hba.conf");
    fs::write(
        &hba,
        format!("host all alice 127.0.0.1/32 scram-sha-256\n{old}"),
    )
    .expect("write pg_hba.conf");
    admin(&sb, "SELECT pg_reload_conf()").await;
    let no_password = resolve(&format!(
        "host=127.0.0.1 port={} user=alice dbname=postgres sslmode=disable",
        sb.port()
    ));
    let no_password = &no_password;
    wait_for("pg_hba.conf to be reloaded", move || async move {
        matches!(
            no_password.connect().await,
            Err(PgError::PasswordMissing { .. })
        )
    })
    .await;
    sb
}

fn alice(sb: &Sandbox) -> String {
    format!(
        "host=127.0.0.1 port={} user=alice dbname=postgres sslmode=disable",
        sb.port()
    )
}

#[test]
fn redact_removes_passwords_from_any_text() {
    let cases = [
        (
            "could not connect to postgresql://bob:hunter2@db:5432/app?sslmode=require",
            "could not connect to postgresql://bob:***@db:5432/app?sslmode=require",
        ),
        (
            "host=db user=bob password=hunter2 dbname=app",
            "host=db user=bob password=*** dbname=app",
        ),
        (
            "host=db password = 'hunter 2 \\' x' dbname=app",
            "host=db password = *** dbname=app",
        ),
        (
            "postgres://db/app?user=bob&password=hunter2&sslmode=require",
            "postgres://db/app?user=bob&password=***&sslmode=require",
        ),
        (
            "PGPASSWORD=hunter2 pgpilot run x",
            "PGPASSWORD=*** pgpilot run x",
        ),
        ("Password=\"hunter2\" more", "Password=*** more"),
        (
            r#"{"user":"bob","password":"hunter2"}"#,
            r#"{"user":"bob","password":***}"#,
        ),
        (
            "password authentication failed for user \"bob\"",
            "password authentication failed for user \"bob\"",
        ),
        ("postgres://bob@db/app", "postgres://bob@db/app"),
    ];
    for (input, want) in cases {
        let got = redact(input);
        assert_eq!(got, want, "redact({input:?})");
        assert!(!got.contains("hunter"), "{got}");
        assert_eq!(redact(&got), got, "idempotent");
    }
}

#[test]
fn resolve_keeps_libpq_only_settings_and_hides_the_password() {
    let spec = resolve(
        "postgresql://bob:s3cr%3At@db.example:6432/app?sslmode=verify-full\
         &sslrootcert=%2Fetc%2Fca.pem&application_name=deploy",
    );
    assert_eq!(spec.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(spec.application_name(), "deploy");
    let t = spec.target();
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.database.as_str(),
            t.user.as_str()
        ),
        ("db.example", 6432, "app", "bob")
    );
    assert_eq!(spec.to_string(), "bob@db.example:6432/app");
    assert_eq!(spec.redacted(), "bob@db.example:6432/app");
    assert!(spec.has_password());
    let debug = format!("{spec:?}");
    assert!(!debug.contains("s3cr"), "{debug}");
    assert_eq!(
        spec.with_application_name("pgpilot-monitor")
            .application_name(),
        "pgpilot-monitor"
    );

    let spec = resolve(
        "host=db dbname=app user=bob password='s3 cr\\'t' sslmode=verify-ca sslrootcert=/etc/ca.pem",
    );
    assert_eq!(spec.ssl_mode(), SslMode::VerifyCa);
    assert!(!format!("{spec:?} {spec}").contains("s3 cr"));

    for (db, says) in [
        ("host=db sslmode=sometimes", "invalid sslmode"),
        ("host=db colour=blue", "colour"),
        ("host=db password", "missing \"=\""),
        ("postgresql://db/app?port=x", "port"),
    ] {
        let err = resolve_with_env(Some(db), &[]).expect_err(db);
        assert!(err.to_string().contains(says), "{db}: {err}");
    }
    let err = resolve_with_env(Some("host=db password='s3cret"), &[]).expect_err("unterminated");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
}

#[tokio::test]
async fn uri_and_key_value_strings_connect() {
    let sb = Sandbox::start().expect("start sandbox");
    let port = sb.port();

    let conn = connect(&format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?application_name=uri-app&sslmode=disable"
    ))
    .await;
    assert_eq!(scalar(&conn, "SHOW application_name").await, "uri-app");
    assert_eq!(scalar(&conn, "SELECT current_user").await, "postgres");
    assert!(!conn.tls);
    assert_eq!(
        conn.target.to_string(),
        format!("postgres@127.0.0.1:{port}/postgres")
    );

    let spec = resolve(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres"
    ));
    let conn = spec.connect().await.expect("key=value connects");
    assert_eq!(scalar(&conn, "SHOW application_name").await, "pgpilot");
    let monitor = spec
        .with_application_name("pgpilot-monitor")
        .connect()
        .await
        .expect("monitor connects");
    assert_eq!(
        scalar(&monitor, "SHOW application_name").await,
        "pgpilot-monitor"
    );
    assert_eq!(spec.target().port, port);

    // Several hosts: the first refuses, the second answers.
    let dead = dead_port();
    let conn = connect(&format!(
        "host=127.0.0.1,127.0.0.1 port={dead},{port} user=postgres dbname=postgres sslmode=disable"
    ))
    .await;
    assert_eq!(conn.target.port, port);

    // A database that does not exist: the server's SQLSTATE and advice.
    let err = resolve(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=nosuchdb sslmode=disable"
    ))
    .connect()
    .await
    .expect_err("no such database");
    assert_eq!(err.sqlstate(), Some("3D000"));
    assert!(err.to_string().contains("PGDATABASE"), "{err}");
}

#[tokio::test]
async fn unix_socket_ignores_sslmode() {
    let sb = Sandbox::start().expect("start sandbox");
    let socket_dir = sb.data_dir().parent().expect("sandbox root").join("sock");
    let conn = connect(&format!(
        "host={} port={} user=postgres dbname=postgres sslmode=require",
        socket_dir.display(),
        sb.port()
    ))
    .await;
    assert_eq!(
        scalar(&conn, "SELECT inet_client_addr() IS NULL").await,
        "t"
    );
    assert!(!conn.tls);
    assert_eq!(conn.target.host, socket_dir.display().to_string());
}

fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn refused_and_missing_socket_say_what_to_do() {
    let port = dead_port();
    let err = resolve(&format!("host=127.0.0.1 port={port} user=u dbname=d"))
        .connect()
        .await
        .expect_err("nothing listens");
    assert_eq!(
        err.to_string(),
        format!(
            "connection refused at 127.0.0.1:{port} — is the server running? check --db or \
             PGHOST/PGPORT"
        )
    );
    assert!(matches!(err, PgError::Refused { .. }));

    let err = resolve("host=/nonexistent/pgpilot-socket-dir port=5432 user=u dbname=d")
        .connect()
        .await
        .expect_err("no socket");
    assert!(matches!(err, PgError::NoSocket { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("/nonexistent/pgpilot-socket-dir/.s.PGSQL.5432"),
        "{err}"
    );
}

#[tokio::test]
async fn environment_variables_fill_in_like_libpq() {
    let sb = password_sandbox().await;
    let port = sb.port().to_string();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "alice"),
        ("PGDATABASE", "postgres"),
        ("PGPASSWORD", ALICE_PASSWORD),
        ("PGAPPNAME", "from-env"),
        ("PGSSLMODE", "disable"),
        ("PGCONNECT_TIMEOUT", "5"),
    ];
    let spec = resolve_with_env(None, &env).expect("resolve from the environment");
    assert_eq!(spec.redacted(), format!("alice@127.0.0.1:{port}/postgres"));
    assert_eq!(spec.ssl_mode(), SslMode::Disable);
    assert!(!format!("{spec:?}").contains(ALICE_PASSWORD));
    let conn = spec.connect().await.expect("connect from the environment");
    assert_eq!(scalar(&conn, "SELECT current_user").await, "alice");
    assert_eq!(scalar(&conn, "SHOW application_name").await, "from-env");
    assert!(!ssl_in_use(&conn).await);

    // What --db gives wins; the rest still comes from the environment.
    let spec =
        resolve_with_env(Some("dbname=template1 application_name=cli"), &env).expect("resolve");
    assert_eq!(spec.target().database, "template1");
    assert_eq!(spec.target().user, "alice");
    let conn = spec.connect().await.expect("connect");
    assert_eq!(
        scalar(&conn, "SELECT current_database()").await,
        "template1"
    );
    assert_eq!(scalar(&conn, "SHOW application_name").await, "cli");

    // A bad PGPORT is reported with what to do.
    let err = resolve_with_env(None, &[("PGPORT", "fivefourthreetwo")]).expect_err("bad port");
    assert!(err.to_string().contains("PGPORT=fivefourthreetwo"), "{err}");
}

#[tokio::test]
async fn pgpass_supplies_the_password() {
    let sb = password_sandbox().await;
    let port = sb.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let passfile = dir.path().join("pgpass");
    fs::write(
        &passfile,
        format!(
            "# pgpilot test\n\
             127.0.0.1:{port}:postgres:bob:not-for-alice\n\
             127.0.0.1:1:*:alice:wrong-port\n\
             *:{port}:postgres:alice:{ALICE_PGPASS}\n\
             *:*:*:*:catch-all\n"
        ),
    )
    .expect("write pgpass");
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).expect("chmod");
    let passfile_text = passfile.display().to_string();

    let spec =
        resolve_with_env(Some(&alice(&sb)), &[("PGPASSFILE", &passfile_text)]).expect("resolve");
    assert!(spec.has_password());
    assert!(spec.warnings().is_empty(), "{:?}", spec.warnings());
    let debug = format!("{spec:?}");
    assert!(
        debug.contains("line 4") && !debug.contains("rrect"),
        "{debug}"
    );
    let conn = spec.connect().await.expect("the .pgpass password works");
    assert_eq!(scalar(&conn, "SELECT current_user").await, "alice");

    // passfile= in the connection string does the same, without the env.
    let conn = connect(&format!("{} passfile={passfile_text}", alice(&sb))).await;
    assert_eq!(scalar(&conn, "SELECT current_user").await, "alice");

    // An explicit password wins over the file.
    let err = resolve(&format!(
        "{} passfile={passfile_text} password=explicit-wrong",
        alice(&sb)
    ))
    .connect()
    .await
    .expect_err("explicit password is used");
    assert!(matches!(err, PgError::AuthFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("connection string"), "{err}");

    // A file others can read is ignored, with a warning (as libpq does).
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o644)).expect("chmod");
    let spec = resolve(&format!("{} passfile={passfile_text}", alice(&sb)));
    assert!(!spec.has_password());
    assert!(
        spec.warnings()
            .iter()
            .any(|w| w.contains("group or world access") && w.contains(&passfile_text)),
        "{:?}",
        spec.warnings()
    );
    let err = spec.connect().await.expect_err("no password");
    assert!(matches!(err, PgError::PasswordMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("PGPASSWORD"), "{err}");
}

#[tokio::test]
async fn wrong_password_is_reported_without_the_password() {
    let sb = password_sandbox().await;
    let secret = "wrong-horse-battery-staple";
    let port = sb.port();
    for db in [
        format!("{} password={secret}", alice(&sb)),
        format!("postgresql://alice:{secret}@127.0.0.1:{port}/postgres?sslmode=disable"),
    ] {
        let spec = resolve(&db);
        let err = spec.connect().await.expect_err("wrong password");
        assert!(matches!(err, PgError::AuthFailed { .. }), "{err:?}");
        assert_eq!(err.sqlstate(), Some("28P01"));
        let text = err.to_string();
        assert!(
            text.starts_with("password authentication failed for user alice")
                && text.contains("check PGPASSWORD or ~/.pgpass"),
            "{text}"
        );
        let everything = format!("{err} | {err:?} | {spec} | {spec:?} | {}", spec.redacted());
        assert!(!everything.contains(secret), "{everything}");
        assert!(!everything.contains("wrong-horse"), "{everything}");
    }
    // And the right one works.
    let conn = connect(&format!(
        "{} password='{}'",
        alice(&sb),
        ALICE_PASSWORD.replace('\\', "\\\\")
    ))
    .await;
    assert_eq!(scalar(&conn, "SELECT current_user").await, "alice");
}

#[tokio::test]
async fn prefer_falls_back_to_plain_and_require_refuses() {
    let sb = Sandbox::start().expect("start sandbox");
    let base = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        sb.port()
    );

    let conn = connect(&format!("{base} sslmode=prefer")).await;
    assert!(!conn.tls);
    assert!(!ssl_in_use(&conn).await);
    let conn = connect(&base).await; // prefer is the default
    assert!(!conn.tls);
    let conn = connect(&format!("{base} sslmode=allow")).await;
    assert!(!conn.tls);

    let err = resolve(&format!("{base} sslmode=require"))
        .connect()
        .await
        .expect_err("no TLS on this server");
    assert!(matches!(err, PgError::TlsUnsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("sslmode=require"), "{err}");
}

/// Test PKI: a CA, a server certificate for `localhost` signed by it, and
/// an unrelated CA.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
}

fn write_pki(data_dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
    }
    let authority = ca("pgpilot test CA");
    let other = ca("some other CA");
    let server_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &*authority).expect("sign");

    // The server reads server.crt/server.key from its data directory; the
    // key must belong to the server's user and be private.
    let owner = fs::metadata(data_dir).expect("data dir");
    for (name, text, mode) in [
        ("server.crt", server.pem(), 0o644),
        ("server.key", server_key.serialize_pem(), 0o600),
    ] {
        let path = data_dir.join(name);
        fs::write(&path, text).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).expect("chown");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = dir.path().join("root.crt");
    let other_path = dir.path().join("other.crt");
    fs::write(&ca_path, authority.pem()).expect("write CA");
    fs::write(&other_path, other.pem()).expect("write CA");
    Pki {
        _dir: dir,
        ca: ca_path,
        other_ca: other_path,
    }
}

async fn tls_sandbox() -> (Sandbox, Pki) {
    let sb = Sandbox::start().expect("start sandbox");
    let pki = write_pki(sb.data_dir());
    admin(&sb, "ALTER SYSTEM SET ssl = on").await;
    admin(&sb, "SELECT pg_reload_conf()").await;
    let probe = &superuser(&sb);
    wait_for("ssl = on after reload", move || async move {
        scalar(&connect(probe).await, "SHOW ssl").await == "on"
    })
    .await;
    (sb, pki)
}

#[tokio::test]
async fn tls_modes_against_a_tls_server() {
    let (sb, pki) = tls_sandbox().await;
    let port = sb.port();
    let ca = pki.ca.display().to_string();
    let other = pki.other_ca.display().to_string();
    let on = |host: &str, rest: &str| {
        format!("host={host} port={port} user=postgres dbname=postgres {rest}")
    };

    // require: TLS, certificate not checked.
    let conn = connect(&on("127.0.0.1", "sslmode=require")).await;
    assert!(conn.tls);
    assert!(ssl_in_use(&conn).await);
    // prefer (the default) takes TLS when offered; disable does not.
    let conn = connect(&on("127.0.0.1", "")).await;
    assert!(conn.tls && ssl_in_use(&conn).await);
    let conn = connect(&on("127.0.0.1", "sslmode=disable")).await;
    assert!(!conn.tls && !ssl_in_use(&conn).await);

    // verify-full: the right CA and the certificate's host name.
    let conn = connect(&on(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ))
    .await;
    assert!(conn.tls && ssl_in_use(&conn).await);
    let uri = format!(
        "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.replace('/', "%2F")
    );
    assert!(ssl_in_use(&connect(&uri).await).await);

    // verify-full with another CA fails, and says what to check.
    let err = resolve(&on(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={other}"),
    ))
    .connect()
    .await
    .expect_err("untrusted CA");
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("sslrootcert"), "{err}");

    // verify-full with a host the certificate does not name fails;
    // verify-ca checks only the chain, so it connects.
    let err = resolve(&on(
        "127.0.0.1",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ))
    .connect()
    .await
    .expect_err("name mismatch");
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("does not name this host"), "{err}");
    let conn = connect(&on(
        "127.0.0.1",
        &format!("sslmode=verify-ca sslrootcert={ca}"),
    ))
    .await;
    assert!(ssl_in_use(&conn).await);
    let err = resolve(&on(
        "127.0.0.1",
        &format!("sslmode=verify-ca sslrootcert={other}"),
    ))
    .connect()
    .await
    .expect_err("untrusted CA");
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");

    // require with a root certificate checks the chain, like libpq.
    let err = resolve(&on(
        "127.0.0.1",
        &format!("sslmode=require sslrootcert={other}"),
    ))
    .connect()
    .await
    .expect_err("require + sslrootcert verifies");
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");

    // verify-full without any root certificate is refused before connecting.
    let err = resolve_with_env(Some(&on("localhost", "sslmode=verify-full")), &[])
        .expect_err("no root certificate");
    assert!(err.to_string().contains("root.crt"), "{err}");

    // PGSSLMODE / PGSSLROOTCERT work too.
    let spec = resolve_with_env(
        Some(&format!(
            "host=localhost port={port} user=postgres dbname=postgres"
        )),
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", &ca)],
    )
    .expect("resolve");
    assert_eq!(spec.ssl_mode(), SslMode::VerifyFull);
    assert!(ssl_in_use(&spec.connect().await.expect("connect")).await);

    // Cancel requests go over TLS too.
    let spec = resolve(&on(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ));
    let conn = spec.connect().await.expect("connect");
    let canceller = &conn.canceller();
    cancel_and_expect_57014(
        &sb,
        &conn,
        "SELECT pg_sleep(30) /* tls */",
        move || async move { canceller.cancel().await },
    )
    .await;
}

/// Runs `sql` (a long sleep) on `conn`, calls `cancel` once the server
/// shows it running, and expects SQLSTATE 57014 within a few seconds.
async fn cancel_and_expect_57014<F, Fut>(sb: &Sandbox, conn: &Connection, sql: &str, cancel: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), PgError>>,
{
    let watcher = connect(&superuser(sb)).await;
    let started = Instant::now();
    let running = conn.client.simple_query(sql);
    let cancelling = async {
        let probe = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '{sql}'"
        );
        let (watcher, probe) = (&watcher, &probe);
        wait_for("the statement to run", move || async move {
            scalar(watcher, probe).await == "1"
        })
        .await;
        cancel().await
    };
    let (result, cancelled) = tokio::join!(running, cancelling);
    cancelled.expect("cancel request sent");
    let err = result.expect_err("the statement is cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    // The connection is still usable.
    assert_eq!(scalar(conn, "SELECT 1").await, "1");
}

#[tokio::test]
async fn cancel_query_cancels_a_running_statement() {
    let sb = Sandbox::start().expect("start sandbox");
    let spec = resolve(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        sb.port()
    ));
    let conn = spec.connect().await.expect("connect");
    // Token by value, as the engine passes it…
    let token = conn.cancel.clone();
    cancel_and_expect_57014(&sb, &conn, "SELECT pg_sleep(30)", || {
        spec.cancel_query(token)
    })
    .await;
    // …and by reference.
    let (spec, token) = (&spec, &conn.cancel.clone());
    cancel_and_expect_57014(&sb, &conn, "SELECT pg_sleep(31)", move || async move {
        spec.cancel_query(token).await
    })
    .await;
}

#[tokio::test]
async fn notices_arrive_on_the_channel() {
    let sb = Sandbox::start().expect("start sandbox");
    let mut conn = connect(&superuser(&sb)).await;
    conn.client
        .batch_execute("DO $$BEGIN RAISE NOTICE 'hi'; RAISE WARNING 'careful: %', 42; END$$")
        .await
        .expect("DO block");
    assert_eq!(
        next_notice(&mut conn.notices).await,
        Notice {
            severity: pgpilot::pg::Severity::Notice,
            code: "00000".into(),
            message: "hi".into()
        }
    );
    let warning = next_notice(&mut conn.notices).await;
    assert_eq!(
        (
            warning.severity.as_str(),
            warning.code.as_str(),
            warning.message.as_str()
        ),
        ("WARNING", "01000", "careful: 42")
    );

    // The reason a connection ends arrives last.
    let pid = scalar(&conn, "SELECT pg_backend_pid()").await;
    admin(&sb, &format!("SELECT pg_terminate_backend({pid})")).await;
    let last = next_notice(&mut conn.notices).await;
    assert_eq!(
        (last.severity.as_str(), last.code.as_str()),
        ("FATAL", "57P01"),
        "{last:?}"
    );
    let conn = &conn;
    wait_for(
        "the client to see the connection closed",
        move || async move { conn.is_closed() },
    )
    .await;
}

async fn next_notice(notices: &mut tokio::sync::mpsc::UnboundedReceiver<Notice>) -> Notice {
    tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice within 5 s")
        .expect("channel open")
}

/// Runs the pgpilot binary with `vars` set, the caller's PG* settings
/// removed, and HOME and the audit directory in `home`.
fn pgpilot(args: &[&str], vars: &[(&str, &str)], home: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilot"));
    for var in PG_VARS {
        command.env_remove(var);
    }
    command
        .args(args)
        .envs(vars.iter().copied())
        .env("HOME", home)
        .env("PGPILOT_DATA_DIR", home.join("data"))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pgpilot")
}

const ONE_CHECK: &str = r#"
[runbook]
id = "one-check"
title = "One check"

[[phase]]
id = "p"

  [[phase.step]]
  id = "select-one"
  kind = "check"
  sql = "SELECT 1"
  expect = { rows = 1 }
"#;

#[tokio::test]
async fn an_ignored_password_file_is_reported_by_every_connecting_command_without_its_password() {
    let sb = password_sandbox().await;
    let home = tempfile::tempdir().expect("tempdir");
    let passfile = home.path().join("pgpass");
    fs::write(
        &passfile,
        format!("*:{}:postgres:alice:{ALICE_PGPASS}\n", sb.port()),
    )
    .expect("write pgpass");
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o644)).expect("chmod");
    let passfile_text = passfile.display().to_string();
    let runbook = home.path().join("one-check.toml");
    fs::write(&runbook, ONE_CHECK).expect("write runbook");
    let runbook = runbook.display().to_string();
    let warning = format!(
        "pgpilot: warning: password file {passfile_text} has group or world access and was \
         ignored; permissions should be u=rw (0600) or less: chmod 0600 {passfile_text}"
    );
    let said = |out: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let everything = format!("{stdout}{stderr}");
        assert!(
            !everything.contains("rrect") && !everything.contains(ALICE_PASSWORD),
            "the password was printed:\n{everything}"
        );
        assert_eq!(
            stderr.matches(warning.as_str()).count(),
            1,
            "the warning, once:\n{everything}"
        );
        out.status.code()
    };

    // alice's password is only in the ignored file: the connection fails,
    // and the warning says why.
    let alice_db = alice(&sb);
    let status = pgpilot(
        &["status", &runbook, "--db", &alice_db],
        &[("PGPASSFILE", &passfile_text)],
        home.path(),
    );
    assert_eq!(said(&status), Some(1));

    // The commands that connect as a trusted role succeed, and still warn.
    let postgres_db = superuser(&sb);
    let vars = [("PGPASSFILE", passfile_text.as_str())];
    let monitor = pgpilot(
        &["monitor", "--once", "--db", &postgres_db],
        &vars,
        home.path(),
    );
    assert_eq!(said(&monitor), Some(0));
    let status = pgpilot(
        &["status", &runbook, "--db", &postgres_db],
        &vars,
        home.path(),
    );
    assert_eq!(said(&status), Some(0));
    let run = pgpilot(
        &["run", &runbook, "--headless", "--db", &postgres_db],
        &vars,
        home.path(),
    );
    assert_eq!(said(&run), Some(0));
    let rollback = pgpilot(
        &["rollback", &runbook, "--headless", "--db", &postgres_db],
        &vars,
        home.path(),
    );
    assert_eq!(said(&rollback), Some(0));
}
