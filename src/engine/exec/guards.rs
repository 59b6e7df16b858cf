//! The guards before the first change: environment, database, primary,
//! single operator (advisory lock), runbook unchanged, production.

use std::collections::HashMap;

use super::Exec;
use super::sql::SqlFailure;
use crate::audit::record::{Action, Event};
use crate::engine::schema;
use crate::engine::state::{self, Status};
use crate::engine::{Ask, EngineEvent, Mode, Outcome, TargetInfo};

impl Exec<'_> {
    pub(super) async fn guard(
        &mut self,
        name: &str,
        passed: bool,
        detail: String,
    ) -> Result<(), Outcome> {
        let recorded = detail.clone();
        self.guard_recorded(name, passed, detail, recorded).await
    }

    /// A guard whose audit record says more than the screen's line.
    pub(super) async fn guard_recorded(
        &mut self,
        name: &str,
        passed: bool,
        detail: String,
        recorded: String,
    ) -> Result<(), Outcome> {
        self.emit(EngineEvent::Guard {
            name: name.into(),
            passed,
            detail: detail.clone(),
        });
        let mut ev = Event::new(Action::Guard);
        ev.outcome = Some(if passed { "pass" } else { "fail" }.into());
        ev.message = Some(format!("{name}: {recorded}"));
        self.record(ev).await;
        if passed {
            Ok(())
        } else {
            Err(Outcome::Refused(format!("{name}: {detail}")))
        }
    }

    pub(super) async fn guards(&mut self) -> Result<(), Outcome> {
        let row = self
            .client()
            .query_one(
                "SELECT current_database()::text AS database, current_user::text AS role, NOT pg_is_in_recovery() AS primary, current_setting('server_version') AS server_version, pg_backend_pid() AS pid",
                &[],
            )
            .await
            .map_err(|e| Outcome::Failed(format!("cannot read the target: {}", SqlFailure::from_pg(&e).message)))?;
        let target = self.s.spec.target();
        let read = |e: tokio_postgres::Error| {
            Outcome::Failed(format!(
                "cannot read the target: {}",
                SqlFailure::from_pg(&e).message
            ))
        };
        let info = TargetInfo {
            host: target.host.clone(),
            port: target.port,
            database: row.try_get("database").map_err(read)?,
            role: row.try_get("role").map_err(read)?,
            primary: row.try_get("primary").map_err(read)?,
            server_version: row.try_get("server_version").map_err(read)?,
            pid: row.try_get("pid").map_err(read)?,
        };
        self.s.recorder.set_role(&info.role);
        self.s.conn_pid = info.pid;
        self.emit(EngineEvent::Connected(info.clone()));
        let rb = &self.s.runbook;
        let envs = rb.target.environments.clone();
        let wanted_db = rb.target.database.clone();
        let require_primary = rb.target.require_primary;

        if !envs.is_empty() || self.s.options.env.is_some() {
            let (ok, detail) = match &self.s.options.env {
                None => (
                    false,
                    format!(
                        "this runbook names its environments ({}); say which with --env",
                        envs.join(", ")
                    ),
                ),
                Some(e) if envs.is_empty() || envs.contains(e) => (true, format!("--env {e}")),
                Some(e) => (
                    false,
                    format!(
                        "--env {e} is not one of this runbook's environments ({})",
                        envs.join(", ")
                    ),
                ),
            };
            self.guard("environment", ok, detail).await?;
        }
        if let Some(db) = &wanted_db {
            let ok = *db == info.database;
            self.guard(
                "database",
                ok,
                if ok {
                    format!("connected to {db}")
                } else {
                    format!(
                        "connected to {}, but the runbook is for {db}",
                        info.database
                    )
                },
            )
            .await?;
        }
        if require_primary {
            self.guard(
                "primary",
                info.primary,
                if info.primary {
                    "the target is a primary".into()
                } else {
                    "the target is a replica (in recovery); connect to the primary".into()
                },
            )
            .await?;
        }
        self.advisory_lock().await?;
        if self.s.options.rehearse {
            self.client()
                .batch_execute("BEGIN")
                .await
                .map_err(|e| Outcome::Failed(SqlFailure::from_pg(&e).message))?;
            self.rehearsal_open = true;
        }
        // Before anything is read from it: an older schema is upgraded (in
        // the rehearsal's transaction during a rehearsal), a newer one refused.
        schema::ensure(self.client(), self.rehearsal_open)
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        // pgpilot's own DDL says "already exists, skipping" and the like;
        // those notices are not the first step's (they arrive on the channel
        // before its query completes). A warning would still be shown.
        let mut kept = Vec::new();
        while let Ok(n) = self.s.conn.notices.try_recv() {
            if n.severity.is_warning() {
                kept.push(n);
            }
        }
        for n in kept {
            self.emit(EngineEvent::Notice {
                step: None,
                severity: n.severity,
                message: n.message,
            });
        }
        self.states = state::load(self.client(), &self.s.runbook.id)
            .await
            .map_err(|e| {
                Outcome::Failed(format!(
                    "cannot read pgpilot.step_state: {}",
                    SqlFailure::from_pg(&e).message
                ))
            })?;
        self.tool_history().await?;
        for st in self.states.values() {
            if let Some(c) = &st.captured
                && let Ok(map) = serde_json::from_str::<HashMap<String, String>>(c)
            {
                self.captured.extend(map);
            }
        }
        let changed: Vec<String> = self
            .s
            .runbook
            .steps()
            .filter_map(|(_, step)| {
                let st = self.states.get(&step.id)?;
                (st.status == Status::Applied && st.step_sha256 != state::step_hash(step))
                    .then(|| step.id.clone())
            })
            .collect();
        let ok = changed.is_empty();
        self.guard(
            "runbook unchanged",
            ok,
            if ok {
                format!("sha256 {}", &self.s.runbook.sha256[..12])
            } else {
                format!("applied step(s) {} changed since they were applied; roll them back first or write a new runbook", changed.join(", "))
            },
        )
        .await?;
        // The backup rule first: a runbook that needs a backup step added
        // would lose its approvals to that edit anyway.
        if self.s.options.env.as_deref().is_some_and(is_production)
            && matches!(self.s.options.mode, Mode::Run { .. })
        {
            self.backup_rule_guard().await?;
        }
        self.approvals_guard().await?;
        self.window_guard().await?;
        if matches!(self.s.options.mode, Mode::Run { .. }) {
            self.version_guard().await?;
        }
        if self.s.options.env.as_deref().is_some_and(is_production) {
            self.ask_phrase(
                None,
                Ask::DatabaseName {
                    database: info.database.clone(),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// In production, a step that removes data needs a backup before it
    /// (see `analysis::backup_rule`): refused before the first change.
    async fn backup_rule_guard(&mut self) -> Result<(), Outcome> {
        use crate::analysis::backup_rule::{BACKUP_RULE_ADVICE, uncovered};
        let missing = uncovered(&self.s.runbook, &self.s.analysis);
        let detail = match missing.first() {
            None => "every table a step removes data from is backed up before it".to_string(),
            Some(u) => format!(
                "step {} removes data of {} ({}) and no earlier backup step covers it{}; {BACKUP_RULE_ADVICE}",
                u.step,
                u.table,
                u.what,
                match missing.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                }
            ),
        };
        self.guard("backup before data loss", missing.is_empty(), detail)
            .await
    }

    /// One operator per (runbook, database): a session-level advisory lock.
    pub(super) async fn advisory_lock(&mut self) -> Result<(), Outcome> {
        let id = self.s.runbook.id.clone();
        let got: bool = self
            .client()
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('pgpilot'), hashtext($1)) AS got",
                &[&id],
            )
            .await
            .and_then(|r| r.try_get("got"))
            .map_err(|e| Outcome::Failed(SqlFailure::from_pg(&e).message))?;
        if got {
            return self
                .guard(
                    "single operator",
                    true,
                    format!("holding the lock for runbook {id}"),
                )
                .await;
        }
        let holder = self
            .client()
            .query_opt(
                "SELECT a.usename::text AS role, coalesce(host(a.client_addr), 'local socket') AS client, a.pid,
                        to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"') AS since, a.application_name AS application
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = hashtext('pgpilot')::oid AND l.objid = hashtext($1)::oid",
                &[&id],
            )
            .await
            .ok()
            .flatten();
        let described = holder.and_then(|r| {
            let text = |c: &str| r.try_get::<_, Option<String>>(c).ok().flatten();
            Some(format!(
                "role {} from {} (pid {}, {}) since {}",
                text("role")?,
                text("client")?,
                r.try_get::<_, i32>("pid").ok()?,
                text("application").unwrap_or_default(),
                text("since")?,
            ))
        });
        // Names another session chose: shown, never obeyed.
        let who = described
            .map(|d| crate::text::for_terminal(&d).into_owned())
            .unwrap_or_else(|| "another session".into());
        self.guard(
            "single operator",
            false,
            format!("runbook {id} is being run by {who}; wait for it to finish"),
        )
        .await
    }
}

pub(super) use crate::governance::policy::is_production;
