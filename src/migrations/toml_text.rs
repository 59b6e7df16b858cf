//! The runbook a migration folder becomes, as TOML text: the same text
//! `pgpilot import` writes and the on-the-fly path parses, so both name the
//! same steps under the same runbook id.

use std::fmt::Write;

use super::{Folder, Migration};

/// A TOML basic string (JSON's escapes are TOML's). File names come from
/// the folder's author: DEL (which TOML forbids raw), C1 controls and bidi
/// overrides are written as `\uXXXX` too, so the runbook parses and shows
/// on a terminal or in an editor as what it is.
fn quoted(s: &str) -> String {
    crate::text::json_safe(serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()))
}

/// The runbook for `folder`. `root` is the folder relative to where the
/// runbook is written (`None`: the runbook lives in the folder itself).
pub fn runbook_toml(folder: &Folder, root: Option<&str>) -> String {
    let mut t = String::new();
    let layout = folder.layout.as_str();
    let _ = writeln!(
        t,
        "# Written by `pgpilot import` from a {layout} folder: the steps run the\n# folder's own files. The runbook id keys pgpilot.step_state; keep it."
    );
    let _ = writeln!(t, "[runbook]\nid = {}", quoted(&folder.id));
    let _ = writeln!(
        t,
        "title = {}",
        quoted(&format!("{} migrations of {}", layout, folder.name))
    );
    if let Some(root) = root {
        let _ = writeln!(t, "sql_root = {}", quoted(root));
    }
    if let Some(h) = folder.layout.history().filter(|_| !folder.single) {
        let _ = writeln!(t, "history = {}", quoted(h.as_str()));
    }
    let _ = writeln!(
        t,
        "\n[[phase]]\nid = \"migrations\"\ntitle = {}",
        quoted(&format!("{layout} migrations"))
    );
    let path = |name: &str| match root {
        Some(r) => format!("{}/{name}", r.trim_end_matches('/')),
        None => name.to_string(),
    };
    for m in &folder.migrations {
        step(&mut t, m, &path);
    }
    t
}

fn step(t: &mut String, m: &Migration, path: &dyn Fn(&str) -> String) {
    let parts: Vec<Option<usize>> = match m.split {
        Some(n) => (1..=n).map(Some).collect(),
        None => vec![None],
    };
    for (i, part) in parts.iter().enumerate() {
        let id = match part {
            Some(n) => format!("{}.{n}", m.id),
            None => m.id.clone(),
        };
        let _ = writeln!(t, "\n  [[phase.step]]\n  id = {}", quoted(&id));
        let title = if m.description.is_empty() {
            m.up.clone()
        } else {
            m.description.replace('_', " ")
        };
        let _ = writeln!(t, "  title = {}", quoted(&title));
        let _ = writeln!(t, "  kind = \"change\"\n  file = {}", quoted(&path(&m.up)));
        if let Some(s) = m.up_section {
            let _ = writeln!(t, "  section = {}", quoted(s));
        }
        if let Some(n) = part {
            let _ = writeln!(t, "  statement = {n}");
        }
        let _ = writeln!(t, "  migration = {}", quoted(&m.version));
        // The migration's undo goes with its first step: a rollback walks
        // steps in reverse, so it runs after the later steps' (none).
        if i == 0 {
            if let Some(down) = &m.down {
                let _ = writeln!(t, "  rollback_file = {}", quoted(&path(down)));
            } else if let Some(s) = m.down_section {
                let _ = writeln!(t, "  rollback_section = {}", quoted(s));
            }
        }
        if m.destructive && m.down.is_none() && m.down_section.is_none() {
            let _ = writeln!(
                t,
                "  irreversible = \"the folder has no down migration for it\""
            );
        }
    }
    // sqitch's verify script: passes when it runs without an error (it
    // raises one when the change is missing).
    if let Some(verify) = &m.verify {
        let _ = writeln!(
            t,
            "\n  [[phase.step]]\n  id = {}\n  title = {}\n  kind = \"verify\"\n  file = {}",
            quoted(&format!("{}.verify", m.id)),
            quoted(&format!("verify {}", m.version)),
            quoted(&path(verify))
        );
    }
}
