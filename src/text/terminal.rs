//! Text from outside — other sessions' queries, server notices, captured
//! values, object names, a runbook under review — on its way to a terminal
//! or a file a person opens. A terminal obeys what it is sent: ESC starts a
//! sequence that can clear the screen (CSI), set the window title or write
//! the clipboard (OSC 0/52); C1 controls do the same in one byte on some
//! terminals; bidirectional overrides (U+202A–U+202E, U+2066–U+2069) make
//! text display in another order than it reads (CVE-2021-42574). Each such
//! character is shown as a visible escape instead (`\x1b`, `\u{202e}`), so the
//! text stays readable and nothing hides.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is. Newline and tab are kept
/// by [`for_terminal`]; everything else below U+0020, DEL, C1, and the bidi
/// controls are not.
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Explicit directional embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn escape(c: char, out: &mut String) {
    use std::fmt::Write as _;
    let n = u32::from(c);
    let _ = if n <= 0xff {
        write!(out, "\\x{n:02x}")
    } else {
        write!(out, "\\u{{{n:04x}}}")
    };
}

fn make_safe(s: &str, keep: impl Fn(char) -> Option<char>) -> Cow<'_, str> {
    if !s
        .chars()
        .any(|c| is_unsafe(c) && keep(c).is_none_or(|k| k != c))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        // A Windows line end is a line end, not a carriage return.
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        match keep(c) {
            Some(k) => out.push(k),
            None if is_unsafe(c) => escape(c, &mut out),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `s` safe to print: newlines and tabs kept, every other control character
/// and every bidi control shown as an escape.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    make_safe(s, |c| matches!(c, '\n' | '\t').then_some(c))
}

/// `s` safe to print on one line: white space runs (newlines and tabs
/// included) become one space, other controls are escaped.
pub fn one_line(s: &str) -> String {
    let safe = make_safe(s, |c| (c == '\n' || c == '\t').then_some(' '));
    safe.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// JSON text (from serde_json, which escapes C0 controls) with C1 controls
/// and bidi controls escaped as `\uXXXX` too: the same data for a program,
/// nothing for a terminal that displays it. Such characters can only stand
/// inside JSON strings, so the result is valid JSON with the same values.
pub fn json_safe(json: String) -> String {
    if !json.chars().any(is_unsafe) {
        return json;
    }
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) && !matches!(c, '\n' | '\t' | '\r') {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A CSV cell: controls escaped as for a terminal, and a cell that a
/// spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
/// or carriage return; OWASP's CSV injection rule) prefixed with `'`.
/// Quoting for CSV itself is the caller's.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let safe = for_terminal(s);
    if formula {
        Cow::Owned(format!("'{safe}"))
    } else {
        safe
    }
}

/// A markdown code fence for `content`: backticks, one longer than the
/// longest run of backticks or tildes at the start of any of its lines (and
/// at least three), so the content cannot close it early.
pub fn markdown_fence(content: &str) -> String {
    let longest = content
        .lines()
        .map(|l| {
            let l = l.trim_start();
            let ticks = l.chars().take_while(|c| *c == '`').count();
            let tildes = l.chars().take_while(|c| *c == '~').count();
            ticks.max(tildes)
        })
        .chain(std::iter::once(
            // A run anywhere counts too: some renderers close on it.
            content.split(|c| c != '`').map(str::len).max().unwrap_or(0),
        ))
        .max()
        .unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// `s` as inert markdown text on one line (a table cell, a list item):
/// controls escaped as for a terminal, and every character that could start
/// markup here escaped with a backslash (CommonMark §2.4): code spans,
/// emphasis, raw HTML and autolinks, entities, inline links (`](`), table
/// pipes. An `_` inside a word cannot emphasise and stays as it is, so
/// `current_database()` still reads as itself.
pub fn markdown_text(s: &str) -> String {
    let line = one_line(s);
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i + 1).copied();
        let escape = match c {
            '\\' | '`' | '*' | '<' | '>' | '|' | '~' | '&' => true,
            '_' => {
                !(before.is_some_and(char::is_alphanumeric)
                    && after.is_some_and(char::is_alphanumeric))
            }
            ']' => matches!(after, Some('(' | '[')),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `s` as an inline code span on one line: shown exactly as it is, with a
/// backtick run longer than any inside it. In a table cell the caller still
/// escapes `|` (GFM splits cells before it reads code spans).
pub fn markdown_code(s: &str) -> String {
    let line = one_line(s);
    let longest = line.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let ticks = "`".repeat(longest + 1);
    let pad = if line.starts_with('`') || line.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{line}{pad}{ticks}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_reach_the_terminal_only_as_text() {
        let hostile = "a\x1b]0;pwned\x07b\x1b[2Jc\u{9b}31md\u{202e}evil\u{2066}";
        let safe = for_terminal(hostile);
        assert_eq!(
            safe,
            "a\\x1b]0;pwned\\x07b\\x1b[2Jc\\x9b31md\\u{202e}evil\\u{2066}"
        );
        assert!(!safe.chars().any(is_unsafe));
    }

    #[test]
    fn newlines_and_tabs_stay_and_crlf_is_a_newline() {
        assert_eq!(for_terminal("a\r\nb\tc\rd"), "a\nb\tc\\x0dd");
        assert!(matches!(for_terminal("plain é → text"), Cow::Borrowed(_)));
        assert_eq!(one_line("SELECT\n  1\t\x1b"), "SELECT 1 \\x1b");
    }

    #[test]
    fn json_keeps_its_values() {
        let v = serde_json::json!({ "q": "x\u{9b}y\u{202e}z\x1b" });
        let text = json_safe(serde_json::to_string(&v).unwrap());
        assert!(!text.chars().any(is_unsafe), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn csv_formulas_are_neutralised() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell("-1+1"), "'-1+1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("plain"), "plain");
    }

    #[test]
    fn fences_outgrow_the_content() {
        assert_eq!(markdown_fence("SELECT 1"), "```");
        assert_eq!(markdown_fence("a\n```\nb"), "````");
        assert_eq!(markdown_fence("~~~~~\n"), "``````");
        assert_eq!(markdown_fence("x ````` y"), "``````");
    }

    #[test]
    fn markdown_text_is_inert() {
        assert_eq!(
            markdown_text("**bold** <img src=x> [a](http://e) `c` a|b &amp;"),
            "\\*\\*bold\\*\\* \\<img src=x\\> [a\\](http://e) \\`c\\` a\\|b \\&amp;"
        );
        assert_eq!(
            markdown_text("current_database() _x_"),
            "current_database() \\_x\\_"
        );
        // The escape `one_line` makes is kept visible: its backslash escaped.
        assert_eq!(markdown_text("two\nlines\x1b[2J"), "two lines\\\\x1b[2J");
        assert_eq!(markdown_code("a`b"), "``a`b``");
        assert_eq!(markdown_code("`x"), "`` `x ``");
    }
}
