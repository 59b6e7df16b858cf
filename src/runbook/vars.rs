//! `{{name}}` variables: values captured by earlier steps, substituted into later SQL.

use std::collections::HashMap;

/// One `{{name}}` in a text, with its byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    pub name: String,
    pub start: usize,
    pub end: usize,
}

/// A `{{` without its closing `}}`, or a name that is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub offset: usize,
    pub message: String,
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `{{name}}` in `text`, in order.
pub fn references(text: &str) -> Result<Vec<VarRef>, VarError> {
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let Some(close) = text[open + 2..].find("}}").map(|i| i + open + 2) else {
            return Err(VarError {
                offset: open,
                message: "`{{` without a closing `}}`".into(),
            });
        };
        let name = text[open + 2..close].trim();
        if !is_identifier(name) {
            return Err(VarError {
                offset: open,
                message: format!(
                    "`{{{{{name}}}}}` is not a variable name: use letters, digits and _, e.g. {{{{rows_before}}}}"
                ),
            });
        }
        refs.push(VarRef {
            name: name.to_string(),
            start: open,
            end: close + 2,
        });
        from = close + 2;
    }
    Ok(refs)
}

/// The text with each `{{name}}` replaced by a quoted identifier of the same
/// length, so it parses wherever a value, a name or string content can stand
/// and every byte offset after it stays where it was.
pub fn placeholder_text(text: &str) -> String {
    let Ok(refs) = references(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in refs {
        out.push_str(&text[last..r.start]);
        let width = r.end - r.start;
        out.push('"');
        let inner: String = r
            .name
            .chars()
            .chain(std::iter::repeat('_'))
            .take(width - 2)
            .collect();
        out.push_str(&inner);
        out.push('"');
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// The text with each `{{name}}` replaced by its captured value. A missing
/// value is an error naming it.
pub fn substitute(text: &str, values: &HashMap<String, String>) -> Result<String, String> {
    let refs = references(text).map_err(|e| e.message)?;
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in refs {
        out.push_str(&text[last..r.start]);
        let value = values
            .get(&r.name)
            .ok_or_else(|| format!("variable {{{{{}}}}} has no value yet", r.name))?;
        out.push_str(value);
        last = r.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references_with_positions() {
        let refs = references("SELECT {{a}} = {{ rows_before }}").unwrap();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].name, "a");
        assert_eq!((refs[0].start, refs[0].end), (7, 12));
        assert_eq!(refs[1].name, "rows_before");
    }

    #[test]
    fn rejects_unclosed_and_bad_names() {
        assert!(references("SELECT {{a").is_err());
        assert!(references("SELECT {{1x}}").is_err());
    }

    #[test]
    fn placeholders_keep_length_and_parse() {
        let text = "SELECT count(*) = {{rows_before}} FROM t WHERE x = '{{v}}'";
        let p = placeholder_text(text);
        assert_eq!(p.len(), text.len());
        assert!(pg_query::parse(&p, 0).is_ok(), "{p}");
    }

    #[test]
    fn substitutes_values() {
        let values = HashMap::from([("n".to_string(), "42".to_string())]);
        assert_eq!(substitute("SELECT {{n}}", &values).unwrap(), "SELECT 42");
        assert!(substitute("SELECT {{m}}", &values).is_err());
    }
}
