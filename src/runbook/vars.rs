//! `{{name}}` variables: values captured by earlier steps, used in later SQL.
//!
//! A captured value comes from the database, and a row can be written by
//! anyone: it is data, never SQL. In SQL a reference becomes exactly one
//! token — a string literal (the default), a quoted identifier
//! (`{{name:ident}}`) or a checked number (`{{name:number}}`) — so no value
//! can end a literal, add a statement, open a comment or commit a
//! transaction. Where the reference may stand is decided with PostgreSQL's
//! own scanner: as a token of its own, or alone inside a string literal
//! (`'{{name}}'`, the form older runbooks used, which becomes the same one
//! literal). Inside a longer literal, a dollar-quoted body, a quoted
//! identifier or a comment it is an error at `check`.

use std::collections::HashMap;

use pg_query::protobuf::Token;

/// How a reference's value is written into SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarForm {
    /// `{{name}}`: one string literal (`'it''s'`); PostgreSQL casts it to
    /// whatever type the place needs, like a literal written by hand.
    Literal,
    /// `{{name:ident}}`: one quoted identifier (`"Orders"`).
    Ident,
    /// `{{name:number}}`: a number, checked to be one (`42`, `-1.5e3`).
    Number,
}

impl VarForm {
    fn parse(s: &str) -> Option<VarForm> {
        match s {
            "literal" => Some(VarForm::Literal),
            "ident" => Some(VarForm::Ident),
            "number" => Some(VarForm::Number),
            _ => None,
        }
    }
}

/// One `{{name}}` (or `{{name:form}}`) in a text, with its byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarRef {
    pub name: String,
    pub form: VarForm,
    pub start: usize,
    pub end: usize,
}

/// A `{{` without its closing `}}`, a name that is not an identifier, or a
/// reference where a value cannot stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
    /// The scanner could not read the text (an unterminated literal): a
    /// syntax error the analysis reports at its own place.
    pub unreadable: bool,
}

impl VarError {
    fn at(offset: usize, message: impl Into<String>) -> VarError {
        VarError {
            offset,
            message: message.into(),
            help: None,
            unreadable: false,
        }
    }

    fn with_help(mut self, help: impl Into<String>) -> VarError {
        self.help = Some(help.into());
        self
    }
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
            return Err(VarError::at(open, "`{{` without a closing `}}`"));
        };
        let inner = &text[open + 2..close];
        let (name, form) = match inner.split_once(':') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (inner.trim(), None),
        };
        if !is_identifier(name) {
            return Err(VarError::at(
                open,
                format!(
                    "`{{{{{inner}}}}}` is not a variable name: use letters, digits and _, e.g. {{{{rows_before}}}}"
                ),
            ));
        }
        let form = match form {
            None => VarForm::Literal,
            Some(f) => VarForm::parse(f).ok_or_else(|| {
                VarError::at(open, format!("`{f}` is not a form of {{{{{name}}}}}"))
                    .with_help(format!(
                        "write {{{{{name}}}}} for a literal, {{{{{name}:ident}}}} for an identifier or {{{{{name}:number}}}} for a number"
                    ))
            })?,
        };
        refs.push(VarRef {
            name: name.to_string(),
            form,
            start: open,
            end: close + 2,
        });
        from = close + 2;
    }
    Ok(refs)
}

/// The text with each `{{name}}` replaced by a quoted identifier of the same
/// length (`{{n}}` → `"{n}"`), so it parses wherever a value, a name or
/// string content can stand, every byte offset after it stays where it was,
/// and a name shown from it still says which variable it is.
pub fn placeholder_text(text: &str) -> String {
    let Ok(refs) = references(text) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in refs {
        out.push_str(&text[last..r.start]);
        out.push('"');
        // `{{ … }}` less one brace each side; a `"` cannot occur in a valid reference.
        out.push_str(&text[r.start + 1..r.end - 1]);
        out.push('"');
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// SQL text for the analysis: like [`placeholder_text`], but a reference
/// that will be a literal or a number is a string literal of the same length
/// (`{{n}}` → `'{n}'`), so it parses also where the grammar takes only a
/// literal (`COMMENT … IS {{note}}`). Where the references cannot be placed,
/// the identifier placeholders (the placement error is reported by `check`).
pub fn analysis_text(text: &str) -> String {
    let Ok(places) = placements(text) else {
        return placeholder_text(text);
    };
    let mut out = placeholder_text(text);
    for p in places {
        let bare = p.start == p.var.start;
        if bare && p.var.form != VarForm::Ident {
            // Same length: one quote each side instead of one brace.
            out.replace_range(p.start..p.start + 1, "'");
            out.replace_range(p.end - 1..p.end, "'");
        }
    }
    out
}

/// Where a reference stands in SQL, as PostgreSQL's scanner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub var: VarRef,
    /// The bytes the value replaces: the reference itself, or with the
    /// quotes around it for the older `'{{name}}'`.
    pub start: usize,
    pub end: usize,
}

/// Every reference in SQL `text` with the bytes its value will replace, or
/// the first reference that stands where a value cannot.
pub fn placements(text: &str) -> Result<Vec<Placement>, VarError> {
    let refs = references(text)?;
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let parsable = placeholder_text(text);
    // A text the scanner rejects (an unterminated literal) is a syntax error
    // that the analysis reports at its place; nothing is substituted into it.
    let tokens = pg_query::scan_tokens(&parsable).map_err(|e| VarError {
        unreadable: true,
        ..VarError::at(
            refs[0].start,
            format!(
                "the SQL around {{{{{}}}}} cannot be read: {e}",
                refs[0].name
            ),
        )
    })?;
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let token = tokens.iter().find(|t| {
            let (s, e) = (t.start as usize, t.end as usize);
            s <= r.start && r.end <= e
        });
        let Some(t) = token else {
            return Err(VarError::at(r.start, "a variable outside any SQL token"));
        };
        let (s, e) = (t.start as usize, t.end as usize);
        let kind = Token::try_from(t.token).ok();
        let placement = match kind {
            // The placeholder is a token of its own: a bare reference, not
            // glued to a prefix that would change what its quotes mean
            // (`E{{v}}`, `U&{{v}}`, `x{{v}}`).
            Some(Token::Ident) if s == r.start && e == r.end && !glued(text, r.start) => {
                Placement {
                    start: r.start,
                    end: r.end,
                    var: r,
                }
            }
            // `'{{name}}'`: the whole literal is the value.
            Some(Token::Sconst)
                if s + 1 == r.start
                    && e == r.end + 1
                    && text.as_bytes().get(s) == Some(&b'\'')
                    && text.as_bytes().get(r.end) == Some(&b'\'') =>
            {
                if r.form != VarForm::Literal {
                    return Err(VarError::at(
                        r.start,
                        format!("{{{{{}}}}} is not a literal but stands inside quotes", r.name),
                    )
                    .with_help(format!(
                        "remove the quotes around {{{{{}:…}}}}: it is written as one identifier or number of its own",
                        r.name
                    )));
                }
                Placement {
                    start: s,
                    end: e,
                    var: r,
                }
            }
            Some(Token::SqlComment | Token::CComment) => {
                return Err(VarError::at(
                    r.start,
                    format!("{{{{{}}}}} stands inside a comment", r.name),
                )
                .with_help("values are never put into comments; remove the reference or move it out of the comment"));
            }
            Some(Token::Sconst | Token::Usconst) => {
                return Err(VarError::at(
                    r.start,
                    format!(
                        "{{{{{}}}}} stands inside a longer string literal or a dollar-quoted body",
                        r.name
                    ),
                )
                .with_help(format!(
                    "a value is one literal of its own: write {{{{{0}}}}} outside the quotes, e.g. 'prefix ' || {{{{{0}}}}}, or ({{{{{0}}}}} || ' minutes')::interval",
                    r.name
                )));
            }
            _ => {
                return Err(VarError::at(
                    r.start,
                    format!("{{{{{}}}}} is part of a larger name or token", r.name),
                )
                .with_help(format!(
                    "write the reference as a token of its own: {{{{{0}}}}} for a literal, {{{{{0}:ident}}}} for a whole identifier",
                    r.name
                )));
            }
        };
        out.push(placement);
    }
    Ok(out)
}

/// Whether the byte before `at` would fuse with a literal starting there.
fn glued(text: &str, at: usize) -> bool {
    at > 0
        && text.as_bytes().get(at - 1).is_some_and(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'&') || *b >= 0x80
        })
}

/// A value as one SQL string literal, like PostgreSQL's `quote_literal`:
/// quotes doubled, and with a backslash an `E''` literal with backslashes
/// doubled, so it reads the same whatever standard_conforming_strings is.
pub fn quote_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// A value as one quoted identifier, like PostgreSQL's `quote_ident` but
/// always quoted.
pub fn quote_ident(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// `value` if it is a plain decimal number (sign, digits, one point, an
/// exponent), parenthesised when negative so that `x -{{n}}` cannot become
/// a comment.
fn checked_number(value: &str) -> Option<String> {
    let v = value.trim();
    let (negative, digits) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (digits, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()))
        && exponent.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        });
    ok.then(|| {
        if negative {
            format!("(-{digits})")
        } else {
            digits.to_string()
        }
    })
}

/// Why a value could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubstituteError {
    /// The reference stands where no value may (see [`placements`]).
    Placement(VarError),
    /// No earlier step captured it yet.
    Missing(String),
    /// `{{name:number}}` whose value is not a number.
    NotANumber { name: String, value: String },
    /// `{{name:ident}}` whose value is empty: no identifier is.
    EmptyIdent(String),
    /// A NUL byte cannot be sent to PostgreSQL.
    Nul(String),
}

impl std::fmt::Display for SubstituteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubstituteError::Placement(e) => f.write_str(&e.message),
            SubstituteError::Missing(n) => write!(f, "variable {{{{{n}}}}} has no value yet"),
            SubstituteError::NotANumber { name, value } => write!(
                f,
                "variable {{{{{name}:number}}}} holds {value:?}, which is not a number"
            ),
            SubstituteError::Nul(n) => write!(f, "variable {{{{{n}}}}} holds a NUL byte"),
            SubstituteError::EmptyIdent(n) => write!(
                f,
                "variable {{{{{n}:ident}}}} is empty, and an identifier cannot be"
            ),
        }
    }
}

/// SQL `text` with each reference replaced by its value as one token.
pub fn substitute_sql(
    text: &str,
    values: &HashMap<String, String>,
) -> Result<String, SubstituteError> {
    let places = placements(text).map_err(SubstituteError::Placement)?;
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in places {
        out.push_str(&text[last..p.start]);
        let name = &p.var.name;
        let value = values
            .get(name)
            .ok_or_else(|| SubstituteError::Missing(name.clone()))?;
        if value.contains('\0') {
            return Err(SubstituteError::Nul(name.clone()));
        }
        let token = match p.var.form {
            VarForm::Literal => quote_literal(value),
            VarForm::Ident if value.is_empty() => {
                return Err(SubstituteError::EmptyIdent(name.clone()));
            }
            VarForm::Ident => quote_ident(value),
            VarForm::Number => {
                checked_number(value).ok_or_else(|| SubstituteError::NotANumber {
                    name: name.clone(),
                    value: value.clone(),
                })?
            }
        };
        out.push_str(&token);
        last = p.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Plain text (an `expect.scalar`, compared as text, never run) with each
/// `{{name}}` replaced by its value as it is.
pub fn substitute_plain(text: &str, values: &HashMap<String, String>) -> Result<String, String> {
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

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn finds_references_with_positions_and_forms() {
        let refs = references("SELECT {{a}} = {{ rows_before }} FROM {{t : ident}}").unwrap();
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[0].name, "a");
        assert_eq!((refs[0].start, refs[0].end), (7, 12));
        assert_eq!(refs[1].name, "rows_before");
        assert_eq!(refs[1].form, VarForm::Literal);
        assert_eq!(refs[2].form, VarForm::Ident);
    }

    #[test]
    fn rejects_unclosed_bad_names_and_unknown_forms() {
        assert!(references("SELECT {{a").is_err());
        assert!(references("SELECT {{1x}}").is_err());
        let e = references("SELECT {{a:sql}}").unwrap_err();
        assert!(e.message.contains("not a form"), "{}", e.message);
    }

    #[test]
    fn placeholders_keep_length_and_parse() {
        let text = "SELECT count(*) = {{rows_before}} FROM {{t:ident}} WHERE x = '{{v}}'";
        let p = placeholder_text(text);
        assert_eq!(p.len(), text.len());
        assert!(pg_query::parse(&p, 0).is_ok(), "{p}");
        assert!(p.contains("\"{t:ident}\""), "{p}");
    }

    #[test]
    fn analysis_text_parses_where_only_a_literal_may_stand() {
        let text = "COMMENT ON TABLE {{t:ident}} IS {{note}}; SELECT '{{s}}' LIMIT {{n:number}}";
        let a = analysis_text(text);
        assert_eq!(a.len(), text.len());
        assert!(pg_query::parse(&a, 0).is_ok(), "{a}");
        assert!(pg_query::parse(&placeholder_text(text), 0).is_err());
    }

    #[test]
    fn a_value_is_one_literal_whatever_it_holds() {
        let hostile = "shipped'); DROP TABLE victims; ALTER ROLE mallory SUPERUSER; --";
        let v = values(&[("s", hostile)]);
        for sql in [
            "UPDATE t SET a = 1 WHERE status = {{s}}",
            "UPDATE t SET a = 1 WHERE status = '{{s}}'",
        ] {
            let out = substitute_sql(sql, &v).unwrap();
            let parsed = pg_query::parse(&out, 0).unwrap();
            assert_eq!(parsed.protobuf.stmts.len(), 1, "{out}");
            assert!(
                out.ends_with("'shipped''); DROP TABLE victims; ALTER ROLE mallory SUPERUSER; --'"),
                "{out}"
            );
        }
    }

    #[test]
    fn backslashes_make_an_escape_literal() {
        assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
        assert_eq!(quote_literal("plain"), "'plain'");
        let v = values(&[("x", "x\\'); COMMIT; --")]);
        let out = substitute_sql("SELECT {{x}}", &v).unwrap();
        assert_eq!(pg_query::parse(&out, 0).unwrap().protobuf.stmts.len(), 1);
    }

    #[test]
    fn identifiers_and_numbers() {
        let v = values(&[("t", "my\"table"), ("n", "-5"), ("bad", "1; DROP TABLE t")]);
        assert_eq!(
            substitute_sql("DROP TABLE {{t:ident}}", &v).unwrap(),
            "DROP TABLE \"my\"\"table\""
        );
        assert_eq!(
            substitute_sql("SELECT x -{{n:number}}", &v).unwrap(),
            "SELECT x -(-5)"
        );
        assert!(matches!(
            substitute_sql("SELECT {{bad:number}}", &v),
            Err(SubstituteError::NotANumber { .. })
        ));
        for ok in ["0", "42", "1.5", ".5", "1e10", "-2.5E-3", "+7"] {
            assert!(checked_number(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "-", ".", "1e", "1.2.3", "0x10", "1 2", "NaN", "1--", "e5",
        ] {
            assert!(checked_number(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn references_where_no_value_may_stand_are_errors() {
        for sql in [
            "SELECT 'status: {{s}}'",
            "SELECT E'{{s}}'",
            "SELECT $$ {{s}} $$",
            "SELECT 1 -- {{s}}",
            "SELECT 1 /* {{s}} */",
            "SELECT * FROM t_{{s}}",
            "SELECT '{{s:ident}}'",
            "SELECT E{{s}}",
            "SELECT U&{{s}}",
            "SELECT x{{s}}",
        ] {
            assert!(placements(sql).is_err(), "{sql}");
        }
        assert!(placements("SELECT {{s}}, '{{s}}', {{s:ident}}.x").is_ok());
    }

    #[test]
    fn missing_values_are_named() {
        let e = substitute_sql("SELECT {{m}}", &HashMap::new()).unwrap_err();
        assert_eq!(e.to_string(), "variable {{m}} has no value yet");
    }

    #[test]
    fn plain_text_is_substituted_as_is() {
        let v = values(&[("n", "42")]);
        assert_eq!(substitute_plain("{{n}}", &v).unwrap(), "42");
    }
}
