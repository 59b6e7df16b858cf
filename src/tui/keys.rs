//! Keys as data: each binding has an action and a description, which feed the
//! footer and the `?` help. Defaults are DESIGN.md's; a user key map
//! (`keys.toml` in the config directory) can rebind actions.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

pub use super::prompt_keys::{
    Answer, Prompt, PromptBinding, answer_for, load_prompts, prompt_defaults, prompt_hints,
};

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
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| format!("keys.toml: {}", e.message()))?;
    // The prompts' tables (`[failure]`, `[blockers]`, …) are theirs.
    load_prompts(Some(text))?;
    table.retain(|name, _| !Prompt::ALL.iter().any(|p| p.name() == name));
    let map: HashMap<Action, Keys> = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| format!("keys.toml: {}", e.message()))?;
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
    fn uppercase_letters_match_with_shift() {
        let k = KeyEvent::new(KeyCode::Char('K'), KeyModifiers::SHIFT);
        assert_eq!(action_for(&defaults(), &k), Some(Action::TerminateBackend));
    }
}
