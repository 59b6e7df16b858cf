//! `-- pgpilot: ignore RULE[, RULE…] — reason` on the line before a statement
//! silences those findings of that statement. An ignore that silences
//! nothing, or that gives no reason, is itself a warning: a stale or
//! unexplained suppression hides the next real problem.

/// One ignore comment: the rules it names, where it is, whether it has a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignore {
    pub rules: Vec<String>,
    /// Byte offset of the comment in the SQL text.
    pub at: usize,
    pub has_reason: bool,
}

const MARK: &str = "pgpilot: ignore";

/// The ignore comments in `gap`, the text between the previous statement and
/// this one (`gap_start` is its offset in the SQL text). Only the comment on
/// the last line before the statement counts.
pub fn ignores_before(gap: &str, gap_start: usize) -> Option<Ignore> {
    let trimmed = gap.trim_end();
    let line_start = trimmed.rfind('\n').map_or(0, |i| i + 1);
    let line = &trimmed[line_start..];
    let comment = line.trim_start().strip_prefix("--")?.trim_start();
    let rest = comment.strip_prefix(MARK)?;
    // The reason follows an em dash, " -- " or " - ".
    let (names, reason) = ["—", " -- ", " - "]
        .iter()
        .find_map(|sep| rest.split_once(sep))
        .unwrap_or((rest, ""));
    let rules: Vec<String> = names
        .split([',', ' '])
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let at = gap_start + line_start + (line.len() - line.trim_start().len());
    Some(Ignore {
        rules,
        at,
        has_reason: !reason.trim().is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_comment_on_the_line_before() {
        let gap = "\n-- pgpilot: ignore index-not-concurrent — the table has 10 rows\n";
        let i = ignores_before(gap, 100).unwrap();
        assert_eq!(i.rules, ["index-not-concurrent"]);
        assert!(i.has_reason);
        assert_eq!(i.at, 101);
    }

    #[test]
    fn several_rules_and_a_missing_reason() {
        let i = ignores_before("-- pgpilot: ignore drop-table, drop-cascade\n", 0).unwrap();
        assert_eq!(i.rules, ["drop-table", "drop-cascade"]);
        assert!(!i.has_reason);
    }

    #[test]
    fn other_comments_are_not_ignores() {
        assert_eq!(ignores_before("-- just a note\n", 0), None);
        assert_eq!(ignores_before("", 0), None);
    }
}
