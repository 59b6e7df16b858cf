//! `sqitch.conf`: git-config syntax (`[core]`, `[engine "pg"]`, `key =
//! value`, `#`/`;` comments). pgpilot reads the few keys that say where
//! the plan, the scripts and the registry are.

use std::collections::HashMap;
use std::path::Path;

use crate::diag::{Diagnostic, SourceFile};

#[derive(Debug, Clone, Default)]
pub struct Conf {
    /// `(section, key)` → value; section as written inside `[…]`, with
    /// one space before a quoted subsection; keys lower case.
    values: HashMap<(String, String), String>,
}

impl Conf {
    pub fn parse(path: &Path, text: &str) -> Result<Conf, Vec<Diagnostic>> {
        let source = SourceFile::new(path, text.to_string());
        let mut values = HashMap::new();
        let mut section = String::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            let start = at;
            at += line.len();
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            if let Some(inner) = t.strip_prefix('[') {
                let Some(inner) = inner.split(']').next().filter(|_| inner.contains(']')) else {
                    return Err(vec![
                        Diagnostic::error(source.location(start), "unclosed section header")
                            .with_help("write a section as [core] or [engine \"pg\"]"),
                    ]);
                };
                section = match inner.split_once(char::is_whitespace) {
                    Some((s, sub)) => format!("{} {}", s.to_lowercase(), sub.trim()),
                    None => inner.to_lowercase(),
                };
                continue;
            }
            let (key, value) = t.split_once('=').unwrap_or((t, "true"));
            let value = value.trim().trim_matches('"').to_string();
            values.insert((section.clone(), key.trim().to_lowercase()), value);
        }
        Ok(Conf { values })
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(section.to_string(), key.to_string()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_subsections_are_read() {
        let c = Conf::parse(
            Path::new("sqitch.conf"),
            "[core]\n\tengine = pg\n\t# top_dir = x\n[engine \"pg\"]\n\tregistry = audit_sqitch\n",
        )
        .unwrap();
        assert_eq!(c.get("core", "engine"), Some("pg"));
        assert_eq!(c.get("core", "top_dir"), None);
        assert_eq!(c.get("engine \"pg\"", "registry"), Some("audit_sqitch"));
    }
}
