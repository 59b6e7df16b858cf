//! sqitch's plan file, `sqitch.plan`, read the way sqitch reads it
//! (App::Sqitch::Plan `_parse`): pragmas up to the first blank line, then
//! change lines `name [deps] 2024-01-01T00:00:00Z Planner <email> # note`
//! and tag lines `@v1.0 … # note`; `#` starts a note, blank lines and
//! comment lines are skipped. A change named again after a tag is a
//! rework: the earlier one's scripts are `deploy/name@TAG.sql`.

use std::collections::HashMap;
use std::path::Path;

use crate::diag::{Diagnostic, SourceFile};

/// The plan file.
#[derive(Debug, Clone)]
pub struct Plan {
    pub project: String,
    pub uri: Option<String>,
    pub changes: Vec<Change>,
}

/// A dependency `[!][project:]change[@tag]`, `@tag` or a change id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub conflicts: bool,
    /// The project written before `:`, when one is.
    pub project: Option<String>,
    pub change: Option<String>,
    pub tag: Option<String>,
    pub id: Option<String>,
}

impl Dep {
    /// `change@tag`, `@tag` or the id (sqitch's `key_name`).
    pub fn key(&self) -> String {
        let mut k = self.change.clone().unwrap_or_default();
        if let Some(t) = &self.tag {
            k.push('@');
            k.push_str(t);
        }
        if k.is_empty() {
            k = self.id.clone().unwrap_or_default();
        }
        k
    }

    /// As sqitch writes it in a change's info and the registry: prefixed
    /// by its project only when that is another project.
    pub fn as_string(&self, plan_project: &str) -> String {
        match &self.project {
            Some(p) if p != plan_project => format!("{p}:{}", self.key()),
            _ => self.key(),
        }
    }

    /// Whether it names a change of this project (not another project's).
    pub fn is_internal(&self, plan_project: &str) -> bool {
        match &self.project {
            Some(p) => p == plan_project,
            None => self.id.is_none(),
        }
    }
}

/// A tag line, attached to the change before it.
#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub timestamp: String,
    pub planner_name: String,
    pub planner_email: String,
    pub note: String,
}

/// A change line.
#[derive(Debug, Clone)]
pub struct Change {
    pub name: String,
    /// Its line in the plan (from 1).
    pub line: usize,
    pub requires: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    /// `2024-01-01T00:00:00Z`, as written.
    pub timestamp: String,
    pub planner_name: String,
    pub planner_email: String,
    pub note: String,
    pub tags: Vec<Tag>,
    /// Set when the change is named again later: the tags after it, the
    /// first of which (with a file) names its scripts `name@TAG.sql`.
    pub rework_tags: Vec<String>,
}

/// Like `[:punct:]` without `_`: a name neither starts nor ends with one.
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() && c != '_'
}

/// sqitch's name rule: no blanks, `:`, `@`, `#`, `\`, `[`, `]`; not
/// starting or ending with punctuation.
fn valid_name(name: &str) -> bool {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    !is_punct(first)
        && !is_punct(last)
        && !name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ':' | '@' | '#' | '\\' | '[' | ']'))
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `2024-01-01T00:00:00Z` at the start of `s`.
fn timestamp_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    (b.len() >= shape.len()
        && shape.iter().zip(b).all(|(want, got)| match want {
            b'd' => got.is_ascii_digit(),
            w => w == got,
        }))
    .then_some(shape.len())
}

/// A note as sqitch keeps it: trimmed, `\n`, `\r`, `\\` unescaped.
fn unescape_note(note: &str) -> String {
    let mut out = String::new();
    let mut chars = note.trim().chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Splits `line` at its first `#`: the content (right blanks trimmed) and
/// the note after it.
fn split_note(line: &str) -> (&str, String) {
    match line.find('#') {
        Some(i) => (line[..i].trim_end(), unescape_note(&line[i + 1..])),
        None => (line.trim_end(), String::new()),
    }
}

fn parse_dep(s: &str) -> Option<Dep> {
    let (conflicts, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (project, rest) = match rest.split_once(':') {
        Some((p, r)) if valid_name(p) => (Some(p.to_string()), r),
        Some(_) => return None,
        None => (None, rest),
    };
    let mut dep = Dep {
        conflicts,
        project,
        change: None,
        tag: None,
        id: None,
    };
    if rest.len() == 40 && rest.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        dep.id = Some(rest.to_string());
        return Some(dep);
    }
    let (change, tag) = match rest.split_once('@') {
        Some((c, t)) => (c, Some(t)),
        None => (rest, None),
    };
    if !change.is_empty() {
        if !valid_name(change) {
            return None;
        }
        dep.change = Some(change.to_string());
    }
    if let Some(t) = tag {
        if !valid_name(t) {
            return None;
        }
        dep.tag = Some(t.to_string());
    }
    (dep.change.is_some() || dep.tag.is_some()).then_some(dep)
}

/// One change or tag line's parts after its name.
struct Line {
    name: String,
    deps: Option<String>,
    timestamp: String,
    planner_name: String,
    planner_email: String,
}

struct Parser {
    source: std::sync::Arc<SourceFile>,
    /// Byte offset of each line's start.
    starts: Vec<usize>,
}

impl Parser {
    fn error(&self, line: usize, col_offset: usize, message: impl Into<String>) -> Diagnostic {
        let at = self.starts.get(line - 1).copied().unwrap_or(0) + col_offset;
        Diagnostic::error(self.source.location(at), message)
    }
}

const NAME_HELP: &str = "names must not begin with punctuation, contain \"@\", \":\", \"#\", \"\\\", \"[\", \"]\" or blanks, or end in punctuation";

/// Parses the text of a plan file; every error names its `PATH:LINE:COL`.
pub fn parse(path: &Path, text: &str) -> Result<Plan, Vec<Diagnostic>> {
    let source = SourceFile::new(path, text.to_string());
    let mut starts = vec![0];
    for (i, c) in text.char_indices() {
        if c == '\n' {
            starts.push(i + 1);
        }
    }
    let p = Parser { source, starts };
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut pragmas: HashMap<String, String> = HashMap::new();
    let mut n = 0;
    // The header: pragmas up to the first blank line.
    while n < lines.len() {
        let line = lines[n];
        n += 1;
        let t = line.trim_start_matches(is_blank);
        if t.is_empty() {
            break;
        }
        if t.starts_with('#') {
            continue;
        }
        let (content, _) = split_note(t);
        let Some(rest) = content.strip_prefix('%') else {
            return Err(vec![
                p.error(
                    n,
                    line.len() - t.len(),
                    "invalid pragma; a blank line must come between pragmas and changes",
                )
                .with_help("pragmas are `%name=value` lines at the top of sqitch.plan"),
            ]);
        };
        let (name, value) = match rest.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (rest.trim(), "1"),
        };
        pragmas.insert(name.to_string(), value.to_string());
    }
    let Some(project) = pragmas.get("project").cloned() else {
        return Err(vec![p.error(1, 0, "missing %project pragma").with_help(
            "sqitch.plan starts with `%project=NAME` (sqitch init writes it)",
        )]);
    };
    if !valid_name(&project) {
        return Err(vec![
            p.error(1, 0, format!("invalid project name {project:?}"))
                .with_help(NAME_HELP),
        ]);
    }
    let mut changes: Vec<Change> = Vec::new();
    // Index into `changes` where the current tag's section starts.
    let mut section_start = 0;
    let mut section_names: HashMap<String, usize> = HashMap::new();
    let mut tag_lines: HashMap<String, usize> = HashMap::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    while n < lines.len() {
        let raw = lines[n];
        n += 1;
        let t = raw.trim_start_matches(is_blank);
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let lspace = raw.len() - t.len();
        let (content, note) = split_note(t);
        let is_tag = content.starts_with('@');
        let body = if is_tag {
            &content[1..]
        } else if let Some(r) = content.strip_prefix('+') {
            r.trim_start_matches(is_blank)
        } else if content.starts_with('-') {
            return Err(vec![
                p.error(n, lspace, "a `-` (revert) line in the plan is not supported")
                    .with_help("pgpilot reads plans whose changes are all deployed; remove the line or revert with sqitch"),
            ]);
        } else {
            content
        };
        let l = parse_line(&p, n, lspace, body)?;
        let col = lspace + usize::from(is_tag);
        if matches!(l.name.as_str(), "HEAD" | "ROOT") {
            return Err(vec![p.error(
                n,
                col,
                format!(
                    "\"{}{}\" is a reserved name",
                    if is_tag { "@" } else { "" },
                    l.name
                ),
            )]);
        }
        if l.name.len() >= 40
            && l.name[..40]
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(vec![p.error(
                n,
                col,
                format!(
                    "\"{}\" is invalid because it could be confused with a SHA1 ID",
                    l.name
                ),
            )]);
        }
        if is_tag {
            if l.name.contains('/') {
                return Err(vec![p.error(
                    n,
                    col,
                    format!("tag \"{}\" contains illegal character /", l.name),
                )]);
            }
            let Some(last) = changes.last_mut() else {
                return Err(vec![p.error(
                    n,
                    col,
                    format!("tag \"{}\" declared without a preceding change", l.name),
                )]);
            };
            if let Some(at) = tag_lines.get(&l.name) {
                return Err(vec![p.error(
                    n,
                    col,
                    format!(
                        "tag \"{}\" duplicates earlier declaration on line {at}",
                        l.name
                    ),
                )]);
            }
            if l.deps.is_some() {
                return Err(vec![p.error(n, col, "tags may not specify dependencies")]);
            }
            last.tags.push(Tag {
                name: l.name.clone(),
                timestamp: l.timestamp,
                planner_name: l.planner_name,
                planner_email: l.planner_email,
                note,
            });
            tag_lines.insert(l.name, n);
            section_start = changes.len();
            section_names.clear();
            continue;
        }
        if let Some(at) = section_names.get(&l.name) {
            return Err(vec![
                p.error(
                    n,
                    col,
                    format!(
                        "change \"{}\" duplicates earlier declaration on line {at}",
                        l.name
                    ),
                )
                .with_help("a change is reworked only after a tag: `sqitch rework` adds one"),
            ]);
        }
        let (mut requires, mut conflicts) = (Vec::new(), Vec::new());
        if let Some(deps) = &l.deps {
            let mut seen = std::collections::HashSet::new();
            for d in deps.split(is_blank).filter(|d| !d.is_empty()) {
                let Some(dep) = parse_dep(d) else {
                    return Err(vec![p.error(
                        n,
                        col,
                        format!("\"{d}\" is not a valid dependency specification"),
                    )]);
                };
                if !seen.insert(d) {
                    return Err(vec![p.error(
                        n,
                        col,
                        format!("duplicate dependency \"{d}\""),
                    )]);
                }
                if dep.conflicts {
                    conflicts.push(dep);
                } else {
                    requires.push(dep);
                }
            }
        }
        // A required change of this project must come earlier (sqitch's
        // check_changes); `name@tag` must name a change before that tag.
        for dep in requires.iter().filter(|d| d.is_internal(&project)) {
            let Some(change) = &dep.change else { continue };
            let known = match &dep.tag {
                None => by_name.contains_key(change),
                Some(tag) => tag_lines.contains_key(tag) && by_name.contains_key(change),
            };
            if change == &l.name && dep.tag.is_none() {
                return Err(vec![p.error(
                    n,
                    col,
                    format!("change \"{}\" cannot require itself", l.name),
                )]);
            }
            if !known {
                return Err(vec![
                    p.error(
                        n,
                        col,
                        format!(
                            "change \"{}\" requires \"{}\", which is not planned before it",
                            l.name,
                            dep.key()
                        ),
                    )
                    .with_help("move the required change above it in sqitch.plan, or fix the name"),
                ]);
            }
        }
        // A rework: the earlier change's scripts get the tags in between.
        if let Some(&earlier) = by_name.get(&l.name) {
            let mut tags: Vec<String> = Vec::new();
            for c in changes[earlier + 1..section_start].iter().rev() {
                tags.extend(c.tags.iter().map(|t| t.name.clone()));
            }
            tags.extend(changes[earlier].tags.iter().map(|t| t.name.clone()));
            changes[earlier].rework_tags.extend(tags);
        }
        section_names.insert(l.name.clone(), n);
        by_name.insert(l.name.clone(), changes.len());
        changes.push(Change {
            name: l.name,
            line: n,
            requires,
            conflicts,
            timestamp: l.timestamp,
            planner_name: l.planner_name,
            planner_email: l.planner_email,
            note,
            tags: Vec::new(),
            rework_tags: Vec::new(),
        });
    }
    Ok(Plan {
        project,
        uri: pragmas.get("uri").cloned(),
        changes,
    })
}

/// `name [deps] TIMESTAMP Planner <email>` (after a tag's `@`).
fn parse_line(p: &Parser, n: usize, col: usize, body: &str) -> Result<Line, Vec<Diagnostic>> {
    let name_end = body
        .find(|c: char| is_blank(c) || c == '[')
        .unwrap_or(body.len());
    let name = &body[..name_end];
    if !valid_name(name) {
        return Err(vec![
            p.error(n, col, format!("invalid name {name:?}"))
                .with_help(NAME_HELP),
        ]);
    }
    let mut rest = body[name_end..].trim_start_matches(is_blank);
    let mut deps = None;
    if let Some(r) = rest.strip_prefix('[') {
        let Some(close) = r.find(']') else {
            return Err(vec![p.error(
                n,
                col + name_end,
                "unclosed dependency list: `[` without `]`",
            )]);
        };
        deps = Some(r[..close].to_string());
        rest = r[close + 1..].trim_start_matches(is_blank);
    }
    let missing = |what: &str| {
        vec![
            p.error(n, col, format!("change or tag {name:?}: missing {what}"))
                .with_help("a plan line is `name [deps] 2024-01-01T00:00:00Z Your Name <you@example.com> # note`"),
        ]
    };
    let Some(ts_len) = timestamp_len(rest) else {
        return Err(missing("timestamp"));
    };
    let timestamp = rest[..ts_len].to_string();
    let planner = rest[ts_len..].trim_start_matches(is_blank);
    // `(?<name>[^<]+)[[:blank:]]+<(?<email>[^>]+)>`: the name keeps all but
    // the one blank before `<`.
    let (Some(lt), true) = (planner.find('<'), planner.ends_with('>')) else {
        return Err(missing("planner name and email"));
    };
    let before = &planner[..lt];
    let email = &planner[lt + 1..planner.len() - 1];
    let Some(planner_name) = before.strip_suffix([' ', '\t']) else {
        return Err(missing("planner name and email"));
    };
    if planner_name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
        return Err(missing("planner name and email"));
    }
    Ok(Line {
        name: name.to_string(),
        deps,
        timestamp,
        planner_name: planner_name.to_string(),
        planner_email: email.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "%syntax-version=1.0.0\n%project=flipr\n%uri=https://example.com/flipr/\n\n# the app's users\nappschema 2024-01-01T10:00:00Z Marge N. O'Vera <marge@example.com> # Add schema for all flipr objects.\nusers [appschema] 2024-01-02T10:00:00Z Marge N. O'Vera <marge@example.com> # Creates table to track our users.\n@v1.0 2024-01-03T10:00:00Z Marge N. O'Vera <marge@example.com> # Tag v1.0.\n\nusers [users@v1.0 !other:thing] 2024-01-04T10:00:00Z Marge N. O'Vera <marge@example.com> # Adds twitter column.\n";

    #[test]
    fn a_plan_with_a_tag_and_a_rework_is_read_as_sqitch_reads_it() {
        let plan = parse(Path::new("sqitch.plan"), PLAN).unwrap();
        assert_eq!(plan.project, "flipr");
        assert_eq!(plan.uri.as_deref(), Some("https://example.com/flipr/"));
        let names: Vec<&str> = plan.changes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["appschema", "users", "users"]);
        let users = &plan.changes[1];
        assert_eq!(users.planner_name, "Marge N. O'Vera");
        assert_eq!(users.planner_email, "marge@example.com");
        assert_eq!(users.note, "Creates table to track our users.");
        assert_eq!(users.tags[0].name, "v1.0");
        assert_eq!(users.rework_tags, ["v1.0"]);
        let again = &plan.changes[2];
        assert_eq!(again.requires[0].key(), "users@v1.0");
        assert_eq!(again.conflicts[0].as_string("flipr"), "other:thing");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let bad =
            "%project=p\n\na 2024-01-01T00:00:00Z A <a@x>\n  b [zz] 2024-01-01T00:00:00Z A <a@x>\n";
        let e = parse(Path::new("sqitch.plan"), bad).unwrap_err();
        let text = e[0].to_string();
        assert!(
            text.contains("sqitch.plan:4:3: error: change \"b\" requires \"zz\""),
            "{text}"
        );
        let no_ts = "%project=p\n\na A <a@x>\n";
        let e = parse(Path::new("sqitch.plan"), no_ts).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("sqitch.plan:3:1: error: change or tag \"a\": missing timestamp"),
            "{}",
            e[0]
        );
        let dup = "%project=p\n\na 2024-01-01T00:00:00Z A <a@x>\na 2024-01-01T00:00:00Z A <a@x>\n";
        let e = parse(Path::new("sqitch.plan"), dup).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("4:1: error: change \"a\" duplicates earlier declaration on line 3"),
            "{}",
            e[0]
        );
        let e = parse(Path::new("sqitch.plan"), "a 2024-01-01T00:00:00Z A <a@x>\n").unwrap_err();
        assert!(
            e[0].to_string().contains("1:1: error: invalid pragma"),
            "{}",
            e[0]
        );
    }
}
