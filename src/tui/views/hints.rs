//! The footer's key hints, fitted to the terminal's width: `? help` and
//! `q quit` always stay (they lead to every other key and out), the other
//! hints go from the last (least important) on until the rest fits.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::tui::theme;

/// One hint: the key's label and what it does.
pub type Hint = (String, &'static str);

/// Columns a hint takes: ` k ` then ` what  `.
fn width(h: &Hint) -> usize {
    h.0.chars().count() + 2 + h.1.chars().count() + 3
}

/// `hints` then `kept` (shown last, never dropped), fitted into `columns`:
/// the hints of `hints` are dropped from the end until everything fits.
pub fn fit(mut hints: Vec<Hint>, kept: Vec<Hint>, columns: usize) -> Vec<Hint> {
    let kept_width: usize = kept.iter().map(width).sum();
    while !hints.is_empty() && hints.iter().map(width).sum::<usize>() + kept_width > columns {
        hints.pop();
    }
    hints.extend(kept);
    hints
}

/// The hints as one line: keys reversed, descriptions in `text`.
pub fn line(hints: Vec<Hint>, text: Style) -> Line<'static> {
    let mut spans = Vec::new();
    for (k, d) in hints {
        spans.push(Span::styled(format!(" {k} "), theme::selected()));
        spans.push(Span::styled(format!(" {d}  "), text));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, d: &'static str) -> Hint {
        (k.to_string(), d)
    }

    #[test]
    fn help_and_quit_stay_when_the_others_do_not_fit() {
        let hints = vec![h("r", "run next"), h("s", "skip"), h("Tab", "panel")];
        let kept = vec![h("?", "help"), h("q", "quit")];
        let all = fit(hints.clone(), kept.clone(), 200);
        assert_eq!(all.len(), 5);
        // " r  run next  " is 14 columns, "?" and "q" 20 together.
        let some = fit(hints.clone(), kept.clone(), 34);
        assert_eq!(
            some,
            vec![h("r", "run next"), h("?", "help"), h("q", "quit")]
        );
        let none = fit(hints, kept.clone(), 10);
        assert_eq!(none, kept);
    }
}
