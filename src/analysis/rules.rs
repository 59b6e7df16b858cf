//! Findings in the spirit of squawk and strong_migrations: what is risky about
//! a statement on a live database, and the safer way to do the same thing.

use super::{Finding, FindingSeverity};

/// A rule: its id, what it catches, and the safer alternative.
pub struct Rule {
    pub id: &'static str,
    pub catches: &'static str,
    pub advice: &'static str,
    pub severity: FindingSeverity,
}

const fn warn(id: &'static str, catches: &'static str, advice: &'static str) -> Rule {
    Rule {
        id,
        catches,
        advice,
        severity: FindingSeverity::Warning,
    }
}

pub const RULES: &[Rule] = &[
    warn(
        "index-not-concurrent",
        "CREATE INDEX without CONCURRENTLY on an existing table holds a SHARE lock, blocking every write until the index is built",
        "use CREATE INDEX CONCURRENTLY in a step of its own (it cannot run in a transaction block); check pg_index.indisvalid afterwards",
    ),
    warn(
        "drop-index-not-concurrent",
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table, blocking reads and writes",
        "use DROP INDEX CONCURRENTLY in a step of its own",
    ),
    warn(
        "reindex-not-concurrent",
        "REINDEX without CONCURRENTLY blocks writes to the table and reads that use the index",
        "use REINDEX … CONCURRENTLY in a step of its own (PostgreSQL 12+)",
    ),
    warn(
        "foreign-key-not-valid",
        "adding a FOREIGN KEY without NOT VALID scans the whole table while holding SHARE ROW EXCLUSIVE on both tables, blocking their writes",
        "add it with NOT VALID, then run ALTER TABLE … VALIDATE CONSTRAINT in a later step (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
    ),
    warn(
        "check-not-valid",
        "adding a CHECK constraint without NOT VALID scans the whole table under ACCESS EXCLUSIVE, blocking reads and writes",
        "add it with NOT VALID, then VALIDATE CONSTRAINT in a later step",
    ),
    warn(
        "set-not-null",
        "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE unless a validated CHECK (col IS NOT NULL) already proves it",
        "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL (PostgreSQL 12+ skips the scan), then drop the CHECK",
    ),
    warn(
        "volatile-default",
        "a column with a volatile default (random(), gen_random_uuid(), clock_timestamp(), serial, identity, generated) rewrites the whole table under ACCESS EXCLUSIVE",
        "add the column without a default (or with a constant one), set the default afterwards, and backfill existing rows in batches",
    ),
    warn(
        "column-type-change",
        "changing a column's type rewrites the table and its indexes under ACCESS EXCLUSIVE, unless the change is binary-coercible (e.g. varchar(n) to text)",
        "add a new column, backfill it in batches, switch readers and writers, then drop the old column (add-copy-swap)",
    ),
    warn(
        "rename-column",
        "renaming a column breaks every running query and deployed client that uses the old name",
        "expand/contract: add the new column, write both, backfill, move readers, then drop the old one",
    ),
    warn(
        "rename-table",
        "renaming a table breaks every running query and deployed client that uses the old name",
        "create the new table (or a view with the new name), move clients, then drop the old name",
    ),
    warn(
        "drop-column",
        "dropping a column loses its data and breaks clients that still select or insert it",
        "stop using the column in the application first, take a backup of it, then drop it in a later release",
    ),
    warn(
        "drop-table",
        "dropping a table loses its data for good",
        "take a backup first (a backup step, or pg_dump -t), and rename it aside for a release before dropping",
    ),
    warn(
        "unique-constraint",
        "adding a UNIQUE or PRIMARY KEY constraint builds its index under ACCESS EXCLUSIVE, blocking reads and writes",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE … ADD CONSTRAINT … UNIQUE USING INDEX",
    ),
    warn(
        "truncate-cascade",
        "TRUNCATE … CASCADE also empties every table that references this one by foreign key",
        "truncate the tables you mean by name, without CASCADE",
    ),
    warn(
        "vacuum-full",
        "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite",
        "use pg_repack or pg_squeeze, or plain VACUUM",
    ),
    warn(
        "cluster",
        "CLUSTER rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite",
        "use pg_repack, which reorders without a long exclusive lock",
    ),
    warn(
        "prefer-jsonb",
        "json stores text and re-parses it on every access; it cannot be indexed with GIN",
        "use jsonb",
    ),
    warn(
        "prefer-timestamptz",
        "timestamp without time zone loses the offset; comparisons break across time zones and DST",
        "use timestamptz",
    ),
    Rule {
        id: "transaction-control",
        catches: "BEGIN, COMMIT, ROLLBACK or SAVEPOINT inside a step breaks pgpilot's transaction around the step and its exactly-once state",
        advice: "remove it: pgpilot runs each step in its own transaction (or in autocommit when a statement needs it); split the work into steps",
        severity: FindingSeverity::Error,
    },
    warn(
        "add-column-not-null",
        "adding a NOT NULL column without a default fails on a table that has rows, and breaks inserts from clients that do not know the column",
        "add it nullable (or with a constant DEFAULT), backfill, then add NOT NULL through a validated CHECK",
    ),
    warn(
        "unbounded-dml",
        "UPDATE or DELETE without WHERE touches every row in one transaction: long row locks, bloat, and a large WAL burst",
        "batch it: update a bounded range of keys per step or per transaction",
    ),
    warn(
        "refresh-matview-not-concurrent",
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view until it finishes",
        "use REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)",
    ),
    warn(
        "opaque-statement",
        "pgpilot cannot see what a DO block or a procedure CALL does, so it treats it as destructive and asks for confirmation",
        "write the statements out in the step where you can, so their locks and effects can be checked",
    ),
    warn(
        "lock-table",
        "an explicit LOCK TABLE holds its lock until the step's transaction ends",
        "make sure the step is short, and keep lock_timeout low",
    ),
];

pub fn rule(id: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| unreachable_rule(id))
}

fn unreachable_rule(id: &str) -> &'static Rule {
    // Rule ids are literals in this module's callers; a typo is a bug caught
    // by the test below, so fall back to the generic rule rather than panic.
    debug_assert!(false, "unknown rule {id}");
    &RULES[RULES.len() - 1]
}

/// A finding of `id`, with a message specific to the statement.
pub fn finding(id: &str, message: impl Into<String>) -> Finding {
    let r = rule(id);
    Finding {
        rule: r.id,
        message: message.into(),
        advice: r.advice.to_string(),
        severity: r.severity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_at_least_twelve() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        assert!(RULES.len() >= 12);
    }
}
