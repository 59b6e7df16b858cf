//! `pgpilot status`: each step's state on the target as
//! `pgpilot.step_state` records it, and the database's schema version, as
//! text or JSON. Split from cli.rs, which dispatches to it.

use crate::check::check_file;
use crate::exit;
use crate::session::{connect, runtime};

/// `pgpilot status RUNBOOK [--db CONNINFO] [--format text|json]`: what
/// `pgpilot.step_state` says of each step, and the schema version.
pub fn run(path: &std::path::Path, db: Option<&str>, json: bool) -> u8 {
    let checked = match check_file(path) {
        Ok(c) => c,
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            return exit::FAILED;
        }
    };
    let Some(rt) = runtime() else {
        return exit::FAILED;
    };
    rt.block_on(async move {
        let (spec, connection) = match connect(db, "pgpilot").await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let steps = match crate::engine::status::step_statuses(&connection.client, &checked.runbook)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pgpilot: {}", crate::text::for_terminal(&e.to_string()));
                return exit::FAILED;
            }
        };
        let t = spec.target();
        // The database's schema version line (`[runbook] version`); null when none.
        let version = crate::engine::versions::current(&connection.client)
            .await
            .ok()
            .flatten();
        if json {
            let doc = serde_json::json!({
                "runbook": { "id": checked.runbook.id, "title": checked.runbook.title },
                "target": { "host": t.host, "port": t.port, "database": t.database },
                "schema_version": version,
                "steps": steps,
            });
            println!(
                "{}",
                crate::text::json_safe(serde_json::to_string_pretty(&doc).unwrap_or_default())
            );
        } else {
            // Plain text (no colours): the runbook's names and the state
            // rows' texts are made safe for the terminal in one pass.
            print!(
                "{}",
                crate::text::for_terminal(&crate::engine::status::to_text(
                    &checked.runbook,
                    &format!("{}:{}/{}", t.host, t.port, t.database),
                    &steps
                ))
                .into_owned()
                    + &crate::text::for_terminal(&match &version {
                        Some(v) => format!(
                            "schema version {} (runbook {}, {} by {})\n",
                            v.version, v.runbook, v.deployed_at, v.deployed_by
                        ),
                        // Said only to runbooks that keep a version.
                        None if checked.runbook.version.is_some() => {
                            "schema version: none recorded\n".to_string()
                        }
                        None => String::new(),
                    })
            );
        }
        exit::OK
    })
}
