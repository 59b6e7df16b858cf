//! `--help` answers a newcomer's first question about each command: what
//! goes in its positional argument, and what each flag does.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .args(args)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgpilot");
    assert!(out.status.success(), "pgpilot {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of the `Arguments:` and `Options:` sections that name an
/// argument or flag but say nothing about it.
fn undescribed(text: &str) -> Vec<String> {
    let mut bare = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        if line == "Arguments:" || line == "Options:" {
            in_list = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_list = false;
        }
        let item = line.trim();
        if !in_list || !(item.starts_with('<') || item.starts_with('[') || item.starts_with('-')) {
            continue;
        }
        // "  <RUNBOOK>  The runbook…": the name, two spaces, the description.
        if !item.contains("  ") {
            bare.push(item.to_string());
        }
    }
    bare
}

#[test]
fn every_argument_and_flag_of_the_everyday_commands_is_described() {
    for command in [
        &["check"][..],
        &["import"],
        &["plan"],
        &["run"],
        &["rollback"],
        &["status"],
        &["approve"],
        &["approvals"],
        &["audit", "verify"],
        &["audit", "show"],
    ] {
        // `-h` is the short form, one line per item: a bare name is a gap.
        let mut args = command.to_vec();
        args.push("-h");
        let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run pgpilot");
        let text = String::from_utf8_lossy(&out.stdout);
        let bare: Vec<String> = undescribed(&text)
            .into_iter()
            .filter(|item| !item.starts_with("-h, --help"))
            .collect();
        assert!(
            bare.is_empty(),
            "pgpilot {} -h leaves these undescribed: {bare:?}\n{text}",
            command.join(" ")
        );
    }
}

#[test]
fn import_names_every_layout_it_reads() {
    let text = help(&["import"]);
    let about = text.lines().next().unwrap_or_default();
    for tool in ["Flyway", "golang-migrate", "dbmate", "sqitch"] {
        assert!(
            about.contains(tool),
            "import's summary omits {tool}: {about}"
        );
    }
}
