//! libpq's password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`).
//!
//! Each line is `hostname:port:database:username:password`; `*` in one of
//! the first four fields matches anything, `\:` and `\\` stand for `:` and
//! `\`, lines starting with `#` are comments. The first matching line wins.
//! Like libpq, a file that is not a plain file, or whose mode gives the
//! group or others any access, is ignored with a warning.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a password-file lookup is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub database: &'a str,
    pub user: &'a str,
}

/// A password found in the file, with the (1-based) line it came from.
pub(crate) struct Found {
    pub password: String,
    pub line: usize,
}

/// Looks `key` up in the password file at `path`. A missing file is no
/// error; problems that make libpq ignore the file come back as `Err`
/// with a warning to show.
pub(crate) fn lookup(path: &Path, key: Key<'_>) -> Result<Option<Found>, String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "password file {} cannot be read: {e}",
                path.display()
            ));
        }
    };
    if !meta.is_file() {
        return Err(format!(
            "password file {} is not a plain file; it was ignored",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password file {} has group or world access and was ignored; \
             permissions should be u=rw (0600) or less: chmod 0600 {}",
            path.display(),
            path.display()
        ));
    }
    let bytes = fs::read(path)
        .map_err(|e| format!("password file {} cannot be read: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(find(&text, key))
}

/// The first line of `text` matching `key`.
pub(crate) fn find(text: &str, key: Key<'_>) -> Option<Found> {
    for (index, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        let mut matched = true;
        for want in [key.host, key.port, key.database, key.user] {
            match match_field(rest, want) {
                Some(after) => rest = after,
                None => {
                    matched = false;
                    break;
                }
            }
        }
        if !matched {
            continue;
        }
        let password = unescape_password(rest);
        if password.is_empty() {
            // libpq treats an empty password as none.
            continue;
        }
        return Some(Found {
            password,
            line: index + 1,
        });
    }
    None
}

/// Matches one `:`-terminated field at the start of `field` against `want`
/// (libpq's `pwdfMatchesString`); returns what follows the colon.
fn match_field<'a>(field: &'a str, want: &str) -> Option<&'a str> {
    if let Some(after) = field.strip_prefix("*:") {
        return Some(after);
    }
    let mut want = want.chars();
    let mut chars = field.char_indices();
    while let Some((i, c)) = chars.next() {
        let (c, escaped) = if c == '\\' {
            match chars.next() {
                Some((_, next)) => (next, true),
                None => return None,
            }
        } else {
            (c, false)
        };
        if c == ':' && !escaped {
            return want.next().is_none().then(|| &field[i + 1..]);
        }
        if want.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The password field: up to the first unescaped `:`, backslashes removed.
fn unescape_password(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            },
            ':' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, port: &'a str, database: &'a str, user: &'a str) -> Key<'a> {
        Key {
            host,
            port,
            database,
            user,
        }
    }

    #[test]
    fn first_match_wins_and_wildcards() {
        let text = "# comment\n\
                    db1:5432:app:alice:one\n\
                    *:*:app:alice:two\n\
                    *:*:*:*:three\n";
        let f = find(text, key("db1", "5432", "app", "alice")).unwrap();
        assert_eq!((f.password.as_str(), f.line), ("one", 2));
        assert_eq!(
            find(text, key("db2", "5433", "app", "alice"))
                .unwrap()
                .password,
            "two"
        );
        assert_eq!(
            find(text, key("x", "1", "y", "z")).unwrap().password,
            "three"
        );
        assert!(find("db1:5432:app:alice:one\n", key("db1", "5432", "app", "bob")).is_none());
    }

    #[test]
    fn escapes() {
        let text = "my\\:host:5432:d\\\\b:u:pa\\:ss\\\\w:ignored\r\n";
        let f = find(text, key("my:host", "5432", "d\\b", "u")).unwrap();
        assert_eq!(f.password, "pa:ss\\w");
        // A field must match whole, not as a prefix.
        assert!(find("host:5432:db:user:pw", key("host", "5432", "db", "use")).is_none());
        assert!(find("host:5432:db:use:pw", key("host", "5432", "db", "user")).is_none());
        // Too few fields.
        assert!(find("host:5432:db", key("host", "5432", "db", "user")).is_none());
    }
}
