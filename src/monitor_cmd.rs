//! `pgpilot monitor`: parses its durations, connects the watcher and
//! shows the feed — in the monitor screen on a terminal, as text or JSON
//! lines otherwise. Split from cli.rs, which dispatches to it.

use crate::exit;
use crate::session::{resolve, runtime};

/// `pgpilot monitor [--db CONNINFO] [--interval D] [--long-transaction D]
/// [--once] [--format text|json]`: the live panels without a runbook (the
/// TUI on a terminal, else a line per poll; `--once`, one snapshot).
pub fn run(db: Option<&str>, interval: &str, long_transaction: &str, once: bool, json: bool) -> u8 {
    use crate::runbook::parse_duration;
    let interval = match parse_duration(interval) {
        Ok(d) if d >= std::time::Duration::from_millis(250) => d,
        Ok(_) => {
            eprintln!("pgpilot: --interval must be at least 250ms");
            return exit::USAGE;
        }
        Err(m) => {
            eprintln!("pgpilot: --interval: {m}");
            return exit::USAGE;
        }
    };
    let long = match parse_duration(long_transaction) {
        Ok(d) => d,
        Err(m) => {
            eprintln!("pgpilot: --long-transaction: {m}");
            return exit::USAGE;
        }
    };
    let Some(rt) = runtime() else {
        return exit::FAILED;
    };
    rt.block_on(async move {
        use crate::monitor::{Feed, Watcher, text};
        let spec = match resolve(db) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let mut watcher = match Watcher::connect(&spec, long, interval).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("pgpilot: {}", crate::text::for_terminal(&e.to_string()));
                return exit::FAILED;
            }
        };
        let print = |feed: &Feed| {
            let now = chrono::Utc::now();
            if json {
                println!("{}", crate::text::json_safe(text::feed_to_json(feed, now)))
            } else {
                print!(
                    "{}",
                    crate::text::for_terminal(&text::feed_to_text(feed, now))
                )
            }
        };
        if once {
            watcher.watch_replicas(true);
            // One snapshot or exit 1: no retries, a script wants the answer.
            return match watcher.next().await {
                (feed @ Feed::Snapshot(_), _) => {
                    print(&feed);
                    exit::OK
                }
                (Feed::PollFailed { error, .. } | Feed::Disconnected { error, .. }, _) => {
                    eprintln!(
                        "pgpilot: poll failed: {}",
                        crate::text::for_terminal(&error.to_string())
                    );
                    exit::FAILED
                }
            };
        }
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
            let t = spec.target();
            let ctx = crate::audit::record::Context {
                session: format!("{:016x}", fastrand::u64(..)),
                operator: crate::os_user::operator_name(),
                role: Some(t.user.clone()),
                client_host: crate::os_user::host_name(),
                target: Some(crate::audit::record::AuditTarget {
                    host: t.host.clone(),
                    port: t.port,
                    database: t.database.clone(),
                }),
                ..Default::default()
            };
            return crate::tui::monitor_screen::run(
                watcher,
                format!("{}:{}/{}", t.host, t.port, t.database),
                interval,
                ctx,
                spec.warnings(),
            )
            .await;
        }
        loop {
            let (feed, news) = watcher.next().await;
            // A change of the connection is said once on stderr; every line
            // on stdout says what the panel would.
            if let Some(n) = news {
                eprintln!("pgpilot: {}", crate::text::for_terminal(&text::news(&n)));
            }
            print(&feed);
            tokio::select! {
                _ = tokio::time::sleep_until(watcher.due()) => {}
                _ = tokio::signal::ctrl_c() => return exit::OK,
            }
        }
    })
}
