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
    PreferText,
    CharType,
    IntKey,
    PreferIdentity,
    IdentifierTooLong,
    UnqualifiedName,
    DomainConstraint,
    AlterDomainConstraint,
    DropNotNull,
    DetachPartitionNotConcurrent,
    EnumValueOrder,
    RenameEnumValue,
    DuplicateColumn,
    RerunUnsafe,
    DropDatabase,
    RenameSchema,
    DropCascade,
    SetSchema,
    ValidateSameTransaction,
    CoercibleTypeChange,
    NeedsNewerPostgres,
    AddColumnDefaultRewrite,
    DropWithDependents,
}

impl RuleId {
    /// Every rule, in the order of [`RULES`].
    pub const ALL: [RuleId; 47] = [
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
        RuleId::PreferText,
        RuleId::CharType,
        RuleId::IntKey,
        RuleId::PreferIdentity,
        RuleId::IdentifierTooLong,
        RuleId::UnqualifiedName,
        RuleId::DomainConstraint,
        RuleId::AlterDomainConstraint,
        RuleId::DropNotNull,
        RuleId::DetachPartitionNotConcurrent,
        RuleId::EnumValueOrder,
        RuleId::RenameEnumValue,
        RuleId::DuplicateColumn,
        RuleId::RerunUnsafe,
        RuleId::DropDatabase,
        RuleId::RenameSchema,
        RuleId::DropCascade,
        RuleId::SetSchema,
        RuleId::ValidateSameTransaction,
        RuleId::CoercibleTypeChange,
        RuleId::NeedsNewerPostgres,
        RuleId::AddColumnDefaultRewrite,
        RuleId::DropWithDependents,
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
            RuleId::PreferText => "prefer-text",
            RuleId::CharType => "char-type",
            RuleId::IntKey => "int-key",
            RuleId::PreferIdentity => "prefer-identity",
            RuleId::IdentifierTooLong => "identifier-too-long",
            RuleId::UnqualifiedName => "unqualified-name",
            RuleId::DomainConstraint => "domain-constraint",
            RuleId::AlterDomainConstraint => "alter-domain-constraint",
            RuleId::DropNotNull => "drop-not-null",
            RuleId::DetachPartitionNotConcurrent => "detach-partition-not-concurrent",
            RuleId::EnumValueOrder => "enum-value-order",
            RuleId::RenameEnumValue => "rename-enum-value",
            RuleId::DuplicateColumn => "duplicate-column",
            RuleId::RerunUnsafe => "rerun-unsafe",
            RuleId::DropDatabase => "drop-database",
            RuleId::RenameSchema => "rename-schema",
            RuleId::DropCascade => "drop-cascade",
            RuleId::SetSchema => "set-schema",
            RuleId::ValidateSameTransaction => "validate-same-transaction",
            RuleId::CoercibleTypeChange => "coercible-type-change",
            RuleId::NeedsNewerPostgres => "needs-newer-postgres",
            RuleId::AddColumnDefaultRewrite => "add-column-default-rewrite",
            RuleId::DropWithDependents => "drop-with-dependents",
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
    /// Off unless enabled (`check --enable RULE`): advice some teams want
    /// and others do not.
    pub opt_in: bool,
}

const fn warn(id: RuleId, catches: &'static str, advice: &'static str) -> Rule {
    Rule {
        id,
        catches,
        advice,
        severity: FindingSeverity::Warning,
        opt_in: false,
    }
}

const fn note(id: RuleId, catches: &'static str, advice: &'static str) -> Rule {
    Rule {
        severity: FindingSeverity::Note,
        ..warn(id, catches, advice)
    }
}

const fn opt_in(id: RuleId, catches: &'static str, advice: &'static str) -> Rule {
    Rule {
        opt_in: true,
        ..warn(id, catches, advice)
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
        opt_in: false,
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
    note(
        RuleId::PreferText,
        "varchar(n) only caps the length, and raising the cap later is a schema change; text stores the same bytes",
        "use text, with a CHECK (length(col) <= n) if the cap matters (added NOT VALID on an existing table)",
    ),
    warn(
        RuleId::CharType,
        "char(n) pads every value with blanks to n characters, compares with the padding ignored, and is never faster than text",
        "use text (or varchar) with a CHECK on the length if it matters",
    ),
    warn(
        RuleId::IntKey,
        "an integer or smallint key runs out (2^31 or 2^15 values), and widening it later rewrites the table and every referencing one",
        "use bigint (or bigint GENERATED … AS IDENTITY) for keys",
    ),
    note(
        RuleId::PreferIdentity,
        "serial creates a sequence the column does not own in the SQL standard sense: grants, copies and dumps treat it apart",
        "use GENERATED BY DEFAULT AS IDENTITY (bigint)",
    ),
    warn(
        RuleId::IdentifierTooLong,
        "PostgreSQL silently truncates identifiers to 63 bytes, so the object gets another name than the one written",
        "shorten the name to at most 63 bytes",
    ),
    opt_in(
        RuleId::UnqualifiedName,
        "a table named without its schema is looked up on search_path, which may differ between sessions, roles and environments",
        "qualify the name with its schema (public.orders)",
    ),
    warn(
        RuleId::DomainConstraint,
        "a domain with a constraint makes every later change to that constraint re-check (or rewrite) every column that uses the domain",
        "use the base type and put the CHECK on the column (NOT VALID, then VALIDATE, on an existing table)",
    ),
    warn(
        RuleId::AlterDomainConstraint,
        "ALTER DOMAIN … ADD CONSTRAINT checks every column of every table that uses the domain while it holds their locks",
        "add the CHECK on each column instead, NOT VALID, then VALIDATE CONSTRAINT in a later step",
    ),
    warn(
        RuleId::DropNotNull,
        "dropping NOT NULL lets NULLs in that running clients and PL/pgSQL code do not expect",
        "keep the constraint and use a marker value, or move clients first and drop it in a later release",
    ),
    warn(
        RuleId::DetachPartitionNotConcurrent,
        "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent table, blocking reads and writes of every partition",
        "use ALTER TABLE … DETACH PARTITION … CONCURRENTLY in a step of its own (PostgreSQL 14+)",
    ),
    warn(
        RuleId::EnumValueOrder,
        "ALTER TYPE … ADD VALUE without BEFORE or AFTER puts the value last, which changes what < and ORDER BY mean for it",
        "say where it goes: ADD VALUE 'x' BEFORE 'y' (or AFTER)",
    ),
    warn(
        RuleId::RenameEnumValue,
        "renaming an enum value breaks every client and stored query that still uses the old value",
        "add the new value, move rows and clients to it, and stop using the old one",
    ),
    Rule {
        id: RuleId::DuplicateColumn,
        catches: "a column declared or assigned twice in one statement fails when it runs",
        advice: "name each column once",
        severity: FindingSeverity::Error,
        opt_in: false,
    },
    opt_in(
        RuleId::RerunUnsafe,
        "a CREATE without IF NOT EXISTS or a DROP without IF EXISTS fails when the migration is run again after a partial failure",
        "write CREATE … IF NOT EXISTS and DROP … IF EXISTS (ALTER TABLE … ADD COLUMN IF NOT EXISTS, DROP CONSTRAINT IF EXISTS)",
    ),
    warn(
        RuleId::DropDatabase,
        "DROP DATABASE removes a whole database and cannot be undone",
        "take a backup and drop it by hand, outside a migration",
    ),
    warn(
        RuleId::RenameSchema,
        "renaming a schema breaks every client, search_path and function body that uses the old name",
        "create the new schema and move objects over, or leave the name",
    ),
    warn(
        RuleId::DropCascade,
        "DROP … CASCADE also drops every view, function, constraint or default that depends on the object, without naming them",
        "drop the dependents by name first, then the object without CASCADE (the statement fails if something still depends on it)",
    ),
    warn(
        RuleId::SetSchema,
        "moving an object to another schema breaks every client that names it with the old schema (or finds it on search_path)",
        "create it in the new schema (or a view there) and move clients first",
    ),
    warn(
        RuleId::ValidateSameTransaction,
        "VALIDATE CONSTRAINT in the same transaction as ADD CONSTRAINT … NOT VALID keeps the ADD's strong lock for the whole validation, giving up what NOT VALID gains",
        "validate in a later step: each step runs in its own transaction",
    ),
    note(
        RuleId::CoercibleTypeChange,
        "a change to text, unbounded varchar or a longer varchar rewrites nothing when the column already is varchar or text (binary-coercible), but does rewrite from other types",
        "check the column's current type: from varchar or text no rewrite happens; a shorter varchar scans the table",
    ),
    Rule {
        id: RuleId::NeedsNewerPostgres,
        catches: "syntax the target's PostgreSQL version does not have fails when it runs there (pgpilot parses PostgreSQL 18's grammar)",
        advice: "write it the way the target's version allows, or declare the version the runbook is for: [target] server_version, check --pg-version, or check --db",
        severity: FindingSeverity::Error,
        opt_in: false,
    },
    warn(
        RuleId::AddColumnDefaultRewrite,
        "before PostgreSQL 11, ADD COLUMN with any non-NULL DEFAULT rewrites the whole table under ACCESS EXCLUSIVE (11+ stores a constant default in the catalog)",
        "add the column without a default, SET DEFAULT afterwards (new rows only), and backfill existing rows in batches",
    ),
    warn(
        RuleId::DropWithDependents,
        "views, functions or other objects on the target depend on the dropped object: without CASCADE the DROP fails, with CASCADE they are dropped too",
        "drop or rewrite the dependents by name first (each in the runbook, with its rollback), then drop the object without CASCADE",
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

impl RuleId {
    /// The rule with this user-facing id.
    pub fn parse(name: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

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
