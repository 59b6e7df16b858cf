//! The prompts the engine opens between steps, as the screen holds them: a
//! failed step waiting for r/s/b/q, and a wait for blockers the operator may
//! still turn into proceed or abort; which prompt's keys are read first
//! (a running backfill's too). Their keys are in keys.rs.

use crate::monitor::Holder;

use super::keys::{Answer, Prompt, PromptBinding};

/// A step (or its rollback) failed; the engine waits for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPrompt {
    pub step: String,
    pub message: String,
    /// Some step is applied and `b` could roll it back.
    pub rollback_available: bool,
}

/// The engine waits for the sessions holding a step's locks to go.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub step: String,
    pub holders: Vec<Holder>,
}

impl Waiting {
    /// `waiting for pid 123 (nightly-report) to finish — p proceeds, a aborts this step`.
    pub fn line(&self, prompts: &[PromptBinding]) -> String {
        format!(
            "{} — {} proceeds, {} aborts this step",
            crate::monitor::text::waiting_for(&self.holders),
            key_of(prompts, Prompt::Blockers, Answer::Proceed),
            key_of(prompts, Prompt::Blockers, Answer::AbortStep),
        )
    }
}

impl FailedPrompt {
    /// `r retry · s skip (asks a reason) · b roll back · q quit`.
    pub fn choices(&self, prompts: &[PromptBinding]) -> String {
        let mut out = vec![
            format!("{} retry", key_of(prompts, Prompt::Failure, Answer::Retry)),
            format!(
                "{} skip (asks a reason)",
                key_of(prompts, Prompt::Failure, Answer::SkipFailed)
            ),
        ];
        if self.rollback_available {
            out.push(format!(
                "{} roll back down to the selected applied step",
                key_of(prompts, Prompt::Failure, Answer::RollBackFailed)
            ));
        }
        out.push(format!(
            "{} quit",
            key_of(prompts, Prompt::Failure, Answer::QuitFailed)
        ));
        out.join(" · ")
    }
}

/// The first key bound to `answer` at `prompt`.
pub fn key_of(prompts: &[PromptBinding], prompt: Prompt, answer: Answer) -> &str {
    prompts
        .iter()
        .find(|b| b.prompt == prompt && b.answer == answer)
        .map_or("?", |b| b.label.as_str())
}

impl super::app::App {
    /// The prompt whose keys are read before the step list's, if one is open.
    pub fn open_prompt(&self) -> Option<crate::tui::keys::Prompt> {
        use crate::tui::keys::Prompt;
        if self.failed.is_some() {
            Some(Prompt::Failure)
        } else if self.waiting.is_some() {
            Some(Prompt::Blockers)
        } else if self.running_backfill().is_some() {
            Some(Prompt::Backfill)
        } else {
            None
        }
    }

    /// The backfill step that runs now, if one does.
    pub fn running_backfill(&self) -> Option<&str> {
        let id = self.running.as_deref()?;
        self.steps
            .iter()
            .find(|s| s.id == id && s.kind == crate::runbook::StepKind::Backfill)
            .map(|s| s.id.as_str())
    }
}
