//! The runbook's tables: `[runbook]`, `[target]`, `[settings]` and the
//! `[[phase]]` list.

use std::collections::{HashMap, HashSet};

use sha2::Digest;
use toml::Spanned;

use super::Parser;
use super::TOP_KEYS;
use super::raw::{RawFile, RawPhase, RawSettings};
use crate::diag::Location;
use crate::runbook::*;

impl Parser {
    pub(super) fn runbook(&mut self, raw: RawFile) -> Option<Runbook> {
        let Some(header) = raw.runbook else {
            self.error(
                0,
                "missing the [runbook] table",
                Some(format!(
                    "start the file with\n    [runbook]\n    id = \"my-change\"\n    title = \"What it does\"\n  (top-level tables: {})",
                    TOP_KEYS.join(", ")
                )),
            );
            return None;
        };
        let header_at = header.span().start;
        let header = header.into_inner();
        let id = self.required_id(header.id, header_at, "runbook id", "[runbook]");
        let title = match header.title {
            Some(t) if !t.get_ref().trim().is_empty() => t.into_inner(),
            Some(t) => {
                self.error(
                    t.span().start,
                    "the runbook title is empty",
                    Some("say in a few words what the change does".into()),
                );
                String::new()
            }
            None => {
                self.error(
                    header_at,
                    "[runbook] has no title",
                    Some("add title = \"What the change does\"".into()),
                );
                String::new()
            }
        };
        let change_type = match header.change_type {
            None => ChangeType::Minor,
            Some(c) => self
                .choice(&c, &ChangeType::NAMES, "change_type", ChangeType::parse)
                .unwrap_or(ChangeType::Minor),
        };
        let (declared_risk, declared_risk_at) = match header.risk {
            None => (None, None),
            Some(r) => (
                self.choice(&r, &Risk::NAMES, "risk", Risk::parse),
                Some(self.at(r.span().start)),
            ),
        };
        let target = raw.target.map(|t| self.target(t));
        let settings = match raw.settings {
            Some(s) => {
                let s = s.into_inner();
                self.settings(&Settings::default(), s)
            }
            None => Settings::default(),
        };
        let approvals = raw.approvals.map(|a| self.approvals(a));
        let sql_root = self.sql_roots(header.sql_root.as_ref());
        let notify = raw.notify.and_then(|n| self.notify(n));
        let history = header
            .history
            .as_ref()
            .and_then(|h| self.choice(h, &HistoryTool::NAMES, "history", HistoryTool::parse));
        let version = self.semver(header.version.as_ref(), "version");
        let requires_version = self.semver(header.requires_version.as_ref(), "requires_version");
        let health = self.health(raw.health);
        let lint_enable = raw.lint.map(|l| self.lint(l)).unwrap_or_default();
        let phases = self.phases(raw.phase, &settings);
        if phases.is_empty() && self.diags.iter().all(|d| !d.is_error()) {
            self.error(
                self.file.text.len(),
                "the runbook has no phases",
                Some("add at least one\n    [[phase]]\n    id = \"change\"\n    [[phase.step]]\n    id = \"…\"\n    kind = \"change\"\n    sql = \"…\"".into()),
            );
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Some(Runbook {
            file: self.file.clone(),
            sha256,
            id: id?,
            title,
            description: header.description,
            change_type,
            declared_risk,
            declared_risk_at,
            ticket: header.ticket,
            version,
            requires_version,
            sql_root,
            history,
            target: target.unwrap_or_default(),
            settings,
            approvals,
            health,
            notify,
            lint_enable,
            phases,
        })
    }

    fn target(&mut self, t: super::raw::RawTarget) -> Target {
        let mut windows = Vec::new();
        for w in &t.windows {
            match crate::governance::window::parse_window(w.get_ref()) {
                Ok(parsed) => windows.push(parsed),
                Err(message) => self.error(w.span().start, message, None),
            }
        }
        let timezone = match &t.timezone {
            Some(tz) => {
                match tz.get_ref().parse::<chrono_tz::Tz>() {
                    Ok(parsed) => Some(parsed),
                    Err(_) => {
                        self.error(
                        tz.span().start,
                        format!("timezone {:?} is not an IANA timezone", tz.get_ref()),
                        Some("use a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"".into()),
                    );
                        None
                    }
                }
            }
            None => {
                if let Some(first) = t.windows.first() {
                    self.error(
                        first.span().start,
                        "[target] windows need a timezone",
                        Some("add timezone = \"Europe/Berlin\" (an IANA name) to [target]: the windows are local times there".into()),
                    );
                }
                None
            }
        };
        let server_version = t.server_version.as_ref().and_then(|v| {
            let at = v.span().start;
            let checked = u32::try_from(*v.get_ref())
                .map_err(|_| format!("{} is not a PostgreSQL major version", v.get_ref()))
                .and_then(crate::analysis::version::supported);
            match checked {
                Ok(major) => Some((major, self.at(at))),
                Err(message) => {
                    self.error(
                        at,
                        format!("server_version: {message}"),
                        Some("write the target's major version, e.g. server_version = 16".into()),
                    );
                    None
                }
            }
        });
        Target {
            environments: t.environments,
            database: t.database,
            require_primary: t.require_primary.unwrap_or(false),
            windows,
            timezone,
            server_version,
        }
    }

    /// `[lint] enable`: each name must be an opt-in rule.
    fn lint(
        &mut self,
        l: super::raw::RawLint,
    ) -> std::collections::BTreeSet<crate::analysis::RuleId> {
        let opt_in: Vec<&str> = crate::analysis::RULES
            .iter()
            .filter(|r| r.opt_in)
            .map(|r| r.id.as_str())
            .collect();
        let mut out = std::collections::BTreeSet::new();
        for name in l.enable.unwrap_or_default() {
            match crate::analysis::RuleId::parse(name.get_ref()).filter(|r| r.rule().opt_in) {
                Some(r) => {
                    out.insert(r);
                }
                None => {
                    let help = match crate::diag::nearest(name.get_ref(), opt_in.iter().copied()) {
                        Some(n) => {
                            format!("did you mean \"{n}\"? opt-in rules: {}", opt_in.join(", "))
                        }
                        None => format!(
                            "opt-in rules: {} (the others are always on)",
                            opt_in.join(", ")
                        ),
                    };
                    self.error(
                        name.span().start,
                        format!("[lint] enable: {:?} is not an opt-in rule", name.get_ref()),
                        Some(help),
                    );
                }
            }
        }
        out
    }

    pub(super) fn settings(&mut self, base: &Settings, raw: RawSettings) -> Settings {
        let mut s = base.clone();
        if let Some(v) = &raw.lock_timeout
            && let Some(d) = self.duration(v, "lock_timeout")
        {
            if d.is_zero() {
                self.error(
                    v.span().start,
                    "lock_timeout must be more than 0",
                    Some("an unbounded lock wait queues every later query on the table behind the step; use e.g. \"2s\"".into()),
                );
            } else {
                s.lock_timeout = d;
            }
        }
        if let Some(v) = &raw.statement_timeout
            && let Some(d) = self.duration(v, "statement_timeout")
        {
            s.statement_timeout = d;
        }
        if let Some(v) = &raw.retry_backoff
            && let Some(d) = self.duration(v, "retry_backoff")
        {
            s.retry_backoff = d;
        }
        if let Some(v) = &raw.long_transaction
            && let Some(d) = self.duration(v, "long_transaction")
        {
            s.long_transaction = d;
        }
        if let Some(v) = &raw.rehearsal_max_queue
            && let Some(d) = self.duration(v, "rehearsal_max_queue")
        {
            s.rehearsal_max_queue = d;
        }
        if let Some(v) = &raw.max_replica_lag
            && let Some(d) = self.duration(v, "max_replica_lag")
        {
            if d.is_zero() {
                self.error(
                    v.span().start,
                    "max_replica_lag must be more than 0",
                    Some("a standby always replays a little behind; use e.g. \"10s\", or leave the key out".into()),
                );
            } else {
                s.max_replica_lag = Some(d);
            }
        }
        if let Some(v) = &raw.max_queue_stall
            && let Some(d) = self.duration(v, "max_queue_stall")
        {
            s.max_queue_stall = d;
        }
        if let Some(v) = &raw.lock_retries {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= 1000 => s.lock_retries = n,
                _ => self.error(
                    v.span().start,
                    format!("lock_retries = {} is out of range", v.get_ref()),
                    Some("use a whole number from 0 to 1000".into()),
                ),
            }
        }
        if let Some(v) = &raw.on_blockers
            && let Some(o) = self.choice(v, &OnBlockers::NAMES, "on_blockers", OnBlockers::parse)
        {
            s.on_blockers = o;
        }
        s
    }

    pub(super) fn phases(
        &mut self,
        raw: Vec<Spanned<RawPhase>>,
        settings: &Settings,
    ) -> Vec<Phase> {
        let mut phase_ids: HashMap<String, Location> = HashMap::new();
        let mut step_ids: HashMap<String, Location> = HashMap::new();
        let mut captured: HashSet<String> = HashSet::new();
        let mut phases = Vec::new();
        for phase in raw {
            let at = phase.span().start;
            let phase = phase.into_inner();
            let id_at = phase.id.as_ref().map(|i| i.span().start).unwrap_or(at);
            let Some(id) = self.required_id(phase.id, at, "phase id", "[[phase]]") else {
                continue;
            };
            if let Some(first) = phase_ids.get(&id) {
                self.error(
                    id_at,
                    format!("phase id {id:?} is used twice"),
                    Some(format!(
                        "it is first used at {first}; phase ids must be unique"
                    )),
                );
            }
            phase_ids.insert(id.clone(), self.at(id_at));
            if phase.step.is_empty() {
                self.error(
                    at,
                    format!("phase {id:?} has no steps"),
                    Some("add a [[phase.step]] under it, or remove the phase".into()),
                );
            }
            let mut steps = Vec::new();
            for step in phase.step {
                if let Some(s) = self.step(step, settings, &mut step_ids, &mut captured) {
                    steps.push(s);
                }
            }
            phases.push(Phase {
                title: phase.title.unwrap_or_else(|| id.clone()),
                id,
                at: self.at(at),
                steps,
            });
        }
        phases
    }
}
