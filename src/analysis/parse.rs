//! Statements from SQL text with the real PostgreSQL parser, and syntax errors
//! at their position.

use std::ffi::{CStr, CString, c_char, c_int};

use pg_query::protobuf::RawStmt;

/// A syntax error at a byte offset of the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub offset: usize,
}

/// One statement: its tree and where it stands in the text.
pub struct ParsedStatement {
    pub node: Option<pg_query::NodeEnum>,
    /// Byte range of the statement's text, without surrounding blanks and comments.
    pub start: usize,
    pub end: usize,
}

pub fn parse_statements(text: &str) -> Result<Vec<ParsedStatement>, SyntaxError> {
    let result = pg_query::parse(text, 0).map_err(|e| {
        let message = match e {
            pg_query::Error::Parse(m) => m,
            other => other.to_string(),
        };
        SyntaxError {
            offset: error_offset(text),
            message,
        }
    })?;
    Ok(result
        .protobuf
        .stmts
        .into_iter()
        .map(|raw| statement(text, raw))
        .collect())
}

fn statement(text: &str, raw: RawStmt) -> ParsedStatement {
    let from = usize::try_from(raw.stmt_location)
        .unwrap_or(0)
        .min(text.len());
    let to = match usize::try_from(raw.stmt_len) {
        Ok(0) | Err(_) => text.len(),
        Ok(len) => (from + len).min(text.len()),
    };
    let start = skip_blanks_and_comments(text, from, to);
    let end = from
        + text[from..to]
            .trim_end()
            .trim_end_matches(';')
            .trim_end()
            .len();
    ParsedStatement {
        node: raw.stmt.and_then(|n| n.node),
        start,
        end: end.max(start),
    }
}

fn skip_blanks_and_comments(text: &str, mut i: usize, end: usize) -> usize {
    let b = text.as_bytes();
    loop {
        while i < end && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i..i + 2) == Some(b"--") {
            while i < end && b[i] != b'\n' {
                i += 1;
            }
        } else if b.get(i..i + 2) == Some(b"/*") {
            match text[i + 2..end].find("*/") {
                Some(j) => i = i + 2 + j + 2,
                None => return i,
            }
        } else {
            return i;
        }
    }
}

// pg_query's safe API drops the error position, which a user needs to find a
// syntax error in a long step; libpg_query's C API keeps it. These mirror
// pg_query.h (PgQueryError, PgQueryParseResult).
#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

unsafe extern "C" {
    fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

/// The byte offset PostgreSQL reports for the error in `text` (0 when unknown).
fn error_offset(text: &str) -> usize {
    let Ok(input) = CString::new(text) else {
        return text.find('\0').unwrap_or(0);
    };
    // SAFETY: `input` is a valid NUL-terminated string that outlives the call;
    // the result is read only while it is alive and freed exactly once.
    let cursor = unsafe {
        let result = pg_query_parse(input.as_ptr());
        let pos = if result.error.is_null() {
            0
        } else {
            let _ = CStr::from_ptr((*result.error).message);
            (*result.error).cursorpos
        };
        pg_query_free_parse_result(result);
        pos
    };
    // cursorpos counts characters from 1 (PostgreSQL's pg_mbstrlen).
    let chars = usize::try_from(cursor).unwrap_or(0).saturating_sub(1);
    text.char_indices()
        .nth(chars)
        .map(|(i, _)| i)
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_their_ranges() {
        let text = "-- first\nSELECT 1;\n\n  /* c */ UPDATE t SET a = 1 ;";
        let stmts = parse_statements(text).unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(&text[stmts[0].start..stmts[0].end], "SELECT 1");
        assert_eq!(&text[stmts[1].start..stmts[1].end], "UPDATE t SET a = 1");
    }

    #[test]
    fn syntax_error_has_its_position() {
        let text = "SELECT 1;\nSELEC 2;";
        let e = parse_statements(text).err().unwrap();
        assert_eq!(&text[e.offset..e.offset + 5], "SELEC");
        assert!(e.message.contains("syntax error"), "{}", e.message);
    }
}
