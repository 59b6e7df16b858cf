//! A backfill step's keys: `table`, `key`, `batch_size`, `target_batch_time`,
//! `batch_pause` (`max_replica_lag` is a setting of every step); errors for them on other kinds.

use std::time::Duration;

use super::Parser;
use super::raw::RawStep;
use crate::runbook::{Backfill, StepKind};

impl Parser {
    /// The walk of a backfill step, or errors at the keys that are missing,
    /// wrong, or given to another kind of step.
    pub(super) fn backfill(
        &mut self,
        kind: StepKind,
        raw: &RawStep,
        at: usize,
    ) -> Option<Backfill> {
        if kind != StepKind::Backfill {
            let given = [
                raw.table.as_ref().map(|v| (v.span().start, "table")),
                raw.key.as_ref().map(|v| (v.span().start, "key")),
                raw.batch_size
                    .as_ref()
                    .map(|v| (v.span().start, "batch_size")),
                raw.target_batch_time
                    .as_ref()
                    .map(|v| (v.span().start, "target_batch_time")),
                raw.batch_pause
                    .as_ref()
                    .map(|v| (v.span().start, "batch_pause")),
            ];
            for (key_at, key) in given.into_iter().flatten() {
                self.error(
                    key_at,
                    format!(
                        "{key} is only for backfill steps, not {} steps",
                        kind.as_str()
                    ),
                    Some("make the step kind = \"backfill\", or remove the key".into()),
                );
            }
            return None;
        }
        let table = self.required_text(
            raw.table.as_ref(),
            at,
            "table",
            "table = \"equipment_readings\" (the table the batches walk)",
        );
        let key = self.required_text(
            raw.key.as_ref(),
            at,
            "key",
            "key = \"id\" (a unique, indexed, orderable column)",
        );
        let batch_size = match &raw.batch_size {
            None => {
                self.error(
                    at,
                    "the backfill step has no batch_size",
                    Some("add batch_size = 5000 (rows per batch to start with)".into()),
                );
                None
            }
            Some(n) if *n.get_ref() <= 0 => {
                self.error(
                    n.span().start,
                    format!("batch_size must be at least 1, not {}", n.get_ref()),
                    Some("e.g. batch_size = 5000".into()),
                );
                None
            }
            Some(n) => u64::try_from(*n.get_ref()).ok(),
        };
        let target_batch_time = match &raw.target_batch_time {
            Some(v) => match self.duration(v, "target_batch_time") {
                Some(d) if d.is_zero() => {
                    self.error(
                        v.span().start,
                        "target_batch_time cannot be 0",
                        Some("remove it to keep batch_size fixed, or give e.g. \"500ms\"".into()),
                    );
                    None
                }
                d => d,
            },
            None => None,
        };
        let batch_pause = raw
            .batch_pause
            .as_ref()
            .and_then(|v| self.duration(v, "batch_pause"))
            .unwrap_or(Duration::ZERO);
        Some(Backfill {
            table: table?,
            key: key?,
            batch_size: batch_size?,
            target_batch_time,
            batch_pause,
            table_at: raw.table.as_ref().map(|t| self.at(t.span().start)),
        })
    }

    fn required_text(
        &mut self,
        value: Option<&toml::Spanned<String>>,
        at: usize,
        key: &str,
        example: &str,
    ) -> Option<String> {
        match value {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().trim().to_string()),
            Some(v) => {
                self.error(
                    v.span().start,
                    format!("the backfill step's {key} is empty"),
                    Some(format!("add {example}")),
                );
                None
            }
            None => {
                self.error(
                    at,
                    format!("the backfill step has no {key}"),
                    Some(format!("add {example}")),
                );
                None
            }
        }
    }
}
