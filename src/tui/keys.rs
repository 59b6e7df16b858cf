//! Keys as data: each binding has an action and a description, which feed the
//! footer and the `?` help. Defaults are DESIGN.md's; a user key map
//! (`keys.toml` in the config directory) can rebind actions.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

/// What a key press means, before it changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    RunNext,
    Skip,
    Rollback,
    Cancel,
    Up,
    Down,
    NextPanel,
    CancelBackend,
    TerminateBackend,
    Help,
    Quit,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::RunNext => "run_next",
            Action::Skip => "skip",
            Action::Rollback => "rollback",
            Action::Cancel => "cancel",
            Action::Up => "up",
            Action::Down => "down",
            Action::NextPanel => "next_panel",
            Action::CancelBackend => "cancel_backend",
            Action::TerminateBackend => "terminate_backend",
            Action::Help => "help",
            Action::Quit => "quit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub key: KeyCode,
    pub modifiers: KeyModifiers,
    pub action: Action,
    pub label: String,
    pub description: &'static str,
}

fn b(key: KeyCode, action: Action, label: &str, description: &'static str) -> Binding {
    Binding {
        key,
        modifiers: KeyModifiers::NONE,
        action,
        label: label.to_string(),
        description,
    }
}

/// DESIGN.md's default keys (a contract).
pub fn defaults() -> Vec<Binding> {
    use KeyCode::*;
    vec![
        b(Char('r'), Action::RunNext, "r", "run the next pending step"),
        b(
            Char('s'),
            Action::Skip,
            "s",
            "skip the next step (asks a reason)",
        ),
        b(
            Char('b'),
            Action::Rollback,
            "b",
            "roll back the selected applied step (and the ones after it)",
        ),
        b(
            Char('c'),
            Action::Cancel,
            "c",
            "cancel the running statement",
        ),
        b(Up, Action::Up, "↑", "move up"),
        b(Char('k'), Action::Up, "k", "move up"),
        b(Down, Action::Down, "↓", "move down"),
        b(Char('j'), Action::Down, "j", "move down"),
        b(Tab, Action::NextPanel, "Tab", "next panel"),
        b(
            Char('C'),
            Action::CancelBackend,
            "C",
            "in the lock panel: cancel the selected backend's query",
        ),
        b(
            Char('K'),
            Action::TerminateBackend,
            "K",
            "in the lock panel: terminate the selected backend",
        ),
        b(Char('?'), Action::Help, "?", "help"),
        b(
            Char('q'),
            Action::Quit,
            "q",
            "quit (asks when something runs)",
        ),
    ]
}

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
}

impl Prompt {
    /// The heading of its keys in the help.
    pub fn title(self) -> &'static str {
        match self {
            Prompt::Failure => "After a step failed",
            Prompt::Blockers => "When sessions hold the locks a step needs",
            Prompt::RollbackList => "Before several steps are rolled back",
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBinding {
    pub prompt: Prompt,
    pub key: KeyCode,
    pub answer: Answer,
    pub label: &'static str,
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
        label,
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
            out.push((b.label.to_string(), b.hint));
        }
    }
    out
}

/// A key string from the key map file: `r`, `Tab`, `Up`, `F5`, `ctrl-r`.
pub fn parse_key(s: &str) -> Option<(KeyCode, KeyModifiers)> {
    let (mods, key) = match s.strip_prefix("ctrl-") {
        Some(k) => (KeyModifiers::CONTROL, k),
        None => (KeyModifiers::NONE, s),
    };
    let code = match key {
        "Tab" => KeyCode::Tab,
        "Up" => KeyCode::Up,
        "Down" => KeyCode::Down,
        "Left" => KeyCode::Left,
        "Right" => KeyCode::Right,
        "Enter" => KeyCode::Enter,
        "Space" => KeyCode::Char(' '),
        k if k.starts_with('F') && k.len() > 1 => KeyCode::F(k[1..].parse().ok()?),
        k if k.chars().count() == 1 => KeyCode::Char(k.chars().next()?),
        _ => return None,
    };
    Some((code, mods))
}

/// The defaults with a user's key map applied: `action = "key"` or
/// `action = ["key", "key"]` replaces that action's keys.
pub fn load(text: Option<&str>) -> Result<Vec<Binding>, String> {
    let mut bindings = defaults();
    let Some(text) = text else {
        return Ok(bindings);
    };
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        One(String),
        Many(Vec<String>),
    }
    let map: HashMap<Action, Keys> =
        toml::from_str(text).map_err(|e| format!("keys.toml: {}", e.message()))?;
    for (action, keys) in map {
        let keys = match keys {
            Keys::One(k) => vec![k],
            Keys::Many(k) => k,
        };
        let description = bindings
            .iter()
            .find(|b| b.action == action)
            .map(|b| b.description)
            .unwrap_or("");
        bindings.retain(|b| b.action != action);
        for k in keys {
            let (key, modifiers) = parse_key(&k).ok_or_else(|| format!("keys.toml: {} = {k:?} is not a key (use e.g. \"r\", \"Tab\", \"ctrl-r\", \"F5\")", action.name()))?;
            bindings.push(Binding {
                key,
                modifiers,
                action,
                label: k,
                description,
            });
        }
    }
    Ok(bindings)
}

/// The user's key map, from the config directory, if any.
pub fn user_keymap() -> Option<String> {
    let dirs = directories::ProjectDirs::from("", "", "pgpilot")?;
    std::fs::read_to_string(dirs.config_dir().join("keys.toml")).ok()
}

pub fn action_for(bindings: &[Binding], key: &KeyEvent) -> Option<Action> {
    let mods = key.modifiers - KeyModifiers::SHIFT;
    bindings
        .iter()
        .find(|b| b.key == key.code && b.modifiers == mods)
        .map(|b| b.action)
}

/// The first label bound to an action, for the footer.
pub fn label(bindings: &[Binding], action: Action) -> String {
    bindings
        .iter()
        .find(|b| b.action == action)
        .map(|b| b.label.clone())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_map_rebinds_an_action() {
        let b = load(Some("run_next = \"F5\"\nquit = [\"q\", \"ctrl-x\"]")).unwrap();
        let f5 = KeyEvent::new(KeyCode::F(5), KeyModifiers::NONE);
        assert_eq!(action_for(&b, &f5), Some(Action::RunNext));
        let r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::NONE);
        assert_eq!(action_for(&b, &r), None);
        let cx = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(action_for(&b, &cx), Some(Action::Quit));
    }

    #[test]
    fn a_bad_key_map_says_what_is_wrong() {
        assert!(
            load(Some("run_next = \"hyper-r\""))
                .unwrap_err()
                .contains("run_next")
        );
        assert!(load(Some("fly = \"f\"")).is_err());
    }

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
        assert_eq!(action_for(&defaults(), &key('s')), Some(Action::Skip));
        // No prompt binds a key twice.
        for (i, a) in prompts.iter().enumerate() {
            for b in &prompts[i + 1..] {
                assert!(!(a.prompt == b.prompt && a.key == b.key), "{a:?} {b:?}");
            }
        }
        let hints = prompt_hints(&prompts, Prompt::Blockers);
        assert_eq!(hints.len(), 3, "{hints:?}");
    }

    #[test]
    fn uppercase_letters_match_with_shift() {
        let k = KeyEvent::new(KeyCode::Char('K'), KeyModifiers::SHIFT);
        assert_eq!(action_for(&defaults(), &k), Some(Action::TerminateBackend));
    }
}
