//! Keeps passwords out of the audit trail, whatever the caller passed in.
//!
//! The pg module redacts what it builds; this is the last line of defence for
//! SQL text and messages (a `CREATE ROLE … PASSWORD '…'` step, a driver error
//! quoting a conninfo string).

/// What a password is replaced with.
const MASK: &str = "***";

/// Returns `text` with passwords replaced by `***`:
/// `password=VALUE` (any case, also `PGPASSWORD=`, quoted or not, spaces
/// around `=` allowed), the SQL form `PASSWORD 'literal'`, and the password of
/// `postgres://user:pass@host` / `postgresql://…` URIs.
pub fn redact(text: &str) -> String {
    redact_uris(&redact_password_words(text))
}

fn redact_password_words(text: &str) -> String {
    // ASCII lowercasing keeps byte offsets, so positions map back to `text`.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let start = from + found;
        let after_word = start + "password".len();
        from = after_word;
        let mut i = skip_spaces(bytes, after_word);
        let value_start;
        if bytes.get(i) == Some(&b'=') {
            value_start = skip_spaces(bytes, i + 1);
            i = value_start;
        } else {
            // The SQL form needs a word of its own followed by a literal.
            let word_start = start == 0 || !is_word_byte(bytes[start - 1]);
            let spaced = i > after_word;
            let literal = matches!(bytes.get(i), Some(b'\''))
                || (matches!(bytes.get(i), Some(b'E' | b'e')) && bytes.get(i + 1) == Some(&b'\''));
            if !(word_start && spaced && literal) {
                continue;
            }
            value_start = i;
        }
        let value_end = value_end(bytes, i);
        if value_end == value_start {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(quoted_mask(bytes[value_start]));
        copied = value_end;
        from = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

fn quoted_mask(first: u8) -> &'static str {
    match first {
        b'\'' | b'E' | b'e' => "'***'",
        b'"' => "\"***\"",
        _ => MASK,
    }
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
        i += 1;
    }
    i
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// End of a value starting at `i`: a quoted string (with `''`, `\'` and `""`
/// escapes) through its closing quote, else up to a separator.
fn value_end(bytes: &[u8], mut i: usize) -> usize {
    if matches!(bytes.get(i), Some(b'E' | b'e')) && bytes.get(i + 1) == Some(&b'\'') {
        i += 1;
    }
    match bytes.get(i) {
        Some(&q @ (b'\'' | b'"')) => {
            let mut j = i + 1;
            while j < bytes.len() {
                if bytes[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if bytes[j] == q {
                    if bytes.get(j + 1) == Some(&q) {
                        j += 2;
                        continue;
                    }
                    return j + 1;
                }
                j += 1;
            }
            bytes.len()
        }
        _ => {
            let mut j = i;
            while j < bytes.len()
                && !(bytes[j].is_ascii_whitespace() || b"&;,)'\"".contains(&bytes[j]))
            {
                j += 1;
            }
            j
        }
    }
}

fn redact_uris(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("postgres") {
        let start = from + found;
        let rest = &lower[start..];
        let scheme_len = if rest.starts_with("postgresql://") {
            "postgresql://".len()
        } else if rest.starts_with("postgres://") {
            "postgres://".len()
        } else {
            from = start + "postgres".len();
            continue;
        };
        let auth_start = start + scheme_len;
        let auth_len = text[auth_start..]
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '\'' || c == '"'
            })
            .unwrap_or(text.len() - auth_start);
        let authority = &text[auth_start..auth_start + auth_len];
        from = auth_start + auth_len;
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            out.push_str(&text[copied..auth_start + colon + 1]);
            out.push_str(MASK);
            copied = auth_start + at;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn conninfo_passwords() {
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact("PGPASSWORD=abc psql"), "PGPASSWORD=*** psql");
        assert_eq!(redact("password = 'a b''c' x"), "password = '***' x");
        assert_eq!(
            redact("?password=x&sslmode=require"),
            "?password=***&sslmode=require"
        );
    }

    #[test]
    fn sql_password_literals() {
        assert_eq!(
            redact("CREATE ROLE app LOGIN PASSWORD 'it''s secret';"),
            "CREATE ROLE app LOGIN PASSWORD '***';"
        );
        assert_eq!(
            redact("ALTER ROLE a ENCRYPTED password E'x\\'y'"),
            "ALTER ROLE a ENCRYPTED password '***'"
        );
        assert_eq!(
            redact("ALTER ROLE a PASSWORD NULL"),
            "ALTER ROLE a PASSWORD NULL"
        );
        assert_eq!(
            redact("SELECT password_hash FROM users"),
            "SELECT password_hash FROM users"
        );
    }

    #[test]
    fn uri_passwords() {
        assert_eq!(
            redact("could not connect to postgresql://bob:pw@db:5432/app?x=1"),
            "could not connect to postgresql://bob:***@db:5432/app?x=1"
        );
        assert_eq!(redact("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(
            redact("POSTGRES://a:b@h postgres://c:d@i"),
            "POSTGRES://a:***@h postgres://c:***@i"
        );
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(
            redact("Überprüfung password=ä ok"),
            "Überprüfung password=*** ok"
        );
    }
}
