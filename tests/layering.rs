//! The module layering docs/architecture.md promises, checked on the source:
//! the engine depends on no driver and never touches the terminal, the audit
//! files' helpers form no cycle, and the user and host lookups live in one
//! place. A new import that breaks a rule fails here, naming the file and
//! line.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `FILE:LINE: text` for every line of `files` containing one of `needles`
/// outside a `//` comment.
fn occurrences(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if needles.iter().any(|n| code.contains(n)) {
                let rel = file.strip_prefix(ROOT).unwrap_or(file);
                hits.push(format!("{}:{}: {}", rel.display(), i + 1, line.trim()));
            }
        }
    }
    hits
}

fn src(path: &str) -> PathBuf {
    Path::new(ROOT).join("src").join(path)
}

#[test]
fn the_engine_imports_no_driver_and_no_exit_code() {
    let hits = occurrences(
        &rust_files(&src("engine")),
        &[
            "crate::cli",
            "crate::tui",
            "crate::headless",
            "crate::session",
            "crate::demo",
            "crate::exit",
        ],
    );
    assert!(
        hits.is_empty(),
        "the engine returns outcomes and emits events; drivers and exit codes depend on it, \
         never the reverse:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_engine_never_reads_or_writes_the_terminal() {
    // The crash hook (the `failpoints` feature, tests only) says on stderr
    // why it aborts the process.
    let files: Vec<PathBuf> = rust_files(&src("engine"))
        .into_iter()
        .filter(|f| !f.ends_with("engine/failpoint.rs"))
        .collect();
    let hits = occurrences(
        &files,
        &[
            "stdin()",
            "stdout()",
            "is_terminal",
            "IsTerminal",
            "println!",
            "print!(",
        ],
    );
    assert!(
        hits.is_empty(),
        "the engine talks to its driver through channels only:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_audit_chain_does_not_depend_on_the_local_log() {
    // local.rs builds on chain.rs (hashes, the head file); the reverse made a
    // cycle. Both open their files through audit/file.rs.
    let hits = occurrences(&[src("audit/chain.rs")], &["local::", "super::local"]);
    assert!(hits.is_empty(), "{}", hits.join("\n"));
}

#[test]
fn user_and_host_lookups_live_in_one_module() {
    // Three copies disagreed on getuid and geteuid; src/os_user.rs says which
    // one is meant and why.
    let files: Vec<PathBuf> = rust_files(&src(""))
        .into_iter()
        .filter(|f| !f.ends_with("src/os_user.rs"))
        .collect();
    let hits = occurrences(
        &files,
        &[
            "getuid(",
            "geteuid(",
            "getpwuid_r",
            "getpwnam_r",
            "gethostname",
        ],
    );
    assert!(
        hits.is_empty(),
        "use crate::os_user instead of calling the C library here:\n{}",
        hits.join("\n")
    );
}
