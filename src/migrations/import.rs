//! `pgpilot import DIR [-o RUNBOOK.toml]`: the folder's runbook, written
//! beside the files or anywhere, referring to the folder's files through
//! `sql_root` (never copies of them).

use std::path::{Component, Path, PathBuf};

use super::{Layout, read, runbook_toml};
use crate::exit;

/// Runs `import`; returns the exit code.
pub fn import_cmd(dir: &Path, layout: Option<Layout>, output: Option<&Path>) -> u8 {
    if !dir.is_dir() {
        eprintln!(
            "{}: error: not a folder\n  help: import reads a folder of migrations; `pgpilot check FILE.sql` lints one file",
            crate::text::for_terminal(&dir.display().to_string())
        );
        return exit::USAGE;
    }
    let folder = match read(dir, layout) {
        Ok(f) => f,
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return exit::FAILED;
        }
    };
    let Some(out) = output else {
        print!("{}", runbook_toml(&folder, None));
        return exit::OK;
    };
    let root = match root_from(out, dir) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("pgpilot: import: {}", crate::text::for_terminal(&message));
            return exit::FAILED;
        }
    };
    let text = runbook_toml(&folder, root.as_deref());
    if let Err(e) = std::fs::write(out, text) {
        eprintln!(
            "pgpilot: import: cannot write {}: {e}",
            crate::text::for_terminal(&out.display().to_string())
        );
        return exit::FAILED;
    }
    eprintln!(
        "{}: {} migrations of a {} folder, runbook id {}",
        crate::text::for_terminal(&out.display().to_string()),
        folder.migrations.len(),
        folder.layout.as_str(),
        folder.id
    );
    exit::OK
}

/// The folder as `sql_root` of a runbook written at `out`: relative to the
/// runbook's folder, `None` when it is that folder.
pub fn root_from(out: &Path, dir: &Path) -> Result<Option<String>, String> {
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let from = std::fs::canonicalize(&out_dir)
        .map_err(|e| format!("cannot find the folder {}: {e}", out_dir.display()))?;
    let to = std::fs::canonicalize(dir)
        .map_err(|e| format!("cannot find the folder {}: {e}", dir.display()))?;
    if from == to {
        return Ok(None);
    }
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..a.len() {
        rel.push("..");
    }
    for c in &b[common..] {
        rel.push(c.as_os_str());
    }
    rel.to_str()
        .map(|s| Some(s.to_string()))
        .ok_or_else(|| "the folder's path is not UTF-8".into())
}
