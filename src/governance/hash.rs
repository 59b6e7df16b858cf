//! The hash an approval is bound to: what the change does, and nothing an
//! incident responder may need to fix during the change.
//!
//! Covered: the runbook id and change class, `[target]`, `[settings]`,
//! `[approvals]`, the `[[health]]` gates, and each step's phase, id, kind,
//! SQL (a `.sql` file's contents, not its name), instructions,
//! expectation, capture, transaction mode, confirmation phrase, settings, a
//! dump's tables and the waivers `no_backup` and `ignore`.
//! Left out: rollback SQL (a responder may fix it under pressure, as the
//! step hash of `engine::state` does), `[notify]` (a responder rotates the
//! webhook), titles, explanations and comments.
//! Editing a covered part voids every approval of the runbook.

use sha2::{Digest, Sha256};

use crate::engine::state::step_hash;
use crate::runbook::Runbook;

/// Feeds fields length-prefixed, so no two different runbooks feed the same bytes.
struct Fields(Sha256);

impl Fields {
    fn put(&mut self, field: &str) {
        self.0.update((field.len() as u64).to_le_bytes());
        self.0.update(field.as_bytes());
    }
}

/// The SHA-256 (hex) that `pgpilot approve` records and `run` compares.
pub fn approval_hash(rb: &Runbook) -> String {
    let mut f = Fields(Sha256::new());
    f.put("pgpilot-approval-v1");
    f.put(&rb.id);
    f.put(rb.change_type.as_str());
    f.put(&format!("{:?}", rb.declared_risk));
    f.put(&format!(
        "{:?}|{:?}|{}|{:?}|{:?}",
        rb.target.environments,
        rb.target.database,
        rb.target.require_primary,
        rb.target.windows,
        rb.target.timezone.map(|t| t.name())
    ));
    // Debug of plain values: deterministic for one pgpilot version; a
    // version that adds a setting asks for new approvals, which is safe.
    f.put(&format!("{:?}", rb.settings));
    f.put(&format!("{:?}", rb.approvals));
    for g in &rb.health {
        f.put(&g.name);
        f.put(&g.sql.text);
        f.put(&format!("{:?}|{:?}", g.min, g.max));
    }
    for (phase, step) in rb.steps() {
        f.put(&phase.id);
        f.put(&step.id);
        // Kind and SQL (or instructions), as the applied-step check sees them.
        f.put(&step_hash(step));
        f.put(&format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            step.expect,
            step.capture,
            step.transaction,
            step.confirm,
            step.backfill
                .as_ref()
                .map(|b| (&b.table, &b.key, b.batch_size)),
            step.settings,
            // Waivers a reviewer signs off: a skipped backup, silenced findings.
            step.no_backup,
            step.ignore
        ));
    }
    hex::encode(f.0.finalize())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::runbook::parse_str;

    const RB: &str = "[runbook]\nid = \"r\"\ntitle = \"T\"\n\
        [[phase]]\nid = \"p\"\n\
        [[phase.step]]\nid = \"add\"\nkind = \"change\"\nsql = \"ALTER TABLE t ADD COLUMN c int\"\n\
        rollback = \"ALTER TABLE t DROP COLUMN c\"\n";

    fn hash(text: &str) -> String {
        approval_hash(&parse_str(Path::new("t.toml"), text.into()).unwrap())
    }

    #[test]
    fn an_edit_of_what_the_change_does_changes_the_hash() {
        let base = hash(RB);
        assert_eq!(base.len(), 64);
        for edited in [
            RB.replace("ADD COLUMN c int", "ADD COLUMN c bigint"),
            RB.replace("id = \"add\"", "id = \"add2\""),
            RB.replace(
                "kind = \"change\"",
                "kind = \"change\"\nlock_timeout = \"9s\"",
            ),
            RB.replace("[[phase]]", "[settings]\nlock_retries = 1\n[[phase]]"),
            RB.replace(
                "[[phase]]",
                "[approvals]\nrequired = [\"technical\"]\n[[phase]]",
            ),
            RB.replace("[[phase]]", "[target]\ndatabase = \"other\"\n[[phase]]"),
            RB.replace("id = \"r\"", "id = \"r2\""),
        ] {
            assert_ne!(hash(&edited), base, "{edited}");
        }
    }

    #[test]
    fn an_edit_of_rollback_sql_or_wording_keeps_the_hash() {
        let base = hash(RB);
        for edited in [
            RB.replace("DROP COLUMN c", "DROP COLUMN IF EXISTS c"),
            RB.replace("title = \"T\"", "title = \"Better title\"\n# a comment"),
        ] {
            assert_eq!(hash(&edited), base, "{edited}");
        }
    }

    #[test]
    fn an_edit_of_notify_keeps_the_hash() {
        let base = hash(RB);
        let notify = |n: &str| RB.replace("[[phase]]", &format!("[notify]\n{n}\n[[phase]]"));
        for edited in [
            notify("webhook_env = \"PGPILOT_WEBHOOK_URL\""),
            notify("webhook_env = \"OTHER_HOOK\"\nevents = [\"start\", \"end\"]"),
            notify("webhook = \"http://localhost:9000/rotated\""),
        ] {
            assert_eq!(hash(&edited), base, "{edited}");
        }
    }
}
