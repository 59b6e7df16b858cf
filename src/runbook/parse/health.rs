//! `[[health]]`: gates checked before each step. Their SQL is read here;
//! that it is one read-only SELECT is checked by the analysis
//! (`analysis::health_diagnostics`), on the real parser.

use std::collections::HashSet;

use toml::Spanned;

use super::Parser;
use super::raw::RawHealth;
use crate::runbook::HealthGate;

impl Parser {
    pub(super) fn health(&mut self, raw: Vec<Spanned<RawHealth>>) -> Vec<HealthGate> {
        let mut names = HashSet::new();
        let mut gates = Vec::new();
        for gate in raw {
            let at = gate.span().start;
            let gate = gate.into_inner();
            let name = match &gate.name {
                Some(n) if !n.get_ref().trim().is_empty() => {
                    if !names.insert(n.get_ref().clone()) {
                        self.error(
                            n.span().start,
                            format!("health gate {:?} is defined twice", n.get_ref()),
                            Some("give each [[health]] its own name".into()),
                        );
                    }
                    Some(n.get_ref().clone())
                }
                _ => {
                    self.error(
                        at,
                        "[[health]] has no name",
                        Some("add name = \"waiting sessions\": it is shown when the gate is breached".into()),
                    );
                    None
                }
            };
            let sql = match &gate.sql {
                Some(s) if !s.get_ref().trim().is_empty() => Some(self.inline_sql(s)),
                Some(s) => {
                    self.error(
                        s.span().start,
                        "the health gate's sql is empty",
                        Some("write one SELECT that returns one number".into()),
                    );
                    None
                }
                None => {
                    self.error(
                        at,
                        "[[health]] has no sql",
                        Some("add sql = \"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'\"".into()),
                    );
                    None
                }
            };
            let max = gate.max.map(|m| m.into_inner().value());
            let min = gate.min.map(|m| m.into_inner().value());
            if max.is_none() && min.is_none() {
                self.error(
                    at,
                    "[[health]] has neither max nor min",
                    Some("add max = N (breached above N) and/or min = N (breached below N)".into()),
                );
            }
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                self.error(
                    at,
                    format!("the health gate's min ({lo}) is above its max ({hi})"),
                    Some("no value could pass; swap them".into()),
                );
            }
            if let (Some(name), Some(sql)) = (name, sql) {
                gates.push(HealthGate {
                    name,
                    sql,
                    max,
                    min,
                    at: self.at(at),
                });
            }
        }
        gates
    }
}
