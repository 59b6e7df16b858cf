//! Removing passwords from text before it is shown, logged or audited.

/// What replaces a password.
const MASK: &str = "***";

/// Returns `text` with every password it can recognise replaced by `***`:
///
/// - the password of a URI's user info (`postgresql://user:secret@host` →
///   `postgresql://user:***@host`), for any scheme;
/// - a `password=` parameter (any case, so also `PGPASSWORD=` and
///   `sslpassword=`), with spaces around `=`, quoted (`'…'` or `"…"`, with
///   backslash escapes) or not; in a URI query (`?password=…&`) the value
///   ends at `&`, elsewhere at the first unescaped white space;
/// - a JSON member `"password": "…"`.
///
/// When in doubt it removes too much rather than too little. It is
/// idempotent: redacting redacted text changes nothing.
pub fn redact(text: &str) -> String {
    redact_params(&redact_uris(text))
}

/// Characters that end a URI inside free text.
fn ends_uri(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`.
fn redact_uris(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let after = pos + 3;
        out.push_str(&rest[..after]);
        let tail = &rest[after..];
        let end = tail.find(ends_uri).unwrap_or(tail.len());
        let token = &tail[..end];
        // The last '@' of the token: a password holding an unencoded '@'
        // is then masked whole (at worst a query value is masked too).
        match token.rfind('@') {
            Some(at) => match token[..at].find(':') {
                Some(colon) if colon + 1 < at => {
                    out.push_str(&token[..=colon]);
                    out.push_str(MASK);
                    out.push_str(&token[at..]);
                }
                _ => out.push_str(token),
            },
            None => out.push_str(token),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the values of `password=` parameters and JSON `"password":` members.
fn redact_params(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // bytes of `text` already in `out`
    let mut search = 0;
    while let Some(found) = lower[search..].find(KEY) {
        let key_start = search + found;
        let key_end = key_start + KEY.len();
        search = key_end;
        if key_start < copied {
            continue;
        }
        let Some((value_start, in_query, json)) = value_start(text, key_start, key_end) else {
            continue;
        };
        let value_end = if json {
            quoted_end(bytes, value_start).unwrap_or(text.len())
        } else {
            param_value_end(bytes, value_start, in_query)
        };
        if value_end == value_start {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(MASK);
        copied = value_end;
        search = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the value after a `password` keyword starts, whether the keyword
/// is a URI query parameter, and whether it is a JSON string; None when the
/// keyword is not followed by `=` (or, quoted, by `:` and a string).
fn value_start(text: &str, key_start: usize, key_end: usize) -> Option<(usize, bool, bool)> {
    let bytes = text.as_bytes();
    let in_query = key_start > 0 && matches!(bytes[key_start - 1], b'?' | b'&');
    let mut i = key_end;
    // JSON: "password": "value"
    if bytes.get(i) == Some(&b'"') && key_start > 0 && bytes[key_start - 1] == b'"' {
        i += 1;
        i = skip_spaces(bytes, i);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_spaces(bytes, i + 1);
        return (bytes.get(i) == Some(&b'"')).then_some((i, false, true));
    }
    i = skip_spaces(bytes, i);
    if bytes.get(i) != Some(&b'=') {
        return None;
    }
    i += 1;
    if !in_query {
        i = skip_spaces(bytes, i);
    }
    Some((i, in_query, false))
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// End (exclusive) of a parameter value starting at `start`.
fn param_value_end(bytes: &[u8], start: usize, in_query: bool) -> usize {
    if let Some(end) = quoted_end(bytes, start) {
        return end;
    }
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() || (in_query && matches!(b, b'&' | b'#')) {
            break;
        }
        if b == b'\\' && !in_query {
            i += 1; // the escaped byte belongs to the value
        }
        i += 1;
    }
    i.min(bytes.len())
}

/// For a value starting with a quote, the end after its closing quote (or
/// the end of the text when it is not closed); None when not quoted.
fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = *bytes.get(start)?;
    if quote != b'\'' && quote != b'"' {
        return None;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    Some(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn uris() {
        assert_eq!(
            redact("postgresql://u:secret@h:5432/db?sslmode=require"),
            "postgresql://u:***@h:5432/db?sslmode=require"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h:5432/db"), "postgres://h:5432/db");
        assert_eq!(
            redact("failed: postgres://u:p@ss/w@h/db, retrying"),
            "failed: postgres://u:***@h/db, retrying"
        );
        assert_eq!(redact("x postgres://u:***@h y"), "x postgres://u:***@h y");
    }

    #[test]
    fn params() {
        assert_eq!(
            redact("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("host=h password = 'a b\\' c' user=u"),
            "host=h password = *** user=u"
        );
        assert_eq!(redact("PGPASSWORD=hunter2 psql"), "PGPASSWORD=*** psql");
        assert_eq!(redact("password=a\\ b c"), "password=*** c");
        assert_eq!(
            redact("postgres://h/db?password=s3&sslmode=require"),
            "postgres://h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact(r#"{"password": "x\"y", "a": 1}"#),
            r#"{"password": ***, "a": 1}"#
        );
        assert_eq!(
            redact("password authentication failed for user \"u\""),
            "password authentication failed for user \"u\""
        );
        assert_eq!(redact("password="), "password=");
        assert_eq!(redact("password='unterminated"), "password=***");
    }
}
