//! Reading `--db`: libpq's `key=value` syntax and `postgres[ql]://` URIs.
//! Settings tokio-postgres does not parse are taken out as [`Extras`]; the
//! rest is handed to tokio-postgres.

use std::collections::HashSet;

use crate::pg::{PgError, redact};

/// libpq settings tokio-postgres does not parse, taken out of the string.
#[derive(Default)]
pub(super) struct Extras {
    pub(super) sslmode: Option<String>,
    pub(super) sslrootcert: Option<String>,
    pub(super) sslcert: Option<String>,
    pub(super) sslkey: Option<String>,
    pub(super) passfile: Option<String>,
    pub(super) fallback_application_name: Option<String>,
    /// `ssl=true` in a URI (JDBC style) means sslmode=require.
    pub(super) ssl_true: bool,
    pub(super) warnings: Vec<String>,
}

impl Extras {
    /// Takes `key` if it is ours; false when it should go to tokio-postgres.
    fn take(&mut self, key: &str, value: String) -> Result<bool, PgError> {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            "sslcert" => self.sslcert = Some(value),
            "sslkey" => self.sslkey = Some(value),
            "passfile" => self.passfile = Some(value),
            "fallback_application_name" => self.fallback_application_name = Some(value),
            "ssl" => self.ssl_true = value == "true" || value == "1",
            "service" => {
                return Err(PgError::InvalidConnString {
                    reason: "service= (pg_service.conf) is not supported; give host, port and \
                             dbname instead"
                        .to_string(),
                });
            }
            "gssencmode" if value == "require" => {
                return Err(PgError::InvalidConnString {
                    reason: "gssencmode=require is not supported (pgpilot has no GSSAPI \
                             encryption); use TLS with sslmode=require or verify-full"
                        .to_string(),
                });
            }
            "gssencmode"
            | "sslcompression"
            | "sslsni"
            | "sslcrl"
            | "sslcrldir"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version"
            | "krbsrvname"
            | "gsslib"
            | "requirepeer"
            | "client_encoding"
            | "replication"
            | "sslpassword" => {
                self.warnings.push(format!(
                    "connection option {key} is not supported and was ignored"
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// What the connection string said, before fallbacks.
pub(super) struct Parsed {
    pub(super) config: tokio_postgres::Config,
    pub(super) extras: Extras,
    /// Keys given explicitly (for settings whose getters have defaults).
    pub(super) present: HashSet<String>,
    /// Whether any port was given (a URI host without a port gets 5432
    /// from tokio-postgres, but libpq would then use PGPORT).
    pub(super) port_given: bool,
}

/// Parses `--db`.
pub(super) fn parse(db: &str) -> Result<Parsed, PgError> {
    if db.is_empty() {
        return Ok(Parsed {
            config: tokio_postgres::Config::new(),
            extras: Extras::default(),
            present: HashSet::new(),
            port_given: false,
        });
    }
    if db.starts_with("postgresql://") || db.starts_with("postgres://") {
        return parse_uri(db);
    }
    if !db.contains('=') && !db.chars().any(char::is_whitespace) {
        // Like `psql -d NAME`: a bare word is a database name.
        let mut config = tokio_postgres::Config::new();
        config.dbname(db);
        return Ok(Parsed {
            config,
            extras: Extras::default(),
            present: HashSet::from(["dbname".to_string()]),
            port_given: false,
        });
    }
    parse_key_value(db)
}

pub(super) fn invalid(reason: impl Into<String>) -> PgError {
    PgError::InvalidConnString {
        reason: redact(&reason.into()),
    }
}

/// tokio-postgres' parse error, with its cause (it never holds a value).
pub(super) fn tokio_parse_error(e: &tokio_postgres::Error) -> PgError {
    invalid(crate::pg::error::describe(e).replace("invalid connection string: ", ""))
}

/// libpq's key=value syntax: `key = value`, values optionally in single
/// quotes, backslash escapes. Our keys are taken out; the rest is handed to
/// tokio-postgres, re-quoted.
pub(super) fn parse_key_value(db: &str) -> Result<Parsed, PgError> {
    let mut extras = Extras::default();
    let mut present = HashSet::new();
    let mut rest_params: Vec<(String, String)> = Vec::new();
    let mut chars = db.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(invalid(format!("missing \"=\" after \"{key}\"")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(invalid(format!("unterminated quoted value of \"{key}\"")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if value.is_empty() {
            continue; // libpq: an empty value is the same as none
        }
        present.insert(key.clone());
        if !extras.take(&key, value.clone())? {
            rest_params.push((key, value));
        }
    }
    let rebuilt = rest_params
        .iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(" ");
    let config: tokio_postgres::Config = if rebuilt.is_empty() {
        tokio_postgres::Config::new()
    } else {
        rebuilt.parse().map_err(|e| tokio_parse_error(&e))?
    };
    let port_given = present.contains("port");
    Ok(Parsed {
        config,
        extras,
        present,
        port_given,
    })
}

/// A `postgres[ql]://` URI: our query parameters are taken out, the rest
/// is parsed by tokio-postgres.
pub(super) fn parse_uri(db: &str) -> Result<Parsed, PgError> {
    let scheme_len = if db.starts_with("postgresql://") {
        "postgresql://".len()
    } else {
        "postgres://".len()
    };
    let body = &db[scheme_len..];
    // tokio-postgres takes everything up to the first '@' as user info.
    let after_creds = body.find('@').map_or(0, |i| i + 1);
    let (head, query) = match body[after_creds..].find('?') {
        Some(q) => body.split_at(after_creds + q),
        None => (body, ""),
    };
    let authority_end = head[after_creds..]
        .find('/')
        .map_or(head.len(), |i| after_creds + i);
    let authority = &head[after_creds..authority_end];
    let mut port_given = authority.split(',').any(|chunk| {
        let after_host = if chunk.starts_with('[') {
            chunk.find(']').map_or("", |i| &chunk[i + 1..])
        } else {
            chunk
        };
        after_host.contains(':')
    });

    let mut extras = Extras::default();
    let mut present = HashSet::new();
    let mut kept: Vec<&str> = Vec::new();
    for param in query.strip_prefix('?').unwrap_or("").split('&') {
        if param.is_empty() {
            continue;
        }
        let Some((raw_key, raw_value)) = param.split_once('=') else {
            return Err(invalid(format!(
                "URI parameter \"{}\" has no \"=\"",
                percent_decode(param).unwrap_or_default()
            )));
        };
        let key = percent_decode(raw_key)?;
        let value = percent_decode(raw_value)?;
        if value.is_empty() {
            continue;
        }
        present.insert(key.clone());
        if key == "port" {
            port_given = true;
        }
        if !extras.take(&key, value)? {
            kept.push(param);
        }
    }
    let mut rebuilt = String::with_capacity(db.len());
    rebuilt.push_str(&db[..scheme_len]);
    rebuilt.push_str(head);
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    let config: tokio_postgres::Config = rebuilt.parse().map_err(|e| tokio_parse_error(&e))?;
    Ok(Parsed {
        config,
        extras,
        present,
        port_given,
    })
}

pub(super) fn percent_decode(s: &str) -> Result<String, PgError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("bad percent-encoding in the URI"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("percent-encoded URI text is not UTF-8"))
}
