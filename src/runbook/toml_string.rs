//! Maps a decoded TOML string back to the bytes of the file it came from, so a
//! SQL error inside `sql = """…"""` is reported at its line and column in the
//! runbook, escapes and trimmed newlines included.

/// For each byte of the decoded string, the offset of the file byte it came from.
/// `None` when the token is not a string this decoder understands (then callers
/// fall back to the token's start).
pub fn decode_offsets(file: &str, token_start: usize, token_end: usize) -> Option<Vec<usize>> {
    let raw = file.get(token_start..token_end)?;
    let (delim_len, literal, multiline) = if raw.starts_with("'''") {
        (3, true, true)
    } else if raw.starts_with("\"\"\"") {
        (3, false, true)
    } else if raw.starts_with('\'') {
        (1, true, false)
    } else if raw.starts_with('"') {
        (1, false, false)
    } else {
        return None;
    };
    if raw.len() < 2 * delim_len {
        return None;
    }
    let body_start = token_start + delim_len;
    let body_end = token_end - delim_len;
    let bytes = file.as_bytes();
    let mut i = body_start;
    // A newline immediately after the opening delimiter is trimmed.
    if multiline {
        if bytes.get(i) == Some(&b'\n') {
            i += 1;
        } else if bytes.get(i..i + 2) == Some(b"\r\n") {
            i += 2;
        }
    }
    let mut map = Vec::with_capacity(body_end.saturating_sub(i));
    while i < body_end {
        let b = bytes[i];
        if literal || b != b'\\' {
            map.push(i);
            i += 1;
            continue;
        }
        let esc = *bytes.get(i + 1)?;
        let decoded_len = match esc {
            b'b' | b't' | b'n' | b'f' | b'r' | b'"' | b'\\' | b'e' => {
                let start = i;
                i += 2;
                map.push(start);
                continue;
            }
            b'x' => (4, 2),
            b'u' => (6, 4),
            b'U' => (10, 8),
            b' ' | b'\t' | b'\n' | b'\r' if multiline => {
                // Line-ending backslash: skip all whitespace and newlines after it.
                i += 1;
                while i < body_end && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                continue;
            }
            _ => return None,
        };
        let (raw_len, hex_len) = decoded_len;
        let hex = file.get(i + 2..i + 2 + hex_len)?;
        let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
        for _ in 0..ch.len_utf8() {
            map.push(i);
        }
        i += raw_len;
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(file: &str, decoded: &str) {
        let start = file.find(['"', '\'']).unwrap();
        let map = decode_offsets(file, start, file.len()).unwrap();
        assert_eq!(map.len(), decoded.len(), "{file:?}");
        // Every unescaped decoded byte maps onto the same byte in the file.
        for (d, &f) in decoded.bytes().zip(&map) {
            if file.as_bytes()[f] != b'\\' {
                assert_eq!(d, file.as_bytes()[f], "{file:?}");
            }
        }
    }

    #[test]
    fn maps_basic_and_literal_strings() {
        check("sql = \"SELECT 1\"", "SELECT 1");
        check("sql = 'SELECT \\n'", "SELECT \\n");
        check("sql = \"a\\tb\\u00e9c\"", "a\tb\u{e9}c");
    }

    #[test]
    fn trims_the_first_newline_of_multiline_strings() {
        check("sql = \"\"\"\nSELECT 1\nFROM t\"\"\"", "SELECT 1\nFROM t");
        check("sql = '''\nSELECT 1'''", "SELECT 1");
        check("sql = \"\"\"a \\\n   b\"\"\"", "a b");
    }
}
