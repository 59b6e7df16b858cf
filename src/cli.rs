//! The command line: clap definitions and what each command does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::check::check_file;
use crate::check_report::{self, CheckFormat, FailOn};
use crate::diag::Diagnostic;
use crate::engine::{Mode, RunOptions};
use crate::exit;
use crate::session::{connect, drive_session, prepare_drive, runtime};
use crate::style::Style;

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
    /// Validate and analyze runbooks, plain .sql migrations or migration folders, without a database.
    Check {
        /// Runbooks (.toml), .sql migrations or migration folders; each is checked on its own.
        #[arg(required = true, value_name = "FILE.sql|DIR|RUNBOOK")]
        runbooks: Vec<PathBuf>,
        /// Turn on an opt-in rule (unqualified-name, rerun-unsafe); repeatable.
        #[arg(long = "enable", value_name = "RULE")]
        enable: Vec<String>,
        /// How to print findings: for people (text) or for CI.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// The lowest level that fails the check (exit code 1); errors always do.
        #[arg(long, value_enum, default_value_t = FailOn::Error)]
        fail_on: FailOn,
        /// The target's PostgreSQL major version (10-18), over [target] server_version; --db reads the server's.
        #[arg(long, value_name = "N", value_parser = crate::analysis::version::parse_major)]
        pg_version: Option<u32>,
        /// Findings whose forecast holds a lock this long are errors, under a tenth of it notes (with --db).
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::runbook::parse_duration)]
        max_blocking: std::time::Duration,
        /// Also read the target: its version, table sizes, column types, dependents (read-only).
        #[command(flatten)]
        conn: Conn,
    },
    /// Write a runbook for a migration folder (Flyway, golang-migrate, dbmate, sqitch, numbered files) that runs its files.
    Import {
        /// The migration folder; its tool is told by its file names, or by --layout.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The folder's tool, when its file names do not say it.
        #[arg(long, value_enum)]
        layout: Option<crate::migrations::Layout>,
        /// Write the runbook here instead of printing it.
        #[arg(short = 'o', long = "output", value_name = "RUNBOOK.toml")]
        output: Option<PathBuf>,
    },
    /// Show every step with its locks, risk, findings and confirmation phrase.
    Plan {
        /// The runbook (.toml), a migration folder or one .sql migration.
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also forecast each step on this target: table sizes, and how long
        /// its rewrite, index build, validation or scan holds its lock
        /// (read-only: nothing stronger than ACCESS SHARE).
        #[command(flatten)]
        conn: Conn,
    },
    /// Apply a runbook's pending steps to a database.
    Run {
        /// The runbook (.toml), a migration folder or one .sql migration.
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[command(flatten)]
        conn: Conn,
        /// The environment this target is (must be one the runbook names).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Run everything in one transaction and roll it back at the end.
        #[arg(long)]
        rehearse: bool,
        #[command(flatten)]
        drive: Drive,
        /// Start at this step (earlier ones are not run).
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// A critical fix or system down: one `owner` approval instead of the
        /// required kinds, no notice; the reason goes into every audit record.
        #[arg(long, value_name = "REASON")]
        emergency: Option<String>,
        /// Your identity in the runbook's allowed_signers: approvals signed
        /// by it do not count (four eyes).
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },
    /// Roll back applied steps in reverse order.
    Rollback {
        /// The runbook (.toml), a migration folder or one .sql migration.
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[command(flatten)]
        conn: Conn,
        /// Stop before this step: it stays applied.
        #[arg(long, value_name = "STEP")]
        to: Option<String>,
        /// The environment this target is (must be one the runbook names).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        #[command(flatten)]
        drive: Drive,
    },
    /// What is applied on a target, from the database itself.
    Status {
        /// The runbook (.toml), a migration folder or one .sql migration.
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Approve this exact runbook (its content hash) on a target, as your database role.
    Approve {
        /// The runbook (.toml), a migration folder or one .sql migration: approvals bind its content.
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[command(flatten)]
        conn: Conn,
        /// The kind of approval: technical, business, security, cab, owner, …
        #[arg(long = "as", value_name = "KIND")]
        kind: String,
        /// A note kept with the approval and shown by `pgpilot approvals` (what you reviewed).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// Withdraw your approval of this kind instead.
        #[arg(long, conflicts_with = "comment")]
        revoke: bool,
        /// Sign the approval with this SSH key (ssh-keygen -Y sign); needed
        /// when the runbook names [approvals] allowed_signers.
        #[arg(long, value_name = "KEY", conflicts_with = "revoke")]
        sign_with: Option<PathBuf>,
        /// Your identity in allowed_signers (default: the comment of KEY.pub).
        #[arg(long, value_name = "PRINCIPAL", requires = "sign_with")]
        principal: Option<String>,
    },
    /// The approvals of a runbook on a target, and whether they are of its current content.
    Approvals {
        /// The runbook (.toml), a migration folder or one .sql migration: approvals bind its content.
        #[arg(value_name = "RUNBOOK")]
        runbook: PathBuf,
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Restore a backup step's dump into a new scratch database on the same server.
    Restore {
        /// The dump's path, or its backup id (sha256, or 8+ of its first hex digits).
        #[arg(value_name = "BACKUP")]
        backup: String,
        #[command(flatten)]
        conn: Conn,
        /// Restore only this table (name or schema.name). Repeatable.
        #[arg(long = "table", value_name = "T")]
        tables: Vec<String>,
        /// The database to create and restore into (default pgpilot_restore_<id>).
        #[arg(long, value_name = "NAME")]
        into_database: Option<String>,
        /// The typed confirmation for runs without a terminal: restore=PHRASE.
        #[arg(long = "confirm", value_name = "restore=PHRASE")]
        confirm: Vec<String>,
    },
    /// The live lock panels alone: blocking tree and long transactions.
    Monitor {
        #[command(flatten)]
        conn: Conn,
        /// Time between polls (at least 250ms).
        #[arg(long, value_name = "DURATION", default_value = "1s")]
        interval: String,
        /// Transactions open longer than this are listed.
        #[arg(long, value_name = "DURATION", default_value = "5min")]
        long_transaction: String,
        /// Print one snapshot and exit.
        #[arg(long)]
        once: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A throwaway cluster with demo data and live traffic, and the demo runbook in the TUI.
    Demo {
        /// Rehearse: run everything in one transaction rolled back at the end.
        #[arg(long)]
        rehearse: bool,
        #[command(flatten)]
        drive: Drive,
    },
    /// The local audit log: verify its hash chain, show or export records.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain: any edit, insertion or deletion fails.
    Verify {
        /// The audit log to read; by default pgpilot's own (audit.jsonl in its data directory, PGPILOT_DATA_DIR).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print records, one line each.
    Show {
        /// The audit log to read; by default pgpilot's own (audit.jsonl in its data directory, PGPILOT_DATA_DIR).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Export records as JSON, CSV, or a Markdown change record.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The audit log to read; by default pgpilot's own (audit.jsonl in its data directory, PGPILOT_DATA_DIR).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        filter: AuditFilter,
    },
}

#[derive(clap::Args)]
pub struct AuditFilter {
    /// Only this runbook id.
    #[arg(long)]
    pub runbook: Option<String>,
    /// Only records at or after this date or time (2026-11-23, RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this action (step_success, confirmation, rollback_start, …).
    #[arg(long)]
    pub action: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
    Markdown,
}

/// Where to connect: libpq's conventions (PGHOST, PGPORT, PGUSER, PGDATABASE,
/// PGPASSWORD, PGSSLMODE, PGAPPNAME, ~/.pgpass) fill in what --db leaves out.
#[derive(clap::Args, Clone)]
pub struct Conn {
    /// A connection URI (postgresql://user@host:port/db?sslmode=require) or key=value string.
    #[arg(long, value_name = "CONNINFO")]
    pub db: Option<String>,
}

#[derive(clap::Args, Clone)]
pub struct Drive {
    /// Print progress line by line instead of opening the TUI.
    #[arg(long)]
    pub headless: bool,
    /// The phrase for a step's typed confirmation, for runs without a terminal. Repeatable.
    #[arg(long = "confirm", value_name = "STEP=PHRASE")]
    pub confirm: Vec<String>,
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
    if matches!(
        cli.command,
        Command::Check { .. }
            | Command::Import { .. }
            | Command::Plan { .. }
            | Command::Status { .. }
            | Command::Approvals { .. }
            | Command::Audit { .. }
    ) {
        exit::end_quietly_when_stdout_closes();
    }
    ExitCode::from(match cli.command {
        Command::Check {
            runbooks,
            enable,
            format,
            fail_on,
            pg_version,
            max_blocking,
            conn,
        } => match check_report::opt_in_rules(&enable) {
            Ok(enabled) => check_report::run(
                &runbooks,
                &check_report::CheckRequest {
                    enabled,
                    pg_version,
                    db: conn.db,
                    max_blocking,
                    format,
                    fail_on,
                },
            ),
            Err(code) => code,
        },
        Command::Import {
            dir,
            layout,
            output,
        } => crate::migrations::import::import_cmd(&dir, layout, output.as_deref()),
        Command::Plan {
            runbook,
            format,
            conn,
        } => plan(&runbook, format, &conn),
        Command::Run {
            runbook,
            conn,
            env,
            rehearse,
            drive,
            from,
            emergency,
            principal,
        } => {
            if emergency.as_deref().is_some_and(|r| r.trim().is_empty()) {
                eprintln!("pgpilot: --emergency needs a reason: what is down or what the fix is");
                return ExitCode::from(exit::USAGE);
            }
            if let Some(p) = principal.as_deref()
                && !crate::governance::signature::valid_principal(p)
            {
                eprintln!(
                    "pgpilot: --principal {}: a principal is one word such as alice@example.com",
                    crate::text::for_terminal(p)
                );
                return ExitCode::from(exit::USAGE);
            }
            let options = RunOptions {
                mode: Mode::Run { from },
                env,
                rehearse,
                interactive: false,
                emergency,
                principal,
            };
            drive_engine(&runbook, conn, options, drive)
        }
        Command::Rollback {
            runbook,
            conn,
            to,
            env,
            drive,
        } => {
            let options = RunOptions {
                mode: Mode::Rollback { to },
                env,
                rehearse: false,
                interactive: false,
                emergency: None,
                principal: None,
            };
            drive_engine(&runbook, conn, options, drive)
        }
        Command::Status {
            runbook,
            conn,
            format,
        } => crate::status_cmd::run(&runbook, conn.db.as_deref(), matches!(format, Format::Json)),
        Command::Audit { command } => audit(command),
        Command::Approve {
            runbook,
            conn,
            kind,
            comment,
            revoke,
            sign_with,
            principal,
        } => crate::governance::cli::approve(
            &runbook,
            conn.db.as_deref(),
            &kind,
            comment.as_deref(),
            revoke,
            sign_with
                .as_deref()
                .map(|key| crate::governance::cli::SignWith {
                    key,
                    principal: principal.as_deref(),
                }),
        ),
        Command::Approvals {
            runbook,
            conn,
            format,
        } => crate::governance::cli::list(
            &runbook,
            conn.db.as_deref(),
            matches!(format, Format::Json),
        ),
        Command::Restore {
            backup,
            conn,
            tables,
            into_database,
            confirm,
        } => crate::restore::run(crate::restore::RestoreArgs {
            backup,
            db: conn.db,
            tables,
            into: into_database,
            confirm,
        }),
        Command::Demo { rehearse, drive } => {
            crate::demo::run(rehearse, drive.headless, &drive.confirm)
        }
        Command::Monitor {
            conn,
            interval,
            long_transaction,
            once,
            format,
        } => crate::monitor_cmd::run(
            conn.db.as_deref(),
            &interval,
            &long_transaction,
            once,
            matches!(format, Format::Json),
        ),
    })
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

fn plan(path: &std::path::Path, format: Format, conn: &Conn) -> u8 {
    match check_file(path) {
        Ok(c) => {
            let forecasts = match &conn.db {
                Some(_) => match forecast(&c, conn) {
                    Ok(f) => Some(f),
                    Err(code) => return code,
                },
                None => None,
            };
            let f = forecasts.as_deref();
            match format {
                Format::Json => println!("{}", crate::plan::to_json_with(&c, f)),
                Format::Text => print!("{}", crate::plan::to_text_with(&c, f, Style::for_stdout())),
            }
            exit::OK
        }
        Err(diags) => {
            print_diagnostics(&diags);
            exit::FAILED
        }
    }
}

/// Each step's forecast, measured on the target `--db` names.
fn forecast(c: &crate::check::Checked, conn: &Conn) -> Result<Vec<crate::forecast::Forecast>, u8> {
    let rt = runtime().ok_or(exit::FAILED)?;
    rt.block_on(async {
        let (_, connection) = connect(conn.db.as_deref(), "pgpilot-forecast").await?;
        let sizes = crate::forecast::measure_tables(&connection.client, &c.analysis.steps)
            .await
            .map_err(|e| {
                eprintln!(
                    "pgpilot: forecast: {}",
                    crate::text::for_terminal(&crate::text::redact(&e.to_string()))
                );
                exit::FAILED
            })?;
        Ok(c.analysis
            .steps
            .iter()
            .map(|a| crate::forecast::forecast_step(a, &sizes))
            .collect())
    })
}

fn drive_engine(path: &std::path::Path, conn: Conn, mut options: RunOptions, drive: Drive) -> u8 {
    let driving = match prepare_drive(drive.headless, &drive.confirm, &mut options) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let checked = match check_file(path) {
        Ok(c) => c,
        Err(diags) => {
            print_diagnostics(&diags);
            return exit::FAILED;
        }
    };
    let Some(rt) = runtime() else {
        return exit::FAILED;
    };
    let code = rt.block_on(drive_session(checked, conn.db, options, driving));
    // A terminal read nobody waits for any more (the engine ended while a
    // question was open) must not hold the exit.
    rt.shutdown_background();
    code
}

fn audit(command: AuditCommand) -> u8 {
    use crate::audit::cli as a;
    let filter = |f: AuditFilter| a::Filter {
        runbook: f.runbook,
        since: f.since,
        action: f.action,
    };
    match command {
        AuditCommand::Verify { file } => a::verify_cmd(file.as_deref()),
        AuditCommand::Show { file, filter: f } => a::show_cmd(file.as_deref(), &filter(f)),
        AuditCommand::Export {
            format,
            file,
            filter: f,
        } => {
            let format = match format {
                ExportFormat::Json => a::ExportFormat::Json,
                ExportFormat::Csv => a::ExportFormat::Csv,
                ExportFormat::Markdown => a::ExportFormat::Markdown,
            };
            a::export_cmd(file.as_deref(), format, &filter(f))
        }
    }
}
