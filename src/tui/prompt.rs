//! The prompts the engine opens between steps, as the screen holds them: a
//! failed step waiting for r/s/b/q, and a wait for blockers the operator may
//! still turn into proceed or abort. Their keys are in keys.rs.

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
