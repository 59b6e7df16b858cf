//! The keys of the questions the engine opens (a failure, the blockers, a
//! rollback list): data like the step list's keys in keys.rs, with a help
//! text each, rebindable in keys.toml in a table per prompt.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A question the engine has open whose keys answer it. Each prompt has its
/// own keys, read before the step list's (DESIGN.md's contract keys); a
/// later prompt (a backfill's pause, a health gate's breach) adds a variant,
/// its answers and its rows in [`prompt_defaults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// A step or a rollback failed (`Ask::Failed`).
    Failure,
    /// Sessions hold the locks the next step needs (`Ask::Blockers`), and
    /// while the engine waits for them.
    Blockers,
    /// Several steps are about to be rolled back (`Ask::RollbackList`).
    RollbackList,
    /// A `[[health]]` gate is breached before a step (`Ask::HealthBreach`).
    HealthBreach,
    /// A backfill step runs: its orders (`Control::TogglePause`, `Resize`,
    /// `StopAfterBatch`), applied between two batches.
    Backfill,
    /// A step may outlast the change window (`Ask::PastWindow`).
    PastWindow,
}

impl Prompt {
    pub const ALL: [Prompt; 6] = [
        Prompt::Failure,
        Prompt::Blockers,
        Prompt::RollbackList,
        Prompt::HealthBreach,
        Prompt::Backfill,
        Prompt::PastWindow,
    ];

    /// Its table in keys.toml.
    pub fn name(self) -> &'static str {
        match self {
            Prompt::Failure => "failure",
            Prompt::Blockers => "blockers",
            Prompt::RollbackList => "rollback_list",
            Prompt::HealthBreach => "health_breach",
            Prompt::Backfill => "backfill",
            Prompt::PastWindow => "past_window",
        }
    }

    /// The heading of its keys in the help.
    pub fn title(self) -> &'static str {
        match self {
            Prompt::Failure => "After a step failed",
            Prompt::Blockers => "When sessions hold the locks a step needs",
            Prompt::RollbackList => "Before several steps are rolled back",
            Prompt::HealthBreach => "When a health gate is breached before a step",
            Prompt::Backfill => "While a backfill runs",
            Prompt::PastWindow => "When a step may outlast the change window",
        }
    }
}

/// What a key means at a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Retry,
    SkipFailed,
    RollBackFailed,
    QuitFailed,
    Proceed,
    Wait,
    AbortStep,
    Agree,
    Decline,
    ContinueBreached,
    RollBackAll,
    StopBreached,
    PauseResume,
    BatchBigger,
    BatchSmaller,
    StopAfterBatch,
}

impl Answer {
    /// Its name in its prompt's keys.toml table.
    pub fn name(self) -> &'static str {
        match self {
            Answer::Retry => "retry",
            Answer::SkipFailed => "skip",
            Answer::RollBackFailed => "roll_back",
            Answer::QuitFailed => "quit",
            Answer::Proceed => "proceed",
            Answer::Wait => "wait",
            Answer::AbortStep => "abort",
            Answer::Agree => "agree",
            Answer::Decline => "decline",
            Answer::ContinueBreached => "continue",
            Answer::RollBackAll => "roll_back",
            Answer::StopBreached => "stop",
            Answer::PauseResume => "pause",
            Answer::BatchBigger => "bigger",
            Answer::BatchSmaller => "smaller",
            Answer::StopAfterBatch => "stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBinding {
    pub prompt: Prompt,
    pub key: KeyCode,
    pub answer: Answer,
    pub label: String,
    /// A word or two for the footer.
    pub hint: &'static str,
    pub description: &'static str,
}

fn p(
    prompt: Prompt,
    key: KeyCode,
    answer: Answer,
    label: &'static str,
    hint: &'static str,
    description: &'static str,
) -> PromptBinding {
    PromptBinding {
        prompt,
        key,
        answer,
        label: label.to_string(),
        hint,
        description,
    }
}

/// The prompts' default keys. The failure prompt's are the step list's
/// letters (`r`, `s`, `b`, `q`) with the meaning they have after a failure.
pub fn prompt_defaults() -> Vec<PromptBinding> {
    use KeyCode::*;
    use Prompt::*;
    vec![
        p(
            Failure,
            Char('r'),
            Answer::Retry,
            "r",
            "retry",
            "run the failed step again (a destructive step asks its phrase again)",
        ),
        p(
            Failure,
            Char('s'),
            Answer::SkipFailed,
            "s",
            "skip",
            "skip the failed step (asks a reason, audited)",
        ),
        p(
            Failure,
            Char('b'),
            Answer::RollBackFailed,
            "b",
            "roll back",
            "roll back the applied steps down to the selected one",
        ),
        p(
            Failure,
            Char('q'),
            Answer::QuitFailed,
            "q",
            "quit",
            "end the session here (exit code 1: a step failed)",
        ),
        p(
            Blockers,
            Char('p'),
            Answer::Proceed,
            "p",
            "proceed",
            "run the step now; lock_timeout bounds its wait",
        ),
        p(
            Blockers,
            Enter,
            Answer::Proceed,
            "Enter",
            "proceed",
            "run the step now; lock_timeout bounds its wait",
        ),
        p(
            Blockers,
            Char('w'),
            Answer::Wait,
            "w",
            "wait",
            "wait for the sessions to finish (p or a while waiting)",
        ),
        p(
            Blockers,
            Char('a'),
            Answer::AbortStep,
            "a",
            "abort step",
            "do not run the step now: back to the step list, still pending",
        ),
        p(
            Blockers,
            Esc,
            Answer::AbortStep,
            "Esc",
            "abort step",
            "do not run the step now: back to the step list, still pending",
        ),
        p(
            RollbackList,
            Char('y'),
            Answer::Agree,
            "y",
            "roll them back",
            "roll back the listed steps (each destructive one asks its phrase)",
        ),
        p(
            RollbackList,
            Char('n'),
            Answer::Decline,
            "n",
            "keep them",
            "roll back none of them",
        ),
        p(
            RollbackList,
            Esc,
            Answer::Decline,
            "Esc",
            "keep them",
            "roll back none of them",
        ),
        p(
            HealthBreach,
            Char('c'),
            Answer::ContinueBreached,
            "c",
            "continue",
            "run the step anyway (audited with the value seen)",
        ),
        p(
            HealthBreach,
            Char('b'),
            Answer::RollBackAll,
            "b",
            "roll back",
            "roll back every applied step, newest first (each asks its phrase), then stop",
        ),
        p(
            HealthBreach,
            Char('x'),
            Answer::StopBreached,
            "x",
            "stop",
            "stop before the step (exit code 3)",
        ),
        p(
            PastWindow,
            Char('c'),
            Answer::ContinueBreached,
            "c",
            "continue",
            "run the step anyway, past the window's end (audited)",
        ),
        p(
            PastWindow,
            Char('x'),
            Answer::StopBreached,
            "x",
            "stop",
            "stop before the step, to run it in the next window (exit code 3)",
        ),
        p(
            PastWindow,
            Esc,
            Answer::StopBreached,
            "Esc",
            "stop",
            "stop before the step, to run it in the next window (exit code 3)",
        ),
        // Not the step list's contract keys (r s b c j k C K ? q), which
        // keep their meaning while a backfill runs (`c` cancels its batch).
        p(
            Backfill,
            Char('p'),
            Answer::PauseResume,
            "p",
            "pause/resume",
            "pause the backfill before its next batch, or resume it (audited)",
        ),
        p(
            Backfill,
            Char('+'),
            Answer::BatchBigger,
            "+",
            "batch ×2",
            "double the batch size (at most 100 × batch_size; the size then holds)",
        ),
        p(
            Backfill,
            Char('-'),
            Answer::BatchSmaller,
            "-",
            "batch ÷2",
            "halve the batch size (at least 1; the size then holds)",
        ),
        p(
            Backfill,
            Char('x'),
            Answer::StopAfterBatch,
            "x",
            "stop after batch",
            "stop after the current batch: the step stays in progress, the next run resumes (exit code 130)",
        ),
    ]
}

/// The answer a key gives at `prompt`, if any.
pub fn answer_for(bindings: &[PromptBinding], prompt: Prompt, key: &KeyEvent) -> Option<Answer> {
    bindings
        .iter()
        .find(|b| b.prompt == prompt && b.key == key.code)
        .map(|b| b.answer)
}

/// The footer's keys for `prompt`: each answer once, with its first key.
pub fn prompt_hints(bindings: &[PromptBinding], prompt: Prompt) -> Vec<(String, &'static str)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for b in bindings.iter().filter(|b| b.prompt == prompt) {
        if !seen.contains(&b.answer) {
            seen.push(b.answer);
            out.push((b.label.clone(), b.hint));
        }
    }
    out
}

/// The prompts' keys with a user's key map applied: one table per prompt,
/// whose entries replace an answer's keys, e.g. `[failure] retry = "R"` or
/// `[blockers] proceed = ["p", "Enter"]`.
pub fn load_prompts(text: Option<&str>) -> Result<Vec<PromptBinding>, String> {
    let mut bindings = prompt_defaults();
    let Some(text) = text else {
        return Ok(bindings);
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("keys.toml: {}", e.message()))?;
    for prompt in Prompt::ALL {
        let name = prompt.name();
        let Some(value) = table.get(name) else {
            continue;
        };
        let answers: Vec<&str> = prompt_defaults()
            .into_iter()
            .filter(|b| b.prompt == prompt)
            .map(|b| b.answer.name())
            .fold(Vec::new(), |mut v, n| {
                if !v.contains(&n) {
                    v.push(n);
                }
                v
            });
        let toml::Value::Table(entries) = value else {
            return Err(format!(
                "keys.toml: {name} is a table of its answers ({}), e.g. [{name}] {} = \"x\"",
                answers.join(", "),
                answers[0]
            ));
        };
        for (answer_name, keys) in entries {
            let Some(template) = bindings
                .iter()
                .find(|b| b.prompt == prompt && b.answer.name() == answer_name)
                .cloned()
            else {
                return Err(format!(
                    "keys.toml: [{name}] {answer_name}: no such answer (there are: {})",
                    answers.join(", ")
                ));
            };
            let keys: Vec<&str> = match keys {
                toml::Value::String(k) => vec![k.as_str()],
                toml::Value::Array(ks) => ks.iter().filter_map(toml::Value::as_str).collect(),
                _ => Vec::new(),
            };
            let at = bindings
                .iter()
                .position(|b| b.prompt == prompt && b.answer == template.answer)
                .unwrap_or(bindings.len());
            bindings.retain(|b| !(b.prompt == prompt && b.answer == template.answer));
            for (i, k) in keys.iter().enumerate() {
                let key = match super::keys::parse_key(k) {
                    Some((key, KeyModifiers::NONE)) => key,
                    _ => {
                        return Err(format!(
                            "keys.toml: [{name}] {answer_name} = {k:?} is not a key a prompt takes (use e.g. \"r\", \"Enter\", \"Esc\", \"F5\")"
                        ));
                    }
                };
                bindings.insert(
                    (at + i).min(bindings.len()),
                    PromptBinding {
                        key,
                        label: k.to_string(),
                        ..template.clone()
                    },
                );
            }
        }
    }
    Ok(bindings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prompt_answers_its_own_keys_without_taking_the_contract_keys_away() {
        let prompts = prompt_defaults();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(
            answer_for(&prompts, Prompt::Failure, &key('s')),
            Some(Answer::SkipFailed)
        );
        assert_eq!(
            answer_for(&prompts, Prompt::Failure, &key('r')),
            Some(Answer::Retry)
        );
        assert_eq!(
            answer_for(&prompts, Prompt::Blockers, &key('a')),
            Some(Answer::AbortStep)
        );
        assert_eq!(answer_for(&prompts, Prompt::Blockers, &key('s')), None);
        // Outside a prompt, `s` is still skip (DESIGN.md's contract).
        assert_eq!(
            crate::tui::keys::action_for(&crate::tui::keys::defaults(), &key('s')),
            Some(crate::tui::keys::Action::Skip)
        );
        // No prompt binds a key twice.
        for (i, a) in prompts.iter().enumerate() {
            for b in &prompts[i + 1..] {
                assert!(!(a.prompt == b.prompt && a.key == b.key), "{a:?} {b:?}");
            }
        }
        let hints = prompt_hints(&prompts, Prompt::Blockers);
        assert_eq!(hints.len(), 3, "{hints:?}");
        // A running backfill's keys take none of the step list's.
        let main = crate::tui::keys::defaults();
        for b in prompts.iter().filter(|b| b.prompt == Prompt::Backfill) {
            assert!(!main.iter().any(|m| m.key == b.key), "{b:?}");
        }
        assert_eq!(
            answer_for(&prompts, Prompt::Backfill, &key('x')),
            Some(Answer::StopAfterBatch)
        );
    }

    #[test]
    fn a_key_map_rebinds_a_prompts_answer_and_says_what_is_wrong() {
        let b = load_prompts(Some("run_next = \"F5\"\n[failure]\nretry = \"R\"\n")).unwrap();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(
            answer_for(&b, Prompt::Failure, &key('R')),
            Some(Answer::Retry)
        );
        assert_eq!(answer_for(&b, Prompt::Failure, &key('r')), None);
        assert_eq!(
            prompt_hints(&b, Prompt::Failure)[0],
            ("R".to_string(), "retry")
        );
        let e = load_prompts(Some("[failure]\nretyr = \"R\"")).unwrap_err();
        assert!(e.contains("retyr") && e.contains("retry, skip"), "{e}");
        assert!(load_prompts(Some("[blockers]\nproceed = \"ctrl-p\"")).is_err());
        // The step list's map loads beside the prompts' tables.
        let main =
            crate::tui::keys::load(Some("run_next = \"F5\"\n[failure]\nretry = \"R\"\n")).unwrap();
        assert!(main.iter().any(|b| b.label == "F5"));
        assert!(crate::tui::keys::load(Some("[failure]\nretyr = \"R\"")).is_err());
    }
}
