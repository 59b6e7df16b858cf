//! Findings in the spirit of squawk and strong_migrations: what is risky about
//! a statement on a live database, and the safer way to do the same thing.

use super::{Finding, FindingSeverity};

/// Every finding rule pgpilot knows. Code names a rule by this enum, never by
/// a string, so a rule that is not in [`RULES`] cannot be raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleId {
    IndexNotConcurrent,
    DropIndexNotConcurrent,
    ReindexNotConcurrent,
    ForeignKeyNotValid,
    CheckNotValid,
    SetNotNull,
    VolatileDefault,
    ColumnTypeChange,
    RenameColumn,
    RenameTable,
    DropColumn,
    DropTable,
    UniqueConstraint,
    TruncateCascade,
    VacuumFull,
    Cluster,
    PreferJsonb,
    PreferTimestamptz,
    TransactionControl,
    AddColumnNotNull,
    UnboundedDml,
    RefreshMatviewNotConcurrent,
    OpaqueStatement,
    LockTable,
}

impl RuleId {
    /// Every rule, in the order of [`RULES`].
    pub const ALL: [RuleId; 24] = [
        RuleId::IndexNotConcurrent,
        RuleId::DropIndexNotConcurrent,
        RuleId::ReindexNotConcurrent,
        RuleId::ForeignKeyNotValid,
        RuleId::CheckNotValid,
        RuleId::SetNotNull,
        RuleId::VolatileDefault,
        RuleId::ColumnTypeChange,
        RuleId::RenameColumn,
        RuleId::RenameTable,
        RuleId::DropColumn,
        RuleId::DropTable,
        RuleId::UniqueConstraint,
        RuleId::TruncateCascade,
        RuleId::VacuumFull,
        RuleId::Cluster,
        RuleId::PreferJsonb,
        RuleId::PreferTimestamptz,
        RuleId::TransactionControl,
        RuleId::AddColumnNotNull,
        RuleId::UnboundedDml,
        RuleId::RefreshMatviewNotConcurrent,
        RuleId::OpaqueStatement,
        RuleId::LockTable,
    ];

    /// The id shown to users, in `plan --format json` and in the docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::IndexNotConcurrent => "index-not-concurrent",
            RuleId::DropIndexNotConcurrent => "drop-index-not-concurrent",
            RuleId::ReindexNotConcurrent => "reindex-not-concurrent",
            RuleId::ForeignKeyNotValid => "foreign-key-not-valid",
            RuleId::CheckNotValid => "check-not-valid",
            RuleId::SetNotNull => "set-not-null",
            RuleId::VolatileDefault => "volatile-default",
            RuleId::ColumnTypeChange => "column-type-change",
            RuleId::RenameColumn => "rename-column",
            RuleId::RenameTable => "rename-table",
            RuleId::DropColumn => "drop-column",
            RuleId::DropTable => "drop-table",
            RuleId::UniqueConstraint => "unique-constraint",
            RuleId::TruncateCascade => "truncate-cascade",
            RuleId::VacuumFull => "vacuum-full",
            RuleId::Cluster => "cluster",
            RuleId::PreferJsonb => "prefer-jsonb",
            RuleId::PreferTimestamptz => "prefer-timestamptz",
            RuleId::TransactionControl => "transaction-control",
            RuleId::AddColumnNotNull => "add-column-not-null",
            RuleId::UnboundedDml => "unbounded-dml",
            RuleId::RefreshMatviewNotConcurrent => "refresh-matview-not-concurrent",
            RuleId::OpaqueStatement => "opaque-statement",
            RuleId::LockTable => "lock-table",
        }
    }

    /// This rule's entry in [`RULES`].
    pub fn rule(self) -> &'static Rule {
        // In bounds and the right entry: checked at compile time below.
        &RULES[self as usize]
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule: its id, what it catches, and the safer alternative.
pub struct Rule {
    pub id: RuleId,
    pub catches: &'static str,
    pub advice: &'static str,
    pub severity: FindingSeverity,
}

const fn warn(id: RuleId, catches: &'static str, advice: &'static str) -> Rule {
    Rule {
        id,
        catches,
        advice,
        severity: FindingSeverity::Warning,
    }
}

pub const RULES: &[Rule] = &[
    warn(
        RuleId::IndexNotConcurrent,
        "CREATE INDEX without CONCURRENTLY on an existing table holds a SHARE lock, blocking every write until the index is built",
        "use CREATE INDEX CONCURRENTLY in a step of its own (it cannot run in a transaction block); check pg_index.indisvalid afterwards",
    ),
    warn(
        RuleId::DropIndexNotConcurrent,
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table, blocking reads and writes",
        "use DROP INDEX CONCURRENTLY in a step of its own",
    ),
    warn(
        RuleId::ReindexNotConcurrent,
        "REINDEX without CONCURRENTLY blocks writes to the table and reads that use the index",
        "use REINDEX … CONCURRENTLY in a step of its own (PostgreSQL 12+)",
    ),
    warn(
        RuleId::ForeignKeyNotValid,
        "adding a FOREIGN KEY without NOT VALID scans the whole table while holding SHARE ROW EXCLUSIVE on both tables, blocking their writes",
        "add it with NOT VALID, then run ALTER TABLE … VALIDATE CONSTRAINT in a later step (SHARE UPDATE EXCLUSIVE: reads and writes go on)",
    ),
    warn(
        RuleId::CheckNotValid,
        "adding a CHECK constraint without NOT VALID scans the whole table under ACCESS EXCLUSIVE, blocking reads and writes",
        "add it with NOT VALID, then VALIDATE CONSTRAINT in a later step",
    ),
    warn(
        RuleId::SetNotNull,
        "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE unless a validated CHECK (col IS NOT NULL) already proves it",
        "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL (PostgreSQL 12+ skips the scan), then drop the CHECK",
    ),
    warn(
        RuleId::VolatileDefault,
        "a column with a volatile default (random(), gen_random_uuid(), clock_timestamp(), serial, identity, generated) rewrites the whole table under ACCESS EXCLUSIVE",
        "add the column without a default (or with a constant one), set the default afterwards, and backfill existing rows in batches",
    ),
    warn(
        RuleId::ColumnTypeChange,
        "changing a column's type rewrites the table and its indexes under ACCESS EXCLUSIVE, unless the change is binary-coercible (e.g. varchar(n) to text)",
        "add a new column, backfill it in batches, switch readers and writers, then drop the old column (add-copy-swap)",
    ),
    warn(
        RuleId::RenameColumn,
        "renaming a column breaks every running query and deployed client that uses the old name",
        "expand/contract: add the new column, write both, backfill, move readers, then drop the old one",
    ),
    warn(
        RuleId::RenameTable,
        "renaming a table breaks every running query and deployed client that uses the old name",
        "create the new table (or a view with the new name), move clients, then drop the old name",
    ),
    warn(
        RuleId::DropColumn,
        "dropping a column loses its data and breaks clients that still select or insert it",
        "stop using the column in the application first, take a backup of it, then drop it in a later release",
    ),
    warn(
        RuleId::DropTable,
        "dropping a table loses its data for good",
        "take a backup first (a backup step, or pg_dump -t), and rename it aside for a release before dropping",
    ),
    warn(
        RuleId::UniqueConstraint,
        "adding a UNIQUE or PRIMARY KEY constraint builds its index under ACCESS EXCLUSIVE, blocking reads and writes",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ALTER TABLE … ADD CONSTRAINT … UNIQUE USING INDEX",
    ),
    warn(
        RuleId::TruncateCascade,
        "TRUNCATE … CASCADE also empties every table that references this one by foreign key",
        "truncate the tables you mean by name, without CASCADE",
    ),
    warn(
        RuleId::VacuumFull,
        "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite",
        "use pg_repack or pg_squeeze, or plain VACUUM",
    ),
    warn(
        RuleId::Cluster,
        "CLUSTER rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes for the whole rewrite",
        "use pg_repack, which reorders without a long exclusive lock",
    ),
    warn(
        RuleId::PreferJsonb,
        "json stores text and re-parses it on every access; it cannot be indexed with GIN",
        "use jsonb",
    ),
    warn(
        RuleId::PreferTimestamptz,
        "timestamp without time zone loses the offset; comparisons break across time zones and DST",
        "use timestamptz",
    ),
    Rule {
        id: RuleId::TransactionControl,
        catches: "BEGIN, COMMIT, ROLLBACK or SAVEPOINT inside a step breaks pgpilot's transaction around the step and its exactly-once state",
        advice: "remove it: pgpilot runs each step in its own transaction (or in autocommit when a statement needs it); split the work into steps",
        severity: FindingSeverity::Error,
    },
    warn(
        RuleId::AddColumnNotNull,
        "adding a NOT NULL column without a default fails on a table that has rows, and breaks inserts from clients that do not know the column",
        "add it nullable (or with a constant DEFAULT), backfill, then add NOT NULL through a validated CHECK",
    ),
    warn(
        RuleId::UnboundedDml,
        "UPDATE or DELETE without WHERE touches every row in one transaction: long row locks, bloat, and a large WAL burst",
        "batch it: update a bounded range of keys per step or per transaction",
    ),
    warn(
        RuleId::RefreshMatviewNotConcurrent,
        "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view until it finishes",
        "use REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)",
    ),
    warn(
        RuleId::OpaqueStatement,
        "pgpilot cannot see what a DO block or a procedure CALL does, so it treats it as destructive and asks for confirmation",
        "write the statements out in the step where you can, so their locks and effects can be checked",
    ),
    warn(
        RuleId::LockTable,
        "an explicit LOCK TABLE holds its lock until the step's transaction ends",
        "make sure the step is short, and keep lock_timeout low",
    ),
];

// RULES holds one entry per RuleId, at the variant's index: a rule added to
// the enum without its entry (or out of order) fails to compile.
const _: () = {
    assert!(RULES.len() == RuleId::ALL.len());
    let mut i = 0;
    while i < RULES.len() {
        assert!(RULES[i].id as usize == i);
        assert!(RuleId::ALL[i] as usize == i);
        i += 1;
    }
};

/// A finding of rule `id`, with a message specific to the statement.
pub fn finding(id: RuleId, message: impl Into<String>) -> Finding {
    let r = id.rule();
    Finding {
        rule: r.id.as_str(),
        message: message.into(),
        advice: r.advice.to_string(),
        severity: r.severity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique() {
        let mut ids: Vec<_> = RULES.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }

    #[test]
    fn every_rule_id_names_its_own_entry() {
        for id in RuleId::ALL {
            assert_eq!(id.rule().id, id);
            assert_eq!(finding(id, "m").rule, id.as_str());
        }
    }
}
