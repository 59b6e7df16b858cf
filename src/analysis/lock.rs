//! PostgreSQL's table-level lock modes, by the names `pg_locks.mode` uses.
//! Source: PostgreSQL docs, 13.3.1 "Table-Level Locks" and Table 13.2
//! "Conflicting Lock Modes".

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    AccessShare = 1,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

use LockMode::*;

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        AccessShare,
        RowShare,
        RowExclusive,
        ShareUpdateExclusive,
        Share,
        ShareRowExclusive,
        Exclusive,
        AccessExclusive,
    ];

    /// The name in `pg_locks.mode`.
    pub fn name(self) -> &'static str {
        match self {
            AccessShare => "AccessShareLock",
            RowShare => "RowShareLock",
            RowExclusive => "RowExclusiveLock",
            ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            Share => "ShareLock",
            ShareRowExclusive => "ShareRowExclusiveLock",
            Exclusive => "ExclusiveLock",
            AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// The name in `LOCK TABLE … IN … MODE` and the docs.
    pub fn sql_name(self) -> &'static str {
        match self {
            AccessShare => "ACCESS SHARE",
            RowShare => "ROW SHARE",
            RowExclusive => "ROW EXCLUSIVE",
            ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Share => "SHARE",
            ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Exclusive => "EXCLUSIVE",
            AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    pub fn from_name(name: &str) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// pg_query's numbering (`LockStmt.mode`), which is PostgreSQL's lockdefs.h.
    pub fn from_pg_number(n: i32) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| *m as i32 == n)
    }

    /// Whether a lock in this mode and one in `other` cannot be held at once
    /// by two transactions (Table 13.2).
    pub fn conflicts_with(self, other: LockMode) -> bool {
        let (a, b) = (self as i32, other as i32);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        match lo {
            1 => hi == 8,
            2 => hi >= 7,
            3 => hi >= 5,
            4 => hi >= 4,
            5 => hi == 3 || hi == 4 || hi >= 6,
            _ => true,
        }
    }

    /// What ordinary work on the table this lock blocks while held or queued,
    /// in words for the plan and the TUI.
    pub fn blocks(self) -> &'static str {
        match self {
            AccessShare => {
                "blocks only ACCESS EXCLUSIVE (DROP, most ALTER TABLE, VACUUM FULL); reads and writes go on"
            }
            RowShare => "blocks EXCLUSIVE and ACCESS EXCLUSIVE; reads and writes go on",
            RowExclusive => {
                "blocks CREATE INDEX (non-concurrent) and stronger; reads and writes go on"
            }
            ShareUpdateExclusive => {
                "blocks VACUUM, ANALYZE, CREATE INDEX CONCURRENTLY and other schema changes; reads and writes go on"
            }
            Share => "blocks writes (INSERT, UPDATE, DELETE); reads go on",
            ShareRowExclusive => "blocks writes and other schema changes; reads go on",
            Exclusive => "blocks writes and SELECT … FOR UPDATE/SHARE; plain reads go on",
            AccessExclusive => {
                "blocks everything, plain SELECT included, and every later query on the table queues behind it"
            }
        }
    }

    pub fn blocks_reads(self) -> bool {
        self == AccessExclusive
    }

    pub fn blocks_writes(self) -> bool {
        self.conflicts_with(RowExclusive)
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for LockMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_table_matches_the_docs() {
        // Table 13.2, row by row: X marks a conflict.
        let table = [
            "       X", // ACCESS SHARE
            "      XX", // ROW SHARE
            "    XXXX", // ROW EXCLUSIVE
            "   XXXXX", // SHARE UPDATE EXCLUSIVE
            "  XX XXX", // SHARE
            "  XXXXXX", // SHARE ROW EXCLUSIVE
            " XXXXXXX", // EXCLUSIVE
            "XXXXXXXX", // ACCESS EXCLUSIVE
        ];
        for (i, row) in table.iter().enumerate() {
            for (j, cell) in row.chars().enumerate() {
                let (a, b) = (LockMode::ALL[i], LockMode::ALL[j]);
                assert_eq!(a.conflicts_with(b), cell == 'X', "{a} vs {b}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for m in LockMode::ALL {
            assert_eq!(LockMode::from_name(m.name()), Some(m));
        }
    }
}
