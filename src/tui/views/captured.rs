//! The "captured" block of the detail panel: the value of each variable the
//! selected step captures or uses, where it came from, and — when a check
//! ran again and got another value — both, and which one later steps use.

use ratatui::text::{Line, Span};

use crate::tui::app::{App, StepView};
use crate::tui::theme;

/// The block's lines for step `s`; none when it neither captures nor uses a value.
pub fn lines(app: &App, s: &StepView) -> Vec<Line<'static>> {
    let mut names: Vec<&String> = s.capture.iter().collect();
    names.extend(s.uses.iter().filter(|u| Some(*u) != s.capture.as_ref()));
    let mut out = Vec::new();
    for name in names {
        let verb = if Some(name) == s.capture.as_ref() {
            "captures"
        } else {
            "uses"
        };
        let Some(v) = app.captured.get(name) else {
            out.push(Line::from(vec![
                Span::styled(format!("{verb} {{{{{name}}}}}: "), theme::dim()),
                Span::raw("not captured yet"),
            ]));
            continue;
        };
        let from = if v.this_run {
            "captured this run"
        } else {
            "captured on an earlier run"
        };
        out.push(Line::from(vec![
            Span::styled(format!("{verb} {{{{{name}}}}} = "), theme::dim()),
            Span::styled(format!("{:?}", v.value), theme::title()),
            Span::styled(format!(" ({from})"), theme::dim()),
        ]));
        if let Some((fresh, because)) = &v.fresh {
            out.push(Line::from(Span::styled(
                format!(
                    "  this run captured {fresh:?}; later steps and rollbacks use {:?}: {because} was applied with it",
                    v.value
                ),
                theme::warn(),
            )));
        }
    }
    out
}
