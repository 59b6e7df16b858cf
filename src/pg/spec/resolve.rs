//! libpq's resolution order: what `--db` leaves out comes from PG* variables,
//! then the password file, then defaults; TLS settings and their files.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::config::Host;

use super::conninfo::{Parsed, parse};
use super::env::{Env, System, expand_home, host_name};
use super::*;
use crate::pg::PgError;
use crate::pg::pgpass;
use crate::pg::tls::{Roots, SslMode, TlsSettings};

/// [`ConnSpec::resolve`] with the environment and machine facts given.
pub(crate) fn resolve_with(
    db: Option<&str>,
    env: &dyn Env,
    system: &System,
) -> Result<ConnSpec, PgError> {
    let db = db.map(str::trim).unwrap_or("");
    let parsed = parse(db)?;
    let Parsed {
        config,
        mut extras,
        present,
        port_given,
    } = parsed;
    let mut warnings = std::mem::take(&mut extras.warnings);
    if env.var("PGSERVICE").is_some() {
        warnings.push("PGSERVICE is set, but pgpilot does not read pg_service.conf".to_string());
    }

    // Hosts and host addresses.
    let mut names: Vec<HostName> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => HostName::Tcp(name.clone()),
            Host::Unix(path) => HostName::Unix(path.clone()),
        })
        .collect();
    let mut addrs: Vec<IpAddr> = config.get_hostaddrs().to_vec();
    if names.is_empty()
        && let Some(v) = env.var("PGHOST")
    {
        names = v.split(',').map(|h| host_name(h.trim(), system)).collect();
    }
    if addrs.is_empty()
        && let Some(v) = env.var("PGHOSTADDR")
    {
        addrs = v
            .split(',')
            .map(|a| {
                a.trim().parse().map_err(|_| {
                    PgError::Config(format!(
                        "PGHOSTADDR={v} is not a list of IP addresses — unset it or give \
                         addresses like 10.0.0.5"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if names.is_empty() && addrs.is_empty() {
        names.push(host_name("", system));
    }
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(PgError::Config(format!(
            "{} hosts but {} hostaddrs were given — give one hostaddr per host, or none",
            names.len(),
            addrs.len()
        )));
    }
    let count = names.len().max(addrs.len());

    // Ports.
    let mut ports: Vec<u16> = if port_given {
        config.get_ports().to_vec()
    } else {
        Vec::new()
    };
    if ports.is_empty()
        && let Some(v) = env.var("PGPORT")
    {
        ports = v
            .split(',')
            .map(|p| {
                let p = p.trim();
                if p.is_empty() {
                    return Ok(DEFAULT_PORT);
                }
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    PgError::Config(format!(
                        "PGPORT={v} is not a port number — set it to a number like 5432, or \
                         unset it"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if ports.is_empty() {
        ports.push(DEFAULT_PORT);
    }
    if ports.len() != 1 && ports.len() != count {
        return Err(PgError::Config(format!(
            "{} ports for {count} hosts — give one port, or one per host",
            ports.len()
        )));
    }

    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| env.var("PGUSER"))
        .or_else(|| system.os_user.clone())
        .ok_or_else(|| {
            PgError::Config(
                "cannot tell which user to connect as: the OS user is unknown — set PGUSER or \
                 user= in --db"
                    .to_string(),
            )
        })?;
    let dbname = config
        .get_dbname()
        .map(str::to_string)
        .or_else(|| env.var("PGDATABASE"))
        .unwrap_or_else(|| user.clone());

    let password = match config.get_password() {
        Some(p) if !p.is_empty() => Some(Secret {
            value: p.to_vec(),
            from: "the connection string".to_string(),
        }),
        _ => env.var("PGPASSWORD").map(|p| Secret {
            value: p.into_bytes(),
            from: "PGPASSWORD".to_string(),
        }),
    };

    let application_name = config
        .get_application_name()
        .map(str::to_string)
        .or_else(|| env.var("PGAPPNAME"))
        .or(extras.fallback_application_name.take())
        .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_string());

    // TLS.
    let sslrootcert = extras.sslrootcert.or_else(|| env.var("PGSSLROOTCERT"));
    let system_roots = sslrootcert.as_deref() == Some("system");
    let ssl_mode = match extras.sslmode.or_else(|| env.var("PGSSLMODE")) {
        Some(m) => m.parse::<SslMode>().map_err(PgError::Config)?,
        None if extras.ssl_true => SslMode::Require,
        // libpq: sslrootcert=system makes verify-full the default.
        None if system_roots => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if system_roots && ssl_mode != SslMode::VerifyFull {
        return Err(PgError::Config(format!(
            "sslrootcert=system needs sslmode=verify-full, not {ssl_mode} — drop sslmode or set \
             it to verify-full"
        )));
    }
    let dot_postgresql = system.home.as_ref().map(|h| h.join(".postgresql"));
    let roots = match sslrootcert {
        Some(s) if s == "system" => Roots::System,
        Some(path) => Roots::File(expand_home(&path, system)),
        None => {
            let default = dot_postgresql.as_ref().map(|d| d.join("root.crt"));
            match default {
                Some(path) if path.is_file() => Roots::File(path),
                Some(path) if ssl_mode.verifies() => {
                    return Err(PgError::Config(format!(
                        "sslmode={ssl_mode} needs the CA certificate that signed the server's \
                         certificate, and root certificate file {} does not exist — set \
                         sslrootcert (or PGSSLROOTCERT) to it, use sslrootcert=system for the \
                         system's trusted CAs, or use sslmode=require",
                        path.display()
                    )));
                }
                None if ssl_mode.verifies() => {
                    return Err(PgError::Config(format!(
                        "sslmode={ssl_mode} needs sslrootcert (or PGSSLROOTCERT) naming the CA \
                         certificate that signed the server's certificate"
                    )));
                }
                _ => Roots::None,
            }
        }
    };
    let sslcert = extras
        .sslcert
        .or_else(|| env.var("PGSSLCERT"))
        .map(|p| expand_home(&p, system))
        .or_else(|| {
            dot_postgresql
                .as_ref()
                .map(|d| d.join("postgresql.crt"))
                .filter(|p| p.is_file())
        });
    let sslkey = extras
        .sslkey
        .or_else(|| env.var("PGSSLKEY"))
        .map(|p| expand_home(&p, system))
        .or_else(|| {
            dot_postgresql
                .as_ref()
                .map(|d| d.join("postgresql.key"))
                .filter(|p| p.is_file())
        });
    let client_cert = match (sslcert, sslkey) {
        (Some(c), Some(k)) if c.is_file() => Some((c, k)),
        (Some(c), None) if c.is_file() => {
            return Err(PgError::Config(format!(
                "client certificate {} given without its key — set sslkey (or PGSSLKEY)",
                c.display()
            )));
        }
        _ => None,
    };
    let tls = TlsSettings {
        check_name: ssl_mode == SslMode::VerifyFull,
        roots,
        client_cert,
    };

    let connect_timeout = match config.get_connect_timeout() {
        Some(t) => Some(*t),
        None if present.contains("connect_timeout") => None, // 0: wait forever
        None => match env.var("PGCONNECT_TIMEOUT") {
            Some(v) => {
                let secs: i64 = v.trim().parse().map_err(|_| {
                    PgError::Config(format!(
                        "PGCONNECT_TIMEOUT={v} is not a number of seconds — set it to e.g. 10, \
                         or unset it"
                    ))
                })?;
                // libpq: 0 or less waits forever; 1 is raised to 2.
                (secs > 0).then(|| Duration::from_secs(secs.max(2).unsigned_abs()))
            }
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        },
    };

    let mut base = config;
    if base.get_options().is_none()
        && let Some(o) = env.var("PGOPTIONS")
    {
        base.options(o);
    }
    if !present.contains("target_session_attrs")
        && let Some(v) = env.var("PGTARGETSESSIONATTRS")
    {
        base.target_session_attrs(match v.as_str() {
            "any" => tokio_postgres::config::TargetSessionAttrs::Any,
            "read-write" => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
            "read-only" => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
            _ => {
                return Err(PgError::Config(format!(
                    "PGTARGETSESSIONATTRS={v} is not supported — use any, read-write or read-only"
                )));
            }
        });
    }
    if !present.contains("channel_binding")
        && let Some(v) = env.var("PGCHANNELBINDING")
    {
        base.channel_binding(match v.as_str() {
            "disable" => tokio_postgres::config::ChannelBinding::Disable,
            "prefer" => tokio_postgres::config::ChannelBinding::Prefer,
            "require" => tokio_postgres::config::ChannelBinding::Require,
            _ => {
                return Err(PgError::Config(format!(
                    "PGCHANNELBINDING={v} is not valid — use disable, prefer or require"
                )));
            }
        });
    }

    let mut hosts = Vec::with_capacity(count);
    for i in 0..count {
        let hostaddr = addrs.get(i).copied();
        let host = match names.get(i) {
            Some(h) => h.clone(),
            // hostaddr alone: the address is also the name TLS checks.
            None => HostName::Tcp(hostaddr.map(|a| a.to_string()).unwrap_or_default()),
        };
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT);
        hosts.push(HostSpec {
            host,
            hostaddr,
            port,
            pgpass: None,
        });
    }

    // The password file, when no password was given.
    if password.is_none() {
        let passfile = extras
            .passfile
            .or_else(|| env.var("PGPASSFILE"))
            .map(|p| expand_home(&p, system))
            .or_else(|| system.home.as_ref().map(|h| h.join(".pgpass")));
        if let Some(path) = passfile {
            for h in &mut hosts {
                let host = match (&h.host, h.hostaddr) {
                    (HostName::Unix(p), _) if p == Path::new(DEFAULT_SOCKET_DIR) => {
                        "localhost".to_string()
                    }
                    (HostName::Tcp(name), Some(addr)) if name.is_empty() => addr.to_string(),
                    (name, _) => name.as_display(),
                };
                let port = h.port.to_string();
                let key = pgpass::Key {
                    host: &host,
                    port: &port,
                    database: &dbname,
                    user: &user,
                };
                match pgpass::lookup(&path, key) {
                    Ok(Some(found)) => {
                        h.pgpass = Some(Secret {
                            value: found.password.into_bytes(),
                            from: format!("{} line {}", path.display(), found.line),
                        });
                    }
                    Ok(None) => {}
                    Err(warning) => {
                        if !warnings.contains(&warning) {
                            warnings.push(warning);
                        }
                    }
                }
            }
        }
    }

    Ok(ConnSpec {
        hosts,
        user,
        dbname,
        password,
        application_name,
        ssl_mode,
        tls,
        connect_timeout,
        base,
        warnings,
    })
}
