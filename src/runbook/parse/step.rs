//! One `[[phase.step]]`: its kind, body, expectation, capture, rollback and
//! settings, and the `{{variables}}` it uses.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use toml::Spanned;

use super::Parser;
use super::files::FilePart;
use super::messages::undefined_var;
use super::raw::{RawExpect, RawSettings, RawStep};
use crate::diag::{Diagnostic, Location};
use crate::runbook::vars;
use crate::runbook::*;

impl Parser {
    pub(super) fn step(
        &mut self,
        raw: Spanned<RawStep>,
        base: &Settings,
        step_ids: &mut HashMap<String, Location>,
        captured: &mut HashSet<String>,
    ) -> Option<Step> {
        let at = raw.span().start;
        let mut raw = raw.into_inner();
        let id_at = raw.id.as_ref().map(|i| i.span().start).unwrap_or(at);
        let id = self.required_id(raw.id.take(), at, "step id", "[[phase.step]]");
        if let Some(id) = &id {
            if let Some(first) = step_ids.get(id) {
                self.error(
                    id_at,
                    format!("step id {id:?} is used twice"),
                    Some(format!(
                        "it is first used at {first}; step ids are unique within a runbook"
                    )),
                );
            } else {
                step_ids.insert(id.clone(), self.at(id_at));
            }
        }
        let kind = match &raw.kind {
            None => {
                self.error(
                    at,
                    "the step has no kind",
                    Some(format!(
                        "add kind = \"…\", one of: {}",
                        StepKind::NAMES.join(", ")
                    )),
                );
                None
            }
            Some(k) => self.choice(k, &StepKind::NAMES, "kind", StepKind::parse),
        };
        let kind = kind?;
        let mut spans = StepSpans {
            kind: raw.kind.as_ref().map(|k| self.at(k.span().start)),
            ..StepSpans::default()
        };

        let body = self.step_body(kind, &raw, at, &mut spans);
        let backfill = self.backfill(kind, &raw, at);
        if kind == StepKind::Backfill
            && let Some(t) = &raw.transaction
        {
            self.error(
                t.span().start,
                "a backfill step cannot set transaction",
                Some(
                    "each batch runs in a transaction of its own, with the cursor saved in it"
                        .into(),
                ),
            );
        }
        if kind == StepKind::Pause {
            for (present, key) in [
                (raw.expect.is_some(), "expect"),
                (raw.capture.is_some(), "capture"),
                (raw.rollback_at().is_some(), "rollback"),
                (raw.transaction.is_some(), "transaction"),
                (raw.irreversible.is_some(), "irreversible"),
            ] {
                if present {
                    self.error(
                        at,
                        format!("a pause step cannot have {key}"),
                        Some("pause steps only show instructions and wait for the operator".into()),
                    );
                }
            }
        }
        if let Some(at) = raw.rollback_at()
            && matches!(kind, StepKind::Check | StepKind::Verify)
        {
            self.error(
                at,
                format!("a {} step cannot have a rollback", kind.as_str()),
                Some("only change and backup steps are rolled back; checks change nothing".into()),
            );
        }
        if let Some(i) = &raw.irreversible
            && kind != StepKind::Change
        {
            self.error(
                i.span().start,
                "irreversible is only for change steps",
                None,
            );
        }

        let expect_at = raw.expect_at();
        let expect = raw.expect.take().map(|e| {
            let e_at = e.span().start;
            (e_at, e.into_inner())
        });
        let expect = match expect {
            None => None,
            Some((e_at, e)) => self.expect(e_at, e),
        };

        // Variables: each {{name}} must be captured by an earlier step.
        let capture = raw
            .capture
            .as_ref()
            .map(|c| (c.span().start, c.get_ref().clone()));
        if let (Some(StepBody::Sql(sql)), Some(step_id)) = (&body, &id) {
            self.check_vars_in_sql(sql, captured, step_id);
        }
        if let Some(Expect::Scalar(s)) = &expect {
            self.check_vars_in_plain(s, expect_at, captured);
        }
        if let Some((c_at, name)) = &capture {
            if !vars::is_identifier(name) {
                self.error(
                    *c_at,
                    format!("capture name {name:?} is not a variable name"),
                    Some("use letters, digits and _, e.g. capture = \"rows_before\"".into()),
                );
            } else if !captured.insert(name.clone()) {
                self.error(
                    *c_at,
                    format!("variable {name:?} is already captured by an earlier step"),
                    Some("give this capture another name".into()),
                );
            }
        }
        let rollback = self.rollback(&raw, kind, &mut spans);
        if let (Some(rb), Some(step_id)) = (&rollback, &id) {
            if rb.text.trim().is_empty() {
                self.error(
                    raw.rollback_at().unwrap_or(at),
                    "the rollback is empty",
                    Some("write the SQL that undoes this step, or remove the key".into()),
                );
            }
            self.check_vars_in_sql(rb, captured, step_id);
        }
        spans.transaction = raw.transaction.as_ref().map(|t| self.at(t.span().start));

        let no_backup = self.no_backup(kind, &raw);
        let overrides = RawSettings {
            lock_timeout: raw.lock_timeout,
            statement_timeout: raw.statement_timeout,
            lock_retries: raw.lock_retries,
            retry_backoff: raw.retry_backoff,
            long_transaction: raw.long_transaction,
            on_blockers: raw.on_blockers,
            rehearsal_max_queue: None,
            max_replica_lag: raw.max_replica_lag,
            max_queue_stall: raw.max_queue_stall,
        };
        let settings = self.settings(base, overrides);
        let file = raw.file.as_ref().map(|f| PathBuf::from(f.get_ref()));
        if let Some(m) = &raw.migration
            && (m.get_ref().trim().is_empty() || !kind.changes())
        {
            self.error(
                m.span().start,
                "migration names the version of a change step's migration",
                Some(
                    "write the version the tool records, e.g. migration = \"3\", on a change step"
                        .into(),
                ),
            );
        }
        Some(Step {
            id: id?,
            title: raw.title,
            kind,
            at: self.at(at),
            body: body?,
            file,
            migration: raw.migration.map(|m| m.into_inner()),
            expect,
            capture: capture.map(|(_, n)| n),
            rollback,
            transaction: raw.transaction.map(|t| t.into_inner()),
            confirm: raw.confirm.map(|c| c.into_inner()),
            explain: raw.explain,
            irreversible: raw.irreversible.map(|i| i.into_inner()),
            ignore_at: raw.ignore.as_ref().map(|i| self.at(i.span().start)),
            ignore: raw.ignore.map(|i| i.into_inner()).unwrap_or_default(),
            backfill: if kind == StepKind::Backfill {
                Some(backfill?)
            } else {
                None
            },
            no_backup,
            settings,
            spans,
        })
    }

    pub(super) fn step_body(
        &mut self,
        kind: StepKind,
        raw: &RawStep,
        at: usize,
        spans: &mut StepSpans,
    ) -> Option<StepBody> {
        if let Some(dump) = &raw.dump {
            return self.dump_body(kind, raw, dump);
        }
        if kind == StepKind::Pause {
            if let Some(s) = raw.sql.as_ref().or(raw.file.as_ref()) {
                self.error(s.span().start, "a pause step has no SQL", Some("pause steps show `instructions` and wait; put SQL in a check or change step".into()));
            }
            return match &raw.instructions {
                Some(i) if !i.get_ref().trim().is_empty() => {
                    Some(StepBody::Instructions(i.get_ref().clone()))
                }
                _ => {
                    self.error(
                        at,
                        "a pause step needs instructions",
                        Some(
                            "add instructions = \"What the operator does before continuing\""
                                .into(),
                        ),
                    );
                    None
                }
            };
        }
        if let Some(i) = &raw.instructions {
            self.error(
                i.span().start,
                format!(
                    "instructions are only for pause steps, not {} steps",
                    kind.as_str()
                ),
                Some("use explain = \"…\" to describe a step to trainees".into()),
            );
        }
        for (key, at) in [
            ("section", raw.section.as_ref().map(|s| s.span().start)),
            ("statement", raw.statement.as_ref().map(|s| s.span().start)),
        ] {
            if let (Some(at), None) = (at, &raw.file) {
                self.error(
                    at,
                    format!("{key} picks a part of a step's file, but the step has no file"),
                    Some("add file = \"….sql\", or remove the key".into()),
                );
            }
        }
        match (&raw.sql, &raw.file) {
            (Some(_), Some(f)) => {
                self.error(
                    f.span().start,
                    "a step has either sql or file, not both",
                    Some("keep one of them".into()),
                );
                None
            }
            (None, None) => {
                self.error(
                    at,
                    format!("the {} step has no SQL", kind.as_str()),
                    Some(
                        "add sql = \"…\" or file = \"sql/….sql\" (relative to the runbook)".into(),
                    ),
                );
                None
            }
            (Some(sql), None) => {
                spans.sql = Some(self.at(sql.span().start));
                if sql.get_ref().trim().is_empty() {
                    self.error(
                        sql.span().start,
                        "the step's sql is empty",
                        Some("write the statement(s) the step runs".into()),
                    );
                    return None;
                }
                Some(StepBody::Sql(self.inline_sql(sql)))
            }
            (None, Some(f)) => {
                spans.sql = Some(self.at(f.span().start));
                let part = FilePart {
                    section: raw.section.as_ref(),
                    statement: raw.statement.as_ref(),
                    read_only: matches!(kind, StepKind::Check | StepKind::Verify),
                };
                self.sql_file(f, part).map(StepBody::Sql)
            }
        }
    }

    /// The step's rollback: inline `rollback`, or `rollback_file` (and
    /// `rollback_section`), or a `rollback_section` of the step's own file.
    fn rollback(
        &mut self,
        raw: &RawStep,
        kind: StepKind,
        spans: &mut StepSpans,
    ) -> Option<SqlText> {
        if kind == StepKind::Pause || matches!(kind, StepKind::Check | StepKind::Verify) {
            return None;
        }
        match (&raw.rollback, &raw.rollback_file, &raw.rollback_section) {
            (None, None, None) => None,
            (Some(r), None, None) => {
                spans.rollback = Some(self.at(r.span().start));
                Some(self.inline_sql(r))
            }
            (Some(r), _, _) => {
                self.error(
                    r.span().start,
                    "a step has either rollback or rollback_file/rollback_section, not both",
                    Some("keep one of them".into()),
                );
                None
            }
            (None, file, section) => {
                let Some(file) = file.as_ref().or(raw.file.as_ref()) else {
                    let at = section.as_ref().map(|s| s.span().start).unwrap_or(0);
                    self.error(
                        at,
                        "rollback_section picks a section of rollback_file or of the step's file, but the step has neither",
                        Some("add rollback_file = \"….sql\"".into()),
                    );
                    return None;
                };
                spans.rollback = Some(self.at(file.span().start));
                let part = FilePart {
                    section: section.as_ref(),
                    statement: None,
                    read_only: false,
                };
                self.sql_file(file, part)
            }
        }
    }

    pub(super) fn expect(&mut self, at: usize, e: RawExpect) -> Option<Expect> {
        let given = [e.rows.is_some(), e.scalar.is_some(), e.empty.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given != 1 {
            self.error(at, "expect takes exactly one of rows, scalar or empty", Some("e.g. expect = { rows = 0 }, expect = { scalar = \"42\" } or expect = { empty = true }".into()));
            return None;
        }
        if let Some(rows) = e.rows {
            return match u64::try_from(*rows.get_ref()) {
                Ok(n) => Some(Expect::Rows(n)),
                Err(_) => {
                    self.error(rows.span().start, "expect.rows cannot be negative", None);
                    None
                }
            };
        }
        if let Some(s) = e.scalar {
            return Some(Expect::Scalar(s.into_inner().into_text()));
        }
        e.empty.map(Expect::Empty)
    }

    pub(super) fn check_vars_in_sql(
        &mut self,
        sql: &SqlText,
        captured: &HashSet<String>,
        step_id: &str,
    ) {
        // Most SQL has no reference: no scan for it (check's 1,000-step budget).
        if !sql.text.contains("{{") {
            return;
        }
        // An unreadable statement is reported by the analysis at its place;
        // here only where each reference stands (and which are captured).
        let found = match vars::placements(&sql.text) {
            Ok(places) => Ok(places.into_iter().map(|p| p.var).collect()),
            Err(e) if e.unreadable => vars::references(&sql.text),
            Err(e) => Err(e),
        };
        match found {
            Err(e) => {
                let mut d = Diagnostic::error(sql.location(e.offset), e.message);
                if let Some(h) = e.help {
                    d = d.with_help(h);
                }
                self.diags.push(d);
            }
            Ok(refs) => {
                for r in refs {
                    if !captured.contains(&r.name) {
                        self.diags.push(undefined_var(
                            sql.location(r.start),
                            &r.name,
                            step_id,
                            captured,
                        ));
                    }
                }
            }
        }
    }

    pub(super) fn check_vars_in_plain(
        &mut self,
        text: &str,
        at: usize,
        captured: &HashSet<String>,
    ) {
        match vars::references(text) {
            Err(e) => self.error(at, e.message, None),
            Ok(refs) => {
                for r in refs {
                    if !captured.contains(&r.name) {
                        self.diags
                            .push(undefined_var(self.at(at), &r.name, "this", captured));
                    }
                }
            }
        }
    }
}
