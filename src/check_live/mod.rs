//! `pgpilot check --db`: the same analysis, told what the target knows. The
//! server's version replaces `--pg-version` and `[target] server_version`;
//! a column's real type decides whether a type change rewrites; a DROP
//! names what depends on the object; and a finding whose harm grows with
//! the table (a lock held while an index builds, a table is rewritten or
//! validated) takes its severity from the forecast of how long that lock
//! is held (`--max-blocking`). Everything is read-only (catalog reads and
//! the forecast's bounded sample reads, nothing stronger than ACCESS SHARE).

mod lookups;

use std::path::PathBuf;
use std::time::Duration;

use crate::analysis::version::{self, TargetVersion, VersionSource};
use crate::analysis::{FindingSeverity, RuleId, RunbookAnalysis, StatementAnalysis};
use crate::check::CheckOptions;
use crate::check_report::{CheckRequest, run_with};
use crate::exit;
use crate::forecast::{Sizes, WorkForecast, measure_tables, work_seconds};
use crate::runbook::Runbook;
use crate::session::{resolve, runtime};

/// `check --db`: connect, read the server's version, check every file with
/// the target's facts; the exit code.
pub fn run(paths: &[PathBuf], req: &CheckRequest, db: &str, flag: Option<TargetVersion>) -> u8 {
    let Some(rt) = runtime() else {
        return exit::FAILED;
    };
    let spec = match resolve(Some(db)) {
        Ok(s) => s.with_application_name("pgpilot-check"),
        Err(code) => return code,
    };
    let connection = match rt.block_on(spec.connect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgpilot: {}", crate::text::for_terminal(&e.to_string()));
            return exit::FAILED;
        }
    };
    let client = &connection.client;
    let num = match rt.block_on(lookups::server_version_num(client)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("pgpilot: reading the server's version: {}", shown_error(&e));
            return exit::FAILED;
        }
    };
    let server = server_version(num);
    if let Some(f) = flag
        && f.major != server.major
    {
        eprintln!(
            "pgpilot: note: --pg-version {} but the server runs PostgreSQL {}: checking for {}",
            f.major, server.major, server.major
        );
    }
    let max_blocking = req.max_blocking;
    let refine = |_: &Runbook, a: &mut RunbookAnalysis| {
        if let Err(e) = rt.block_on(refine(client, a, max_blocking)) {
            eprintln!(
                "pgpilot: warning: reading the target for check --db: {}",
                shown_error(&e)
            );
        }
    };
    let opts = CheckOptions {
        enabled: req.enabled.clone(),
        version: Some(server),
        refine: Some(&refine),
    };
    run_with(paths, req, &opts)
}

/// The server's major version, within what pgpilot analyses for (an older
/// server is analysed as the oldest supported, a newer one as the newest).
fn server_version(num: i64) -> TargetVersion {
    let major = version::major_of_num(num).clamp(version::OLDEST, version::NEWEST);
    if major != version::major_of_num(num) {
        eprintln!(
            "pgpilot: note: the server's version {num} is outside PostgreSQL {}-{}: checking for {major}",
            version::OLDEST,
            version::NEWEST
        );
    }
    TargetVersion {
        major,
        source: VersionSource::Server,
    }
}

fn shown_error(e: &tokio_postgres::Error) -> String {
    crate::text::for_terminal(&crate::text::redact(&e.to_string())).into_owned()
}

async fn refine(
    client: &tokio_postgres::Client,
    a: &mut RunbookAnalysis,
    max_blocking: Duration,
) -> Result<(), tokio_postgres::Error> {
    lookups::retypes(client, a).await?;
    lookups::dependents(client, a).await?;
    let sizes = measure_tables(client, &a.steps).await?;
    for step in &mut a.steps {
        for s in &mut step.statements {
            by_size(s, &sizes, max_blocking);
        }
        step.rewrites = step.statements.iter().any(|s| s.rewrites);
    }
    Ok(())
}

/// Findings whose harm is the time a lock is held while the statement
/// works through a table.
const SIZED: [RuleId; 12] = [
    RuleId::IndexNotConcurrent,
    RuleId::ReindexNotConcurrent,
    RuleId::UniqueConstraint,
    RuleId::ForeignKeyNotValid,
    RuleId::CheckNotValid,
    RuleId::SetNotNull,
    RuleId::VolatileDefault,
    RuleId::ColumnTypeChange,
    RuleId::AddColumnDefaultRewrite,
    RuleId::VacuumFull,
    RuleId::Cluster,
    RuleId::DomainConstraint,
];

/// A statement's size-dependent findings take the severity of the forecast
/// of its work on the target: at or over `max_blocking` an error, under a
/// tenth of it a note, a warning between. Statements whose tables are
/// missing on the target or could not be measured keep their findings.
pub fn by_size(s: &mut StatementAnalysis, sizes: &Sizes, max_blocking: Duration) {
    if s.work.is_empty() {
        return;
    }
    let mut seconds = 0.0;
    let mut said = Vec::new();
    for w in &s.work {
        let Some(Some(size)) = sizes.get(&w.table) else {
            return;
        };
        let Some(secs) = work_seconds(w.kind, size, &w.keys) else {
            return;
        };
        seconds += secs;
        let lock = s
            .locks
            .iter()
            .find(|l| l.relation == w.table)
            .map(|l| l.mode)
            .or(s.lock);
        let sentence = WorkForecast {
            relation: size.relation.clone(),
            kind: w.kind,
            bytes: size.table_bytes,
            seconds: Some(secs),
            lock,
        }
        .sentence();
        said.push(format!(
            "{sentence} ({} has about {} rows)",
            size.relation, size.rows
        ));
    }
    let max = max_blocking.as_secs_f64();
    let (severity, verdict) = if seconds >= max {
        (
            FindingSeverity::Error,
            format!("at or over --max-blocking {}", duration_text(max_blocking)),
        )
    } else if seconds < max / 10.0 {
        (
            FindingSeverity::Note,
            format!(
                "a note at this size: under a tenth of --max-blocking {}",
                duration_text(max_blocking)
            ),
        )
    } else {
        (
            FindingSeverity::Warning,
            format!("under --max-blocking {}", duration_text(max_blocking)),
        )
    };
    for f in &mut s.findings {
        if RuleId::parse(f.rule).is_some_and(|r| SIZED.contains(&r)) {
            f.severity = severity;
            f.message = format!(
                "{}; on the target it {} ({verdict})",
                f.message,
                said.join("; ")
            );
        }
    }
}

/// `--max-blocking` as a user writes it: 20ms, 10s.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
