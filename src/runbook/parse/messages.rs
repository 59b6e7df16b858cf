//! Diagnostics in pgpilot's words: TOML and serde errors rewritten with the
//! key and table they concern, and undefined variables with a suggestion.

use std::collections::HashSet;

use crate::diag::{Diagnostic, Location, nearest};

pub(super) fn undefined_var(
    at: Location,
    name: &str,
    step_id: &str,
    captured: &HashSet<String>,
) -> Diagnostic {
    let help = match nearest(name, captured.iter().map(String::as_str)) {
        Some(n) => format!(
            "did you mean {{{{{n}}}}}? Variables come from capture = \"…\" on a step before {step_id}"
        ),
        None => {
            format!("add capture = \"{name}\" to a step before {step_id} that selects the value")
        }
    };
    Diagnostic::error(
        at,
        format!("variable {{{{{name}}}}} is not captured by any earlier step"),
    )
    .with_help(help)
}

/// Rewrites serde's and toml's messages into pgpilot's words, with a suggestion
/// for a misspelled key.
pub(super) fn explain_toml_message(
    message: &str,
    text: &str,
    span: Option<std::ops::Range<usize>>,
) -> (String, Option<String>) {
    let message = message.trim().replace('\n', "; ");
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        let allowed: Vec<&str> = quoted.iter().skip(1).copied().collect();
        let table = span
            .map(|s| enclosing_table(text, s.start))
            .unwrap_or_default();
        let msg = if table.is_empty() {
            format!("unknown key `{key}`")
        } else {
            format!("unknown key `{key}` in {table}")
        };
        let help = match nearest(key, allowed.iter().copied()) {
            Some(n) => format!(
                "did you mean `{n}`? Keys allowed here: {}",
                allowed.join(", ")
            ),
            None if allowed.is_empty() => "remove it".to_string(),
            None => format!("keys allowed here: {}", allowed.join(", ")),
        };
        return (msg, Some(help));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or_default();
        return (
            format!("missing key `{key}`"),
            Some(format!("add {key} = …")),
        );
    }
    if message.starts_with("invalid type") {
        let message = message
            .replace("invalid type: ", "wrong type: found ")
            .replace("expected i64", "expected an integer")
            .replace("expected a string", "expected a string in quotes")
            .replace("expected a boolean", "expected true or false");
        let key = span.map(|s| key_before(text, s.start)).unwrap_or_default();
        let message = if key.is_empty() {
            message
        } else {
            format!("{key}: {message}")
        };
        return (
            message,
            Some("see docs/runbook-format.md for each key's type".into()),
        );
    }
    if message.contains("did not match any variant") {
        return (
            "wrong type for expect.scalar".into(),
            Some("write the expected value as a string, e.g. scalar = \"42\"".into()),
        );
    }
    (
        format!("invalid TOML: {message}"),
        Some("fix the TOML syntax at this place; see docs/runbook-format.md".into()),
    )
}

/// The key whose value starts at `offset` (`key = value` on one line).
pub(super) fn key_before(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.rsplit('\n').next().unwrap_or_default();
    match line.rsplit_once('=') {
        Some((key, _)) => key
            .trim()
            .trim_start_matches('{')
            .trim()
            .rsplit([',', '{'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        None => String::new(),
    }
}

/// The `[table]` or `[[array]]` header in force at `offset`, for messages.
pub(super) fn enclosing_table(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.split(']')
                .next()
                .map(|h| format!("{h}]"))
                .unwrap_or_default()
        })
        .map(|h| {
            if h.starts_with("[[") {
                format!("{h}]")
            } else {
                h
            }
        })
        .unwrap_or_default()
}
