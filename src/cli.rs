//! The command line: clap definitions and what each command does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::check::check_file;
use crate::diag::Diagnostic;
use crate::style::Style;

/// Exit codes (a contract, see DESIGN.md).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "pgpilot",
    version,
    about = "Walk through a PostgreSQL migration runbook with its locks in view."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate and analyze runbooks without a database.
    Check {
        #[arg(required = true, value_name = "RUNBOOK")]
        runbooks: Vec<PathBuf>,
    },
    /// Show every step with its locks, risk, findings and confirmation phrase.
    Plan {
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    ExitCode::from(match cli.command {
        Command::Check { runbooks } => check(&runbooks),
        Command::Plan { runbook, format } => plan(&runbook, format),
    })
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

fn check(paths: &[PathBuf]) -> u8 {
    let mut code = exit::OK;
    let st = Style::for_stdout();
    for path in paths {
        match check_file(path) {
            Ok(c) => {
                print_diagnostics(&c.warnings);
                let steps = c.runbook.steps().count();
                println!(
                    "{}: ok: {} phases, {steps} steps, risk {}{}",
                    path.display(),
                    c.runbook.phases.len(),
                    st.risk(c.effective_risk()),
                    if c.warnings.is_empty() {
                        String::new()
                    } else {
                        format!(", {} warnings", c.warnings.len())
                    },
                );
            }
            Err(diags) => {
                print_diagnostics(&diags);
                eprintln!("{}: {} error(s)", path.display(), diags.len());
                code = exit::FAILED;
            }
        }
    }
    code
}

fn plan(path: &std::path::Path, format: Format) -> u8 {
    match check_file(path) {
        Ok(c) => {
            match format {
                Format::Json => println!("{}", crate::plan::to_json(&c)),
                Format::Text => print!("{}", crate::plan::to_text(&c, Style::for_stdout())),
            }
            exit::OK
        }
        Err(diags) => {
            print_diagnostics(&diags);
            exit::FAILED
        }
    }
}
