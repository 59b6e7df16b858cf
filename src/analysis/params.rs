//! The bind parameters (`$1`, `$2`, …) a statement uses, as the scanner sees
//! them: a `$1` inside a string literal or a comment is not one.

use std::collections::BTreeSet;

use pg_query::protobuf::Token;

/// The numbers of the parameters `sql` refers to; empty when it cannot be scanned
/// (the analysis reports the syntax error at its place).
pub fn bound_params(sql: &str) -> BTreeSet<u32> {
    let Ok(tokens) = pg_query::scan_tokens(sql) else {
        return BTreeSet::new();
    };
    tokens
        .iter()
        .filter(|t| Token::try_from(t.token).ok() == Some(Token::Param))
        .filter_map(|t| sql.get(t.start as usize + 1..t.end as usize)?.parse().ok())
        .collect()
}

/// Whether `sql` uses the batch bounds `$1` and `$2` (a backfill's batch or rollback).
pub fn uses_batch_bounds(sql: &str) -> bool {
    let p = bound_params(sql);
    p.contains(&1) && p.contains(&2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_in_literals_and_comments_do_not_count() {
        assert!(uses_batch_bounds(
            "UPDATE t SET c = 1 WHERE id BETWEEN $1 AND $2"
        ));
        assert!(!uses_batch_bounds(
            "UPDATE t SET c = '$1' WHERE id = $2 -- $1"
        ));
        assert_eq!(bound_params("SELECT $10, $3"), BTreeSet::from([3, 10]));
    }
}
