//! `pgpilot restore BACKUP [CONN] [--table T] [--into-database NAME]`: a
//! backup step's dump restored into a scratch database on the same server
//! (never into the database it came from: pg_restore cannot remap schemas,
//! and a responder wants to compare before copying anything back), after
//! a typed confirmation, audited.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::audit::db::DbAudit;
use crate::audit::local::{AuditLog, data_dir};
use crate::audit::record::{Action, AuditTarget, Context, Event};
use crate::backup::{self, BackupId, ToolConn};
use crate::exit;
use crate::runbook::TableName;

/// The step id of the restore's confirmation: `--confirm restore=PHRASE`.
pub const CONFIRM_ID: &str = "restore";

pub struct RestoreArgs {
    pub backup: String,
    pub db: Option<String>,
    pub tables: Vec<String>,
    pub into: Option<String>,
    pub confirm: Vec<String>,
}

/// Say it on stderr, made safe for the terminal.
fn say(text: &str) {
    eprintln!("pgpilot: {}", crate::text::for_terminal(text));
}

/// The phrase to type: which backup, into which database.
pub fn phrase(id: &BackupId, into: &str) -> String {
    format!("restore {} into {into}", id.short())
}

/// The default scratch database of a backup.
pub fn default_database(id: &BackupId) -> String {
    format!("pgpilot_restore_{}", id.short())
}

/// A path to a dump, or a backup id (its SHA-256, or the first 8 or more
/// hex digits of it) found among the dumps in the data directory.
pub fn find_backup(given: &str) -> Result<PathBuf, String> {
    let path = Path::new(given);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let id = given.trim().to_ascii_lowercase();
    if id.len() < 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{given}: no such file, and not a backup id (the sha256 or its first 8+ hex digits, as status and the audit show it)"
        ));
    }
    let root = data_dir().map_err(|e| e.to_string())?.join("backups");
    let mut found = Vec::new();
    for folder in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(folder.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = file.path();
            if p.extension().is_some_and(|e| e == "dump")
                && let Ok((_, sha)) = backup::digest(&p)
                && sha.starts_with(&id)
            {
                found.push(p);
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no backup with id {id} in {}", root.display())),
        n => Err(format!(
            "{n} backups have ids starting with {id}: give more digits"
        )),
    }
}

pub fn run(args: RestoreArgs) -> u8 {
    let Some(rt) = crate::session::runtime() else {
        return exit::FAILED;
    };
    rt.block_on(restore(args))
}

async fn restore(args: RestoreArgs) -> u8 {
    let mut tables = Vec::new();
    for t in &args.tables {
        match TableName::parse(t) {
            Some(name) => tables.push(name),
            None => {
                say(&format!(
                    "--table {t:?} is not a table name (name or schema.name)"
                ));
                return exit::USAGE;
            }
        }
    }
    let path = match find_backup(&args.backup) {
        Ok(p) => p,
        Err(e) => {
            say(&e);
            return exit::FAILED;
        }
    };
    let id = match backup::digest(&path) {
        Ok((size, sha256)) => BackupId {
            path: path.canonicalize().unwrap_or(path),
            size,
            sha256,
        },
        Err(e) => {
            say(&e.to_string());
            return exit::FAILED;
        }
    };
    let spec = match crate::session::resolve(args.db.as_deref()) {
        Ok(s) => s.with_application_name("pgpilot"),
        Err(code) => return code,
    };
    let connection = match spec.connect().await {
        Ok(c) => c,
        Err(e) => {
            say(&e.to_string());
            return exit::FAILED;
        }
    };
    let client = &connection.client;
    let into = args.into.clone().unwrap_or_else(|| default_database(&id));
    let t = spec.target();
    let mut audit = RestoreAudit::new(&t);
    let server: String = match client
        .query_one("SHOW server_version_num", &[])
        .await
        .and_then(|r| r.try_get("server_version_num"))
    {
        Ok(v) => v,
        Err(e) => {
            say(&crate::pg::redact(&e.to_string()));
            return exit::FAILED;
        }
    };
    let server = backup::server_major(server.trim().parse().unwrap_or(0));
    let pg_restore = match backup::find("pg_restore", server) {
        Ok(tool) => tool,
        Err(e) => {
            say(&e.to_string());
            return exit::FAILED;
        }
    };
    // The dump must hold what is asked of it before anything is created.
    let wanted: Vec<TableName> = tables.clone();
    if let Err(e) = backup::verify_dump(&pg_restore, &id.path, &wanted).await {
        say(&e.to_string());
        return exit::FAILED;
    }
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&into])
        .await;
    match exists {
        Ok(None) => {}
        Ok(Some(_)) => {
            say(&format!(
                "database {into} exists; pgpilot restores only into a database it creates: drop it first (DROP DATABASE {}) or name another with --into-database",
                crate::analysis::quote_ident(&into)
            ));
            return exit::REFUSED;
        }
        Err(e) => {
            say(&crate::pg::redact(&e.to_string()));
            return exit::FAILED;
        }
    }
    let want = phrase(&id, &into);
    eprintln!(
        "pgpilot: restore {} into the new database {} on {}:{}",
        crate::text::for_terminal(&id.to_string()),
        crate::text::for_terminal(&into),
        crate::text::for_terminal(&t.host),
        t.port
    );
    let typed = typed_phrase(&args.confirm, &want).await;
    let outcome = match &typed {
        Some(p) if *p == want => "accepted",
        Some(_) => "wrong",
        None => "missing",
    };
    audit.record(client, confirmation(outcome, &want)).await;
    if outcome != "accepted" {
        say(&format!(
            "restore refused: the confirmation was {outcome}; type \"{want}\" (or pass --confirm '{CONFIRM_ID}={want}')"
        ));
        return exit::REFUSED;
    }
    let what = format!("backup {id} into database {into}");
    audit.record(client, restore_event("started", &what)).await;
    let created = client
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            crate::analysis::quote_ident(&into)
        ))
        .await;
    if let Err(e) = created {
        let m = crate::pg::redact(&e.to_string());
        audit.record(client, restore_event("failed", &m)).await;
        say(&format!("cannot create database {into}: {m}"));
        return exit::FAILED;
    }
    let conn = ToolConn::from_spec(&spec).with_dbname(&into);
    let mut cmd = tokio::process::Command::new(&pg_restore.path);
    cmd.args(backup::restore_args(&tables))
        .arg(format!("--dbname={}", backup::dbname_conninfo(&into)))
        .arg(&id.path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    conn.apply(&mut cmd);
    let restored = cmd.output().await;
    let failure = match restored {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(backup::tool_message(&out.stderr, out.status)),
        Err(e) => Some(e.to_string()),
    };
    if let Some(m) = failure {
        // Half a restore misleads whoever compares against it: the
        // database pgpilot just created goes again.
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {}",
                crate::analysis::quote_ident(&into)
            ))
            .await;
        let m = format!("pg_restore failed: {m}");
        audit.record(client, restore_event("failed", &m)).await;
        say(&format!("{m}; database {into} dropped again"));
        return exit::FAILED;
    }
    audit.record(client, restore_event("done", &what)).await;
    println!(
        "{}",
        crate::text::for_terminal(&format!(
            "restored {id} into database {into}; compare or copy the data back from there, then DROP DATABASE {}",
            crate::analysis::quote_ident(&into)
        ))
    );
    exit::OK
}

/// The phrase from `--confirm restore=PHRASE`, else typed at the terminal.
async fn typed_phrase(confirms: &[String], want: &str) -> Option<String> {
    if let Some(p) = confirms.iter().find_map(|c| {
        c.split_once('=')
            .filter(|(id, _)| *id == CONFIRM_ID)
            .map(|(_, p)| p.to_string())
    }) {
        return Some(p);
    }
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("type \"{}\" to restore: ", crate::text::for_terminal(want));
    tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        match std::io::stdin().read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
        }
    })
    .await
    .ok()
    .flatten()
}

fn confirmation(outcome: &str, want: &str) -> Event {
    Event {
        step: Some(CONFIRM_ID.into()),
        outcome: Some(outcome.into()),
        message: Some(format!("phrase: {want}")),
        ..Event::new(Action::Confirmation)
    }
}

fn restore_event(outcome: &str, message: &str) -> Event {
    Event {
        step: Some(CONFIRM_ID.into()),
        outcome: Some(outcome.into()),
        message: Some(message.into()),
        ..Event::new(Action::Restore)
    }
}

/// The local log first, then its copy in the connected database (or the
/// spool, as for every record).
struct RestoreAudit {
    ctx: Context,
    log: Option<AuditLog>,
    db: Option<DbAudit>,
}

impl RestoreAudit {
    fn new(t: &crate::pg::Target) -> RestoreAudit {
        let ctx = Context {
            session: format!("{:016x}", fastrand::u64(..)),
            operator: crate::os_user::operator_name(),
            role: Some(t.user.clone()),
            client_host: crate::os_user::host_name(),
            target: Some(AuditTarget {
                host: t.host.clone(),
                port: t.port,
                database: t.database.clone(),
            }),
            ..Default::default()
        };
        let log = AuditLog::open_default();
        if let Err(e) = &log {
            say(&format!("cannot open the audit log: {e}"));
        }
        let log = log.ok();
        let db = log.as_ref().map(|l| DbAudit::new(l.dir()));
        RestoreAudit { ctx, log, db }
    }

    async fn record(&mut self, client: &tokio_postgres::Client, ev: Event) {
        let Some(log) = &mut self.log else { return };
        match log.append(&self.ctx, ev) {
            Ok(rec) => {
                if let Some(db) = &mut self.db {
                    let _ = db.write(client, &rec).await;
                }
            }
            Err(e) => say(&format!("cannot write the audit log: {e}")),
        }
    }
}
