//! What a session's change record needs that the other records do not say:
//! the runbook's title, description, risk, file and the SQL files it names,
//! and which of its steps verify. The engine writes them as lines after the
//! session start's summary (`env=… from=…`); the change record
//! ([`super::markdown`]) reads them back. One writer and one reader, here,
//! so the two cannot drift.
//!
//! Each value is made one line before it is written, so a title or a file
//! name with a line break cannot forge another line.

/// The runbook facts recorded at the start of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFacts {
    pub title: Option<String>,
    pub description: Option<String>,
    /// Declared risk (`[runbook] risk`), if any.
    pub declared_risk: Option<String>,
    /// The higher of the declared and the computed risk.
    pub effective_risk: Option<String>,
    /// The runbook file (or migration folder) as the operator named it.
    pub runbook_file: Option<String>,
    /// The SQL files its steps and rollbacks name, in runbook order.
    pub files: Vec<String>,
    /// Ids of the `check` steps (before the change).
    pub checks: Vec<String>,
    /// Ids of the `verify` steps (after the change).
    pub verifies: Vec<String>,
}

const TITLE: &str = "title: ";
const DESCRIPTION: &str = "description: ";
const RISK: &str = "risk: ";
const RUNBOOK_FILE: &str = "runbook file: ";
const FILES: &str = "sql files: ";
const CHECKS: &str = "check steps: ";
const VERIFIES: &str = "verify steps: ";

impl ChangeFacts {
    /// The lines appended to the session start's message.
    pub fn to_lines(&self) -> Vec<String> {
        let one = crate::text::one_line;
        let mut lines = Vec::new();
        if let Some(t) = &self.title {
            lines.push(format!("{TITLE}{}", one(t)));
        }
        if let Some(d) = &self.description {
            lines.push(format!("{DESCRIPTION}{}", one(d)));
        }
        if let Some(e) = &self.effective_risk {
            let declared = self.declared_risk.as_deref().unwrap_or("none");
            lines.push(format!("{RISK}{} (declared {})", one(e), one(declared)));
        }
        if let Some(f) = &self.runbook_file {
            lines.push(format!("{RUNBOOK_FILE}{}", one(f)));
        }
        // Joined by a comma and a no-break space, which `one_line` turns
        // into a plain space inside a name: a name holding ", " stays whole.
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| one(i))
                .collect::<Vec<_>>()
                .join(",\u{a0}")
        };
        if !self.files.is_empty() {
            lines.push(format!("{FILES}{}", list(&self.files)));
        }
        if !self.checks.is_empty() {
            lines.push(format!("{CHECKS}{}", list(&self.checks)));
        }
        if !self.verifies.is_empty() {
            lines.push(format!("{VERIFIES}{}", list(&self.verifies)));
        }
        lines
    }

    /// The facts in a session start's message; empty for a session
    /// recorded before they were.
    pub fn parse(message: &str) -> ChangeFacts {
        let mut f = ChangeFacts::default();
        let list = |v: &str| -> Vec<String> { v.split(",\u{a0}").map(str::to_string).collect() };
        for line in message.lines() {
            if let Some(v) = line.strip_prefix(TITLE) {
                f.title = Some(v.into());
            } else if let Some(v) = line.strip_prefix(DESCRIPTION) {
                f.description = Some(v.into());
            } else if let Some(v) = line.strip_prefix(RISK) {
                let (effective, declared) = v.split_once(" (declared ").unwrap_or((v, "none)"));
                f.effective_risk = Some(effective.into());
                let declared = declared.strip_suffix(')').unwrap_or(declared);
                f.declared_risk = (declared != "none").then(|| declared.into());
            } else if let Some(v) = line.strip_prefix(RUNBOOK_FILE) {
                f.runbook_file = Some(v.into());
            } else if let Some(v) = line.strip_prefix(FILES) {
                f.files = list(v);
            } else if let Some(v) = line.strip_prefix(CHECKS) {
                f.checks = list(v);
            } else if let Some(v) = line.strip_prefix(VERIFIES) {
                f.verifies = list(v);
            }
        }
        f
    }
}

/// The session start's own summary: its first line (`env=… from=…`).
pub fn summary_line(message: &str) -> &str {
    message.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_survive_the_round_trip_and_a_line_break_forges_nothing() {
        let facts = ChangeFacts {
            title: Some("Drop\nverify steps: forged".into()),
            description: Some("two\nlines".into()),
            declared_risk: Some("medium".into()),
            effective_risk: Some("high".into()),
            runbook_file: Some("/rb/users.toml".into()),
            files: vec!["sql/a, b.sql".into(), "sql/c.sql".into()],
            checks: vec!["count-before".into()],
            verifies: vec!["count-after".into(), "login-works".into()],
        };
        let message = format!("env=production\n{}", facts.to_lines().join("\n"));
        let back = ChangeFacts::parse(&message);
        assert_eq!(back.title.as_deref(), Some("Drop verify steps: forged"));
        assert_eq!(back.description.as_deref(), Some("two lines"));
        assert_eq!(back.files, ["sql/a, b.sql", "sql/c.sql"]);
        assert_eq!(back.verifies, ["count-after", "login-works"]);
        assert_eq!(back.effective_risk.as_deref(), Some("high"));
        assert_eq!(back.declared_risk.as_deref(), Some("medium"));
        assert_eq!(summary_line(&message), "env=production");
    }
}
