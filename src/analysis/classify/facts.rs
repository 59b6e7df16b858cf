//! `Facts`: what one statement does, gathered by the family classifiers and
//! turned into a `StatementAnalysis`.

use crate::analysis::catalog::{Dropped, Retype};
use crate::analysis::lock::LockMode;
use crate::analysis::name::RelationName;
use crate::analysis::rules::{RuleId, finding};
use crate::analysis::{
    AtRisk, Context, Finding, IndexBuild, RelationLock, StatementAnalysis, StatementKind,
    TableWork, WorkKind,
};

/// What one statement does, before relations created earlier in the runbook
/// are set aside.
pub struct Facts {
    pub(super) kind: StatementKind,
    pub(super) locks: Vec<(RelationName, LockMode)>,
    pub(super) creates: Vec<RelationName>,
    pub(super) builds_index: Option<IndexBuild>,
    pub(super) work: Vec<TableWork>,
    pub(super) transactional: bool,
    pub(super) destructive: bool,
    pub(super) at_risk: Option<AtRisk>,
    pub(super) rewrites: bool,
    pub(super) breaking: bool,
    pub(super) opaque: bool,
    pub(super) findings: Vec<Finding>,
    pub(super) retypes: Vec<Retype>,
    pub(super) drops: Vec<Dropped>,
}

impl Facts {
    pub(super) fn new(kind: StatementKind) -> Facts {
        Facts {
            kind,
            locks: Vec::new(),
            creates: Vec::new(),
            builds_index: None,
            work: Vec::new(),
            transactional: true,
            destructive: false,
            at_risk: None,
            rewrites: false,
            breaking: false,
            opaque: false,
            findings: Vec::new(),
            retypes: Vec::new(),
            drops: Vec::new(),
        }
    }

    pub fn unknown(kind: StatementKind) -> Facts {
        Facts::new(kind)
    }

    pub(super) fn lock(&mut self, relation: &RelationName, mode: LockMode) {
        self.locks.push((relation.clone(), mode));
    }

    /// Records that the statement works through every row of `table`; the
    /// heaviest work per table is kept.
    pub(super) fn work(&mut self, table: &RelationName, kind: WorkKind) {
        self.work_on_keys(table, kind, Vec::new());
    }

    /// [`Facts::work`] for an index build on the plain columns `keys`.
    pub(super) fn work_on_keys(&mut self, table: &RelationName, kind: WorkKind, keys: Vec<String>) {
        match self.work.iter_mut().find(|w| &w.table == table) {
            Some(w) => {
                if kind > w.kind {
                    w.kind = kind;
                    w.keys = keys;
                }
            }
            None => self.work.push(TableWork {
                table: table.clone(),
                kind,
                keys,
            }),
        }
    }

    pub(super) fn destroy(&mut self, verb: &'static str, object: impl Into<String>) {
        self.destructive = true;
        if self.at_risk.is_none() {
            self.at_risk = Some(AtRisk {
                verb,
                object: object.into(),
            });
        }
    }

    pub(super) fn find(&mut self, rule: RuleId, message: impl Into<String>) {
        self.findings.push(finding(rule, message));
    }

    /// The statement's analysis; records what it creates in `ctx` for later statements.
    pub fn into_analysis(self, sql: String, ctx: &mut Context) -> StatementAnalysis {
        let mut relations: Vec<RelationName> = Vec::new();
        for r in self.locks.iter().map(|(r, _)| r).chain(&self.creates) {
            if !relations.contains(r) {
                relations.push(r.clone());
            }
        }
        let mut locks: Vec<RelationLock> = Vec::new();
        for (relation, mode) in self.locks {
            if ctx.created.contains(&relation) || self.creates.contains(&relation) {
                continue;
            }
            match locks.iter_mut().find(|l| l.relation == relation) {
                Some(l) => l.mode = l.mode.max(mode),
                None => locks.push(RelationLock { relation, mode }),
            }
        }
        // Work on a table created earlier in the runbook is on an empty table.
        let work = self
            .work
            .into_iter()
            .filter(|w| !ctx.created.contains(&w.table) && !self.creates.contains(&w.table))
            .collect();
        ctx.created.extend(self.creates.iter().cloned());
        StatementAnalysis {
            sql,
            kind: self.kind,
            relations,
            lock: locks.iter().map(|l| l.mode).max(),
            locks,
            transactional: self.transactional,
            destructive: self.destructive || self.opaque,
            rewrites: self.rewrites,
            breaking: self.breaking,
            opaque: self.opaque,
            at_risk: self.at_risk,
            creates: self.creates,
            builds_index: self.builds_index,
            work,
            findings: self
                .findings
                .into_iter()
                .filter(|f| {
                    RuleId::parse(f.rule)
                        .is_none_or(|r| !r.rule().opt_in || ctx.enabled.contains(&r))
                })
                .collect(),
            retypes: self.retypes,
            drops: self.drops,
            start: 0,
            end: 0,
        }
    }
}
