//! The part of a .sql file a step runs: a dbmate-style section
//! (`-- migrate:up` / `-- migrate:down`), without the file's own
//! `BEGIN … COMMIT` around it, and optionally one statement of it.
//! Byte ranges into the file's text, so locations stay the file's own.

use std::ops::Range;

use pg_query::NodeEnum;
use pg_query::protobuf::TransactionStmtKind as T;

use crate::analysis::parse_statements;

/// The marker that opens a section: `-- migrate:NAME`, as dbmate writes it.
const MARKER: &str = "migrate:";

/// A section marker line: its name and the options after it
/// (`-- migrate:up transaction:false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionMarker<'a> {
    pub name: &'a str,
    pub options: &'a str,
}

fn marker(line: &str) -> Option<SectionMarker<'_>> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix(MARKER)?;
    let name_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let name = &rest[..name_end];
    (!name.is_empty()).then(|| SectionMarker {
        name,
        options: rest[name_end..].trim(),
    })
}

/// Every section marker of `text` with the byte range of its section's body
/// (from the line after the marker to the next marker or the end).
pub fn sections(text: &str) -> Vec<(SectionMarker<'_>, Range<usize>)> {
    let mut found: Vec<(SectionMarker<'_>, usize, usize)> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(m) = marker(line) {
            if let Some(last) = found.last_mut() {
                last.2 = at;
            }
            found.push((m, at + line.len(), text.len()));
        }
        at += line.len();
    }
    found.into_iter().map(|(m, s, e)| (m, s..e)).collect()
}

/// The body of section `name`, if the text has it.
pub fn section<'a>(text: &'a str, name: &str) -> Option<(SectionMarker<'a>, Range<usize>)> {
    sections(text).into_iter().find(|(m, _)| m.name == name)
}

/// `range` without the `BEGIN; … COMMIT;` the file wraps its statements in:
/// pgpilot runs the step in its own transaction, which is the one the file
/// asks for. Unchanged when the text does not parse or is not wrapped.
pub fn without_own_transaction(text: &str, range: Range<usize>) -> Range<usize> {
    unwrapped(text, range, false)
}

/// For a check or verify step, which must change nothing: also unwraps
/// `BEGIN … ROLLBACK` (sqitch's verify scripts end so). A change step's
/// `BEGIN … ROLLBACK` is left as it is: unwrapped, it would commit what
/// the file meant to discard.
pub fn without_own_read_only_block(text: &str, range: Range<usize>) -> Range<usize> {
    unwrapped(text, range, true)
}

fn unwrapped(text: &str, range: Range<usize>, rollback_closes: bool) -> Range<usize> {
    let part = &text[range.clone()];
    let Ok(stmts) = parse_statements(part) else {
        return range;
    };
    let kind = |i: usize| match stmts.get(i).and_then(|s| s.node.as_ref()) {
        Some(NodeEnum::TransactionStmt(t)) => T::try_from(t.kind).ok(),
        _ => None,
    };
    let n = stmts.len();
    let opens = matches!(kind(0), Some(T::TransStmtBegin | T::TransStmtStart));
    let closes = n >= 2
        && match kind(n - 1) {
            Some(T::TransStmtCommit) => true,
            Some(T::TransStmtRollback) => rollback_closes,
            _ => false,
        };
    let inner_control = (1..n.saturating_sub(1)).any(|i| kind(i).is_some());
    if !(opens && closes) || inner_control {
        return range;
    }
    // After BEGIN's own `;`, up to COMMIT's first byte.
    let after_begin = stmts[0].end;
    let after_begin = part[after_begin..]
        .find(';')
        .map_or(after_begin, |i| after_begin + i + 1);
    range.start + after_begin..range.start + stmts[n - 1].start
}

/// Statement `n` (from 1) of `range`: `Ok(range)`, or `Err(count)` when the
/// text has fewer. A text that does not parse is returned whole, so the
/// analysis reports its syntax error at its place.
pub fn statement(text: &str, range: Range<usize>, n: usize) -> Result<Range<usize>, usize> {
    let part = &text[range.clone()];
    let Ok(stmts) = parse_statements(part) else {
        return Ok(range);
    };
    match n.checked_sub(1).and_then(|i| stmts.get(i)) {
        Some(s) => Ok(range.start + s.start..range.start + s.end),
        None => Err(stmts.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DBMATE: &str = "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n\n-- migrate:down\nDROP INDEX i;\n";

    #[test]
    fn sections_split_at_markers_with_options() {
        let s = sections(DBMATE);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0.name, "up");
        assert_eq!(s[0].0.options, "transaction:false");
        assert_eq!(
            &DBMATE[s[0].1.clone()],
            "CREATE INDEX CONCURRENTLY i ON t (a);\n\n"
        );
        assert_eq!(&DBMATE[s[1].1.clone()], "DROP INDEX i;\n");
        assert!(section(DBMATE, "sideways").is_none());
    }

    #[test]
    fn own_transaction_is_unwrapped() {
        let t = "BEGIN;\nCREATE TABLE a (x int);\nCREATE TABLE b (x int);\nCOMMIT;\n";
        let r = without_own_transaction(t, 0..t.len());
        assert_eq!(
            t[r].trim(),
            "CREATE TABLE a (x int);\nCREATE TABLE b (x int);"
        );
        let unwrapped = "CREATE TABLE a (x int);\n";
        assert_eq!(
            without_own_transaction(unwrapped, 0..unwrapped.len()),
            0..unwrapped.len()
        );
    }

    #[test]
    fn a_read_only_block_ending_in_rollback_is_unwrapped_only_when_asked() {
        let t = "BEGIN;\nSELECT 1/count(*) FROM pg_class WHERE relname = 'x';\nROLLBACK;\n";
        assert_eq!(without_own_transaction(t, 0..t.len()), 0..t.len());
        let r = without_own_read_only_block(t, 0..t.len());
        assert_eq!(
            t[r].trim(),
            "SELECT 1/count(*) FROM pg_class WHERE relname = 'x';"
        );
    }

    #[test]
    fn statement_picks_one_or_counts() {
        let t = "SELECT 1;\nSELECT 2;\n";
        let r = statement(t, 0..t.len(), 2).unwrap();
        assert_eq!(&t[r], "SELECT 2");
        assert_eq!(statement(t, 0..t.len(), 3), Err(2));
    }
}
