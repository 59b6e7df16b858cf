//! The one redactor: passwords out of every text pgpilot writes down or shows
//! (audit records, the screen, `plan`, headless output, the monitor's view of
//! other sessions' queries, error messages).
//!
//! SQL is read with PostgreSQL's own scanner, so every spelling of a literal
//! counts: `PASSWORD 'x'`, `E'x'`, `$$x$$`, `$tag$x$tag$`, `U&'x'`, with
//! comments or newlines before it; `CREATE USER MAPPING … OPTIONS (password
//! '…')` is the same keyword. Text the scanner cannot read (another
//! session's query cut at `track_activity_query_size`, which can end inside a
//! literal) fails closed: after a `password` word every literal is masked,
//! and an unterminated one to the end. Then connection strings in any text:
//! `password=…` parameters (also `PGPASSWORD=`, `sslpassword=`, inside a SQL
//! literal such as `dblink_connect('… password=…')`), URI user info
//! (`postgresql://u:secret@h`) and JSON `"password": "…"` members.
//!
//! When in doubt it removes too much rather than too little. It is
//! idempotent: redacting redacted text changes nothing.

use pg_query::protobuf::Token;

/// What replaces a password.
const MASK: &str = "***";
/// What replaces a SQL literal holding a password.
const SQL_MASK: &str = "'***'";

/// `text` with every password it can recognise replaced.
pub fn redact(text: &str) -> String {
    let keyword = text
        .as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"password"));
    if !keyword && !text.contains("://") {
        return text.to_string();
    }
    // Connection strings first: their quoting (backslash escapes) is not
    // SQL's, and a SQL scan of one could read its quotes wrongly.
    let conninfo = redact_params(&redact_uris(text));
    if keyword {
        redact_sql(&conninfo)
    } else {
        conninfo
    }
}

/// Masks the literal after each PASSWORD keyword (or an option named
/// `…password`), as the scanner sees the text; fails closed when it cannot.
fn redact_sql(text: &str) -> String {
    let Ok(tokens) = pg_query::scan_tokens(text) else {
        return redact_unscannable(text);
    };
    let mut ranges = Vec::new();
    let mut after_password = false;
    for t in &tokens {
        let kind = Token::try_from(t.token).ok();
        let (s, e) = (t.start as usize, t.end as usize);
        if matches!(kind, Some(Token::SqlComment | Token::CComment)) {
            continue;
        }
        if after_password && matches!(kind, Some(Token::Sconst | Token::Usconst)) {
            ranges.push((s, e));
        }
        after_password = match kind {
            Some(Token::Password) => true,
            Some(Token::Ident) => text.get(s..e).is_some_and(|w| {
                w.trim_matches('"')
                    .to_ascii_lowercase()
                    .ends_with("password")
            }),
            _ => false,
        };
    }
    replace_ranges(text, &ranges, SQL_MASK)
}

/// For text the scanner rejects: every literal after the first `password`
/// word is masked; one without its end is masked to the end of the text.
fn redact_unscannable(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    let Some(first) = word_positions(&lower, "password").next() else {
        return text.to_string();
    };
    let mut ranges = Vec::new();
    let mut i = first + "password".len();
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = lower[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = lower[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            }
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E');
                let start = if escapes {
                    i - 1
                } else if i >= 2 && b[i - 2..i].eq_ignore_ascii_case(b"u&") {
                    i - 2
                } else {
                    i
                };
                let end = quoted_literal_end(b, i, escapes);
                ranges.push((start, end));
                i = end;
            }
            b'$' => match dollar_tag(text, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    let end = text[body..]
                        .find(tag)
                        .map_or(b.len(), |n| body + n + tag.len());
                    ranges.push((i, end));
                    i = end;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    replace_ranges(text, &ranges, SQL_MASK)
}

/// End (exclusive) of a `'…'` literal starting at `open`, or the text's end.
fn quoted_literal_end(b: &[u8], open: usize, escapes: bool) -> usize {
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if escapes => j += 2,
            b'\'' if b.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// `$tag$` (or `$$`) starting at `i`, if one does.
fn dollar_tag(text: &str, i: usize) -> Option<&str> {
    let rest = &text[i + 1..];
    let close = rest.find('$')?;
    let tag = &rest[..close];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    valid.then(|| &text[i..i + close + 2])
}

/// Byte offsets of `word` in `lower` where it is not part of a longer word.
fn word_positions<'a>(lower: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    lower.match_indices(word).map(|(i, _)| i).filter(move |&i| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn replace_ranges(text: &str, ranges: &[(usize, usize)], mask: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for &(s, e) in ranges {
        if s < copied {
            continue;
        }
        out.push_str(&text[copied..s]);
        out.push_str(mask);
        copied = e;
    }
    out.push_str(&text[copied..]);
    out
}

/// Characters that end a URI inside free text.
fn ends_uri(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`')
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`.
fn redact_uris(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
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
        if value_end == value_start || text[value_start..value_end] == *MASK {
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

/// End (exclusive) of a parameter value starting at `start`. Unquoted, it
/// ends at white space (or `&`/`#` in a URI query), or at a single quote
/// that closes the SQL literal the conninfo stands in (a doubled `''` is
/// part of the value).
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
        if b == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
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
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
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
    fn every_spelling_of_a_sql_password() {
        for (sql, want) in [
            (
                "CREATE ROLE app LOGIN PASSWORD 'it''s secret';",
                "CREATE ROLE app LOGIN PASSWORD '***';",
            ),
            (
                "ALTER ROLE a ENCRYPTED password E'x\\'y'",
                "ALTER ROLE a ENCRYPTED password '***'",
            ),
            (
                "ALTER ROLE a PASSWORD $$s3cret$$",
                "ALTER ROLE a PASSWORD '***'",
            ),
            (
                "ALTER ROLE a PASSWORD $pw$s3cret$pw$",
                "ALTER ROLE a PASSWORD '***'",
            ),
            (
                "ALTER USER a PASSWORD U&'s\\0033cret'",
                "ALTER USER a PASSWORD '***'",
            ),
            (
                "ALTER ROLE a PASSWORD -- note\n 's3cret'",
                "ALTER ROLE a PASSWORD -- note\n '***'",
            ),
            (
                "ALTER ROLE a PASSWORD /* c */\n's3cret'",
                "ALTER ROLE a PASSWORD /* c */\n'***'",
            ),
            (
                "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 's3cret')",
                "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password '***')",
            ),
            (
                "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET \"password\" 's3cret')",
                "ALTER USER MAPPING FOR u SERVER s OPTIONS (SET \"password\" '***')",
            ),
            ("ALTER ROLE a PASSWORD NULL", "ALTER ROLE a PASSWORD NULL"),
            (
                "SELECT password_hash FROM users",
                "SELECT password_hash FROM users",
            ),
        ] {
            assert_eq!(redact(sql), want, "{sql}");
        }
    }

    #[test]
    fn conninfo_strings_inside_sql() {
        let out = redact("SELECT dblink_connect('host=h password=s3cret dbname=x')");
        assert!(!out.contains("s3cret"), "{out}");
        let out = redact("SELECT dblink_connect('host=h password=s3''cret')");
        assert!(!out.contains("cret"), "{out}");
        assert!(out.ends_with("')"), "{out}");
    }

    #[test]
    fn a_query_cut_inside_its_literal_fails_closed() {
        for cut in [
            "ALTER ROLE a PASSWORD 's3cr",
            "ALTER ROLE a PASSWORD $$s3cr",
            "ALTER ROLE a PASSWORD E's3\\'cr",
            "ALTER ROLE a VALID UNTIL 'x' PASSWORD 'ok' CONNECTION LIMIT 1 'and s3cr",
        ] {
            let out = redact(cut);
            assert!(!out.contains("s3cr"), "{cut} -> {out}");
            assert!(out.contains("'***'"), "{cut} -> {out}");
        }
    }

    #[test]
    fn conninfo_and_uris() {
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact("PGPASSWORD=abc psql"), "PGPASSWORD=*** psql");
        assert_eq!(redact("password = 'a b''c' x"), "password = *** x");
        assert_eq!(
            redact("postgres://h/db?password=s3&sslmode=require"),
            "postgres://h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact("could not connect to postgresql://bob:pw@db:5432/app?x=1"),
            "could not connect to postgresql://bob:***@db:5432/app?x=1"
        );
        assert_eq!(redact("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(
            redact(r#"{"password": "x\"y", "a": 1}"#),
            r#"{"password": ***, "a": 1}"#
        );
        assert_eq!(
            redact("password authentication failed for user \"u\""),
            "password authentication failed for user \"u\""
        );
        assert_eq!(
            redact("Überprüfung password=ä ok"),
            "Überprüfung password=*** ok"
        );
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        for t in [
            "ALTER ROLE a PASSWORD 's3cret'",
            "host=h password=x",
            "postgres://u:p@h/db",
            "ALTER ROLE a PASSWORD 'cut",
        ] {
            let once = redact(t);
            assert_eq!(redact(&once), once, "{t}");
        }
    }
}
