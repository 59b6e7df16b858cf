use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{cut, focused, panel};
use crate::tui::app::{App, Panel};
use crate::tui::theme;

/// Rows one entry may take: a yield's line names who waited and who holds
/// the table at its end, so an entry wraps instead of being cut at the
/// panel's edge; past this many rows it is cut.
const ROWS_PER_ENTRY: usize = 4;

pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let block = panel("Log", focused(app, Panel::Log));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let height = inner.height as usize;
    let end = app.log.len().saturating_sub(app.log_scroll);
    // The newest entries at the bottom, taken from the end until the panel
    // is full; an entry that does not fit whole shows its first rows (a
    // continuation row alone would read as an entry of its own).
    let mut rows: Vec<Line> = Vec::new();
    for l in app.log[..end].iter().rev() {
        let left = height.saturating_sub(rows.len());
        if left == 0 {
            break;
        }
        let style = theme::log(l.level);
        let mut entry = wrap(&l.text, inner.width as usize);
        if entry.len() > left {
            entry.truncate(left);
            if let Some(last) = entry.pop() {
                entry.push(cut(&format!("{last}…"), inner.width as usize));
            }
        }
        for row in entry.into_iter().rev() {
            rows.push(Line::from(Span::styled(row, style)));
        }
    }
    rows.reverse();
    f.render_widget(Paragraph::new(rows), inner);
}

/// `text` in rows of at most `width` characters, broken between words
/// where it can be (a word longer than a row is split), the later rows
/// indented by two; at most `ROWS_PER_ENTRY` rows, the last ending in "…"
/// when the entry goes on.
fn wrap(text: &str, width: usize) -> Vec<String> {
    if width < 8 || text.chars().count() <= width {
        return vec![cut(text, width)];
    }
    let mut rows: Vec<String> = Vec::new();
    let mut row = String::new();
    let mut used = 0usize;
    let indent = |rows: &Vec<String>| if rows.is_empty() { 0 } else { 2 };
    for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let room = width - indent(&rows);
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= room {
                if gap == 1 {
                    row.push(' ');
                }
                row.extend(word.iter());
                used += gap + word.len();
                break;
            }
            if used > 0 {
                // The word goes to the next row.
                rows.push(std::mem::take(&mut row));
                used = 0;
                continue;
            }
            // A word longer than a whole row: split it.
            row.extend(word[..room].iter());
            word.drain(..room);
            rows.push(std::mem::take(&mut row));
        }
    }
    if used > 0 {
        rows.push(row);
    }
    let mut rows: Vec<String> = rows
        .into_iter()
        .enumerate()
        .map(|(n, r)| if n == 0 { r } else { format!("  {r}") })
        .collect();
    if rows.len() > ROWS_PER_ENTRY {
        rows.truncate(ROWS_PER_ENTRY);
        let last = rows.pop().unwrap_or_default();
        let mut kept: Vec<char> = last.chars().collect();
        kept.truncate(width - 1);
        rows.push(format!("{}…", kept.into_iter().collect::<String>()));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn a_long_entry_wraps_indented_and_is_cut_after_four_rows() {
        assert_eq!(wrap("short", 20), ["short"]);
        assert_eq!(
            wrap("0123456789abcdefghij", 10),
            ["0123456789", "  abcdefgh", "  ij"]
        );
        assert_eq!(
            wrap("held by pid 42 (nightly-report)", 16),
            ["held by pid 42", "  (nightly-repor", "  t)"]
        );
        assert_eq!(
            wrap("yielded: two waited", 12),
            ["yielded: two", "  waited"]
        );
        let long = "x".repeat(100);
        let rows = wrap(&long, 10);
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows[3].ends_with('…'), "{rows:?}");
        assert!(rows.iter().all(|r| r.chars().count() <= 10), "{rows:?}");
    }
}
