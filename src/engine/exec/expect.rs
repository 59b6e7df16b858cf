//! A step's last result, its expectation and its capture: pure.

use std::collections::HashMap;

use tokio_postgres::SimpleQueryMessage;

use super::sql::SqlFailure;
use crate::runbook::{Expect, Step, vars};

/// The last result set of a step: what `expect` and `capture` look at.
#[derive(Debug, Default)]
pub(super) struct StepResult {
    /// Rows returned by the last statement that returned rows, else its count.
    pub(super) rows: u64,
    pub(super) first_value: Option<Option<String>>,
    pub(super) returned_rows: bool,
    /// The value a re-run check captured for its kept (pinned) variable,
    /// which it does not replace.
    pub(super) fresh_capture: Option<String>,
}

/// Checks the step's expectation on its last result and keeps its capture.
pub(super) fn evaluate(
    step: &Step,
    messages: &[SimpleQueryMessage],
    captured: &mut HashMap<String, String>,
    pinned: Option<&str>,
    fresh: &HashMap<String, String>,
) -> Result<StepResult, SqlFailure> {
    check_expectation(step, last_result(messages), captured, pinned).map_err(|mut f| {
        f.message.push_str(&kept_note(step, captured, fresh));
        f
    })
}

/// Where an expected value came from, when it is a value kept from an
/// earlier run although this run captured another: never a silent
/// comparison against the old one.
pub(super) fn kept_note(
    step: &Step,
    captured: &HashMap<String, String>,
    fresh: &HashMap<String, String>,
) -> String {
    let Some(Expect::Scalar(text)) = &step.expect else {
        return String::new();
    };
    let Ok(refs) = vars::references(text) else {
        return String::new();
    };
    let mut notes = Vec::new();
    for r in refs {
        if let (Some(kept), Some(new)) = (captured.get(&r.name), fresh.get(&r.name))
            && kept != new
            && !notes
                .iter()
                .any(|n: &String| n.contains(&format!("{{{{{}}}}}", r.name)))
        {
            notes.push(format!(
                "{{{{{}}}}} is {kept:?}, the value kept from an earlier run for the steps applied since; this run captured {new:?}",
                r.name
            ));
        }
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// The last result set among a step's results.
pub(super) fn last_result(messages: &[SimpleQueryMessage]) -> StepResult {
    let mut last = StepResult::default();
    let mut current_rows = 0u64;
    let mut current_first: Option<Option<String>> = None;
    let mut in_rows = false;
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(_) => {
                in_rows = true;
                current_rows = 0;
                current_first = None;
            }
            SimpleQueryMessage::Row(r) => {
                in_rows = true;
                if current_rows == 0 {
                    current_first = Some(r.get(0).map(str::to_string));
                }
                current_rows += 1;
            }
            SimpleQueryMessage::CommandComplete(n) => {
                last = if in_rows {
                    StepResult {
                        rows: current_rows,
                        first_value: current_first.take(),
                        returned_rows: true,
                        fresh_capture: None,
                    }
                } else {
                    StepResult {
                        rows: *n,
                        first_value: None,
                        returned_rows: false,
                        fresh_capture: None,
                    }
                };
                in_rows = false;
                current_rows = 0;
            }
            _ => {}
        }
    }
    last
}

pub(super) fn check_expectation(
    step: &Step,
    mut last: StepResult,
    captured: &mut HashMap<String, String>,
    pinned: Option<&str>,
) -> Result<StepResult, SqlFailure> {
    if let Some(expect) = &step.expect {
        let expected_scalar = match expect {
            Expect::Scalar(s) => {
                Some(vars::substitute_plain(s, captured).map_err(SqlFailure::plain)?)
            }
            _ => None,
        };
        let ok = match expect {
            Expect::Rows(n) => last.rows == *n,
            Expect::Empty(true) => last.rows == 0,
            Expect::Empty(false) => last.rows > 0,
            Expect::Scalar(_) => {
                last.first_value.as_ref().and_then(|v| v.as_deref()) == expected_scalar.as_deref()
            }
        };
        if !ok {
            let got = match expect {
                Expect::Scalar(_) => format!(
                    "got {}",
                    last.first_value
                        .as_ref()
                        .map(|v| v.as_deref().unwrap_or("NULL"))
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_else(|| "no rows".into())
                ),
                _ => format!("got {} row(s)", last.rows),
            };
            let want = match expect {
                Expect::Rows(n) => format!("{n} row(s)"),
                Expect::Empty(true) => "no rows".into(),
                Expect::Empty(false) => "at least one row".into(),
                Expect::Scalar(_) => {
                    format!("{:?}", expected_scalar.as_deref().unwrap_or_default())
                }
            };
            let hint = boolean_hint(expected_scalar.as_deref(), &last);
            return Err(SqlFailure::plain(format!(
                "expectation not met: expected {want}, {got}{hint}"
            )));
        }
    }
    if step.capture.is_some() && step.capture.as_deref() == pinned && last.returned_rows {
        last.fresh_capture = last.first_value.clone().flatten();
    }
    if let Some(name) = step.capture.as_ref().filter(|n| Some(n.as_str()) != pinned) {
        match last.first_value.clone().flatten() {
            Some(v) if last.returned_rows => {
                captured.insert(name.clone(), v);
            }
            _ => {
                return Err(SqlFailure::plain(format!(
                    "capture {name}: the step returned no value to keep"
                )));
            }
        }
    }
    Ok(last)
}

/// PostgreSQL prints a boolean as `t`/`f`, so `scalar = "true"` never
/// matches one; say how to write it rather than leave "true" vs "t" a riddle.
fn boolean_hint(expected: Option<&str>, last: &StepResult) -> &'static str {
    let got = last.first_value.as_ref().and_then(|v| v.as_deref());
    let spelled_out =
        expected.is_some_and(|e| e.eq_ignore_ascii_case("true") || e.eq_ignore_ascii_case("false"));
    if spelled_out && matches!(got, Some("t" | "f")) {
        " (PostgreSQL prints a boolean as t or f: write scalar = true, without quotes, or \"t\")"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one step of a runbook whose step carries `keys`.
    fn step(keys: &str) -> Step {
        let text = format!(
            "[runbook]\nid = \"t\"\ntitle = \"t\"\n\n[[phase]]\nid = \"p\"\n\n  [[phase.step]]\n  id = \"s\"\n  kind = \"check\"\n  sql = \"SELECT 1\"\n  {keys}\n"
        );
        match crate::runbook::parse_str(std::path::Path::new("t.toml"), text) {
            Ok(rb) => match rb.steps().next() {
                Some((_, s)) => s.clone(),
                None => panic!("the runbook has no step"),
            },
            Err(d) => panic!("runbook: {d:?}"),
        }
    }

    fn rows(first: Option<&str>, n: u64) -> StepResult {
        StepResult {
            rows: n,
            first_value: (n > 0).then(|| first.map(str::to_string)),
            returned_rows: true,
            fresh_capture: None,
        }
    }

    fn message(r: Result<StepResult, SqlFailure>) -> String {
        match r {
            Ok(_) => String::new(),
            Err(f) => f.message,
        }
    }

    #[test]
    fn the_last_command_counts_when_no_rows_were_returned() {
        let last = last_result(&[
            SimpleQueryMessage::CommandComplete(3),
            SimpleQueryMessage::CommandComplete(7),
        ]);
        assert_eq!(last.rows, 7);
        assert!(!last.returned_rows);
        assert_eq!(last.first_value, None);
    }

    #[test]
    fn rows_and_empty_expectations() {
        let mut vars = HashMap::new();
        let s = step("expect = { rows = 2 }");
        assert!(check_expectation(&s, rows(Some("a"), 2), &mut vars, None).is_ok());
        assert_eq!(
            message(check_expectation(&s, rows(Some("a"), 1), &mut vars, None)),
            "expectation not met: expected 2 row(s), got 1 row(s)"
        );
        let s = step("expect = { empty = true }");
        assert!(check_expectation(&s, rows(None, 0), &mut vars, None).is_ok());
        assert_eq!(
            message(check_expectation(&s, rows(Some("x"), 1), &mut vars, None)),
            "expectation not met: expected no rows, got 1 row(s)"
        );
        let s = step("expect = { empty = false }");
        assert_eq!(
            message(check_expectation(&s, rows(None, 0), &mut vars, None)),
            "expectation not met: expected at least one row, got 0 row(s)"
        );
    }

    #[test]
    fn a_scalar_is_compared_as_text_and_null_is_not_a_value() {
        let mut vars = HashMap::new();
        let s = step("expect = { scalar = \"42\" }");
        assert!(check_expectation(&s, rows(Some("42"), 1), &mut vars, None).is_ok());
        assert_eq!(
            message(check_expectation(&s, rows(None, 1), &mut vars, None)),
            "expectation not met: expected \"42\", got \"NULL\""
        );
        assert_eq!(
            message(check_expectation(&s, rows(None, 0), &mut vars, None)),
            "expectation not met: expected \"42\", got no rows"
        );
    }

    #[test]
    fn a_boolean_spelled_out_in_quotes_says_how_postgresql_prints_it() {
        let mut vars = HashMap::new();
        let s = step("expect = { scalar = \"true\" }");
        assert_eq!(
            message(check_expectation(&s, rows(Some("t"), 1), &mut vars, None)),
            "expectation not met: expected \"true\", got \"t\" (PostgreSQL prints a boolean as t or f: write scalar = true, without quotes, or \"t\")"
        );
        let s = step("expect = { scalar = true }");
        assert_eq!(
            message(check_expectation(&s, rows(Some("f"), 1), &mut vars, None)),
            "expectation not met: expected \"t\", got \"f\""
        );
    }

    #[test]
    fn a_comparison_with_a_kept_value_says_so_and_names_the_new_one() {
        let mut kept = HashMap::from([("max_id".to_string(), "200273".to_string())]);
        let fresh = HashMap::from([("max_id".to_string(), "200301".to_string())]);
        let text = "[runbook]\nid = \"t\"\ntitle = \"t\"\n[[phase]]\nid = \"p\"\n\
            [[phase.step]]\nid = \"max\"\nkind = \"check\"\nsql = \"SELECT 1\"\ncapture = \"max_id\"\n\
            [[phase.step]]\nid = \"same\"\nkind = \"verify\"\nsql = \"SELECT 1\"\nexpect = { scalar = \"{{max_id}}\" }\n";
        let rb = crate::runbook::parse_str(std::path::Path::new("t.toml"), text.into())
            .unwrap_or_else(|d| panic!("runbook: {d:?}"));
        let Some(s) = rb.step("same").cloned() else {
            panic!("no step same")
        };
        let f = check_expectation(&s, rows(Some("200301"), 1), &mut kept, None)
            .err()
            .map(|mut f| {
                f.message.push_str(&kept_note(&s, &kept, &fresh));
                f.message
            });
        assert_eq!(
            f.as_deref(),
            Some(
                "expectation not met: expected \"200273\", got \"200301\" ({{max_id}} is \"200273\", the value kept from an earlier run for the steps applied since; this run captured \"200301\")"
            )
        );
        assert_eq!(kept_note(&s, &kept, &HashMap::new()), "");
    }

    #[test]
    fn a_pinned_capture_is_not_replaced_but_its_new_value_is_told() {
        let mut vars = HashMap::from([("n".to_string(), "5".to_string())]);
        let s = step("capture = \"n\"");
        let r = check_expectation(&s, rows(Some("9"), 1), &mut vars, Some("n"));
        assert_eq!(r.ok().and_then(|r| r.fresh_capture).as_deref(), Some("9"));
        assert_eq!(vars["n"], "5");
    }

    #[test]
    fn a_capture_keeps_the_first_value_unless_pinned() {
        let mut vars = HashMap::new();
        let s = step("capture = \"n\"");
        assert!(check_expectation(&s, rows(Some("5"), 1), &mut vars, None).is_ok());
        assert_eq!(vars.get("n").map(String::as_str), Some("5"));
        // Pinned: a re-run check keeps the value later changes were checked against.
        assert!(check_expectation(&s, rows(Some("9"), 1), &mut vars, Some("n")).is_ok());
        assert_eq!(vars.get("n").map(String::as_str), Some("5"));
        assert_eq!(
            message(check_expectation(&s, rows(None, 0), &mut vars, None)),
            "capture n: the step returned no value to keep"
        );
    }
}
