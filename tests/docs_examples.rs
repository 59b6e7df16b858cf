//! Every `pgpilot …` command line shown in README.md and docs/*.md, inside a
//! ```sh or ```console block (also ```shell, ```bash), names a subcommand that
//! exists and only flags that subcommand has: `pgpilot SUB… --help` exits 0
//! and lists each `--flag` (and `-f`) the line uses.
//!
//! Lines that are not pgpilot invocations (`scripts/demo`, `psql …`, output in
//! console blocks) are skipped. Placeholders as the docs write them
//! (`RUNBOOK...`, `[--format text|json]`, `--confirm STEP=PHRASE`) are fine:
//! only the subcommand path and the flag names are checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, sorted.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A command line found in a doc, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Example {
    place: String,
    line: String,
}

const SHELL_LANGS: &[&str] = &["sh", "console", "shell", "bash"];

/// The command lines of the shell blocks of a Markdown text: in ```console
/// blocks only the lines after a `$ ` prompt; `\` continuations joined.
fn command_lines(doc: &str, name: &str) -> Vec<Example> {
    let mut out = Vec::new();
    // (language, pending continuation, its first line number)
    let mut block: Option<(String, String, usize)> = None;
    for (i, raw) in doc.lines().enumerate() {
        let trimmed = raw.trim();
        match &mut block {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let lang = info.split([' ', ',', '{']).next().unwrap_or("").to_string();
                    block = Some((lang, String::new(), 0));
                }
            }
            Some((lang, pending, start)) => {
                if trimmed.starts_with("```") {
                    block = None;
                    continue;
                }
                if !SHELL_LANGS.contains(&lang.as_str()) {
                    continue;
                }
                let text = if pending.is_empty() {
                    if lang == "console" {
                        match trimmed.strip_prefix('$') {
                            Some(cmd) => cmd.trim_start(),
                            None => continue,
                        }
                    } else {
                        trimmed
                    }
                } else {
                    trimmed
                };
                if pending.is_empty() {
                    *start = i + 1;
                }
                match text.strip_suffix('\\') {
                    Some(head) => {
                        pending.push_str(head);
                        pending.push(' ');
                    }
                    None => {
                        pending.push_str(text);
                        out.push(Example {
                            place: format!("{name}:{start}"),
                            line: std::mem::take(pending),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Shell words of a line, split at `|`, `&&`, `||` and `;` outside quotes;
/// a `#` starting a word begins a comment. Quotes are removed.
fn commands(line: &str) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    let end_word = |cmds: &mut Vec<Vec<String>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            cmds.last_mut().unwrap().push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '#' if !in_word => break,
                c if c.is_whitespace() => end_word(&mut cmds, &mut word, &mut in_word),
                // `|` glued to words is a placeholder's alternatives (text|json),
                // not a pipe: a pipe stands alone.
                '|' | '&' | ';' if !in_word => {
                    if matches!(c, '|' | '&') && chars.peek() == Some(&c) {
                        chars.next();
                    }
                    cmds.push(Vec::new());
                }
                ';' => {
                    end_word(&mut cmds, &mut word, &mut in_word);
                    cmds.push(Vec::new());
                }
                _ => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    end_word(&mut cmds, &mut word, &mut in_word);
    cmds.retain(|c| !c.is_empty());
    cmds
}

/// The arguments after `pgpilot`, if the words are a pgpilot invocation
/// (`pgpilot`, `target/release/pgpilot`, … after any `VAR=value`s).
fn pgpilot_args(words: &[String]) -> Option<Vec<String>> {
    let assignment = |w: &&String| {
        w.split_once('=').is_some_and(|(name, _)| {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let mut rest = words.iter().skip_while(assignment);
    let program = rest.next()?;
    let is_pgpilot = program == "pgpilot" || program.ends_with("/pgpilot");
    is_pgpilot.then(|| rest.cloned().collect())
}

/// The flag names a command line uses: `--name` (from `--name=value`,
/// `[--name`, …) and single-letter `-x`.
fn flags(args: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in args {
        let a = a.trim_start_matches(['[', '(']);
        if let Some(long) = a.strip_prefix("--") {
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                out.insert(format!("--{name}"));
            }
        } else if let Some(short) = a.strip_prefix('-') {
            let name = short.trim_end_matches([']', ')', ',']);
            if name.len() == 1 && name.chars().all(|c| c.is_ascii_alphabetic()) {
                out.insert(format!("-{name}"));
            }
        }
    }
    out
}

/// `pgpilot ARGS… --help`: exit code and output.
fn help(path: &[String]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(path)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot --help");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The subcommand names a help text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") {
                break;
            }
            if let Some(name) = line.split_whitespace().next() {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Whether `flag` is listed in a help text as an option (not as part of a word).
fn lists_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        let before = help[..i].chars().next_back();
        let after = help[i + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// What is wrong with one invocation, if anything.
fn problems(example: &Example, args: &[String]) -> Vec<String> {
    let (code, top) = help(&[]);
    assert_eq!(code, Some(0), "pgpilot --help failed:\n{top}");
    let mut path: Vec<String> = Vec::new();
    let mut text = top;
    let mut words = args.iter().filter(|a| !a.starts_with('-'));
    // Descend while the help text lists subcommands.
    loop {
        let subs = subcommands(&text);
        if subs.is_empty() {
            break;
        }
        let Some(next) = words.next() else {
            return vec![format!(
                "{}: `{}` names no subcommand (one of {})",
                example.place,
                example.line,
                subs.join(", ")
            )];
        };
        if !subs.contains(next) {
            return vec![format!(
                "{}: `{}`: `pgpilot {}` has no subcommand {next:?} (it has {})",
                example.place,
                example.line,
                path.join(" "),
                subs.join(", ")
            )];
        }
        path.push(next.clone());
        let (code, out) = help(&path);
        if code != Some(0) {
            return vec![format!(
                "{}: `pgpilot {} --help` exited {code:?}:\n{out}",
                example.place,
                path.join(" ")
            )];
        }
        text = out;
    }
    flags(args)
        .into_iter()
        .filter(|f| !lists_flag(&text, f))
        .map(|f| {
            format!(
                "{}: `{}` uses {f}, which `pgpilot {} --help` does not list",
                example.place,
                example.line,
                path.join(" ")
            )
        })
        .collect()
}

fn invocations() -> Vec<(Example, Vec<String>)> {
    let mut out = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for ex in command_lines(&text, &name) {
            for words in commands(&ex.line) {
                if let Some(args) = pgpilot_args(&words) {
                    out.push((ex.clone(), args));
                }
            }
        }
    }
    out
}

#[test]
fn every_documented_command_line_uses_real_subcommands_and_flags() {
    let found = invocations();
    assert!(
        found.len() >= 2,
        "expected the pgpilot command lines of README.md at least, found {found:?}"
    );
    let failures: Vec<String> = found
        .iter()
        .flat_map(|(ex, args)| problems(ex, args))
        .collect();
    assert!(
        failures.is_empty(),
        "{} documented command line(s) do not match the CLI:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_extractor_reads_the_doc_forms() {
    let doc = "\
text
```sh
scripts/demo    # not pgpilot
pgpilot plan RUNBOOK [--format text|json]    # a comment with --fake
PGPILOT_DATA_DIR=/tmp/x pgpilot run r.toml \\
    --headless --confirm drop='drop column t.c'
```
```console
$ pgpilot audit verify
pgpilot: audit log ok (this is output)
$ pgpilot status r.toml --format json | jq .steps && pgpilot check a.toml; echo done
```
```toml
x = \"pgpilot run --nothing\"
```
";
    let lines = command_lines(doc, "t.md");
    let args: Vec<Vec<String>> = lines
        .iter()
        .flat_map(|e| commands(&e.line))
        .filter_map(|w| pgpilot_args(&w))
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        args,
        vec![
            s(&["plan", "RUNBOOK", "[--format", "text|json]"]),
            s(&[
                "run",
                "r.toml",
                "--headless",
                "--confirm",
                "drop=drop column t.c"
            ]),
            s(&["audit", "verify"]),
            s(&["status", "r.toml", "--format", "json"]),
            s(&["check", "a.toml"]),
        ]
    );
    assert_eq!(lines[2].place, "t.md:5");
    assert_eq!(
        flags(&args[0]).into_iter().collect::<Vec<_>>(),
        ["--format"]
    );
    assert_eq!(
        flags(&args[1]).into_iter().collect::<Vec<_>>(),
        ["--confirm", "--headless"]
    );
    assert!(lists_flag("  --format <FORMAT>", "--format"));
    assert!(!lists_flag("  --formats <X>", "--format"));
}

#[test]
fn a_flag_that_does_not_exist_is_caught() {
    let ex = Example {
        place: "t.md:1".into(),
        line: "pgpilot plan r.toml --colour".into(),
    };
    let p = problems(&ex, &["plan".into(), "r.toml".into(), "--colour".into()]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("--colour"), "{p:?}");
    let p = problems(&ex, &["deploy".into()]);
    assert_eq!(p.len(), 1, "{p:?}");
    let p = problems(&ex, &["audit".into(), "erase".into()]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(problems(&ex, &["audit".into(), "export".into(), "--format".into()]).is_empty());
}
