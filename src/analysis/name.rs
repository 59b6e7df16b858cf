//! Relation names as PostgreSQL holds them: each part exactly as stored in
//! the catalog (case, dots and quotes kept), written back in SQL's quoted
//! form, so that one string is right on the screen, in `to_regclass($1)` and
//! in SQL pgpilot generates.

use std::fmt;
use std::str::FromStr;

use pg_query::protobuf::KeywordKind;
use serde::{Serialize, Serializer};

/// A relation (table, index, view, sequence …) named as a statement names it:
/// an optional schema and the name, both already folded by the parser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationName {
    schema: Option<String>,
    name: String,
}

impl RelationName {
    pub fn new(schema: Option<&str>, name: &str) -> RelationName {
        RelationName {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// From a parser's name list (`[name]`, `[schema, name]` or
    /// `[catalog, schema, name]`; the catalog can only be the current database).
    pub fn from_parts<S: AsRef<str>>(parts: &[S]) -> Option<RelationName> {
        match parts {
            [name] => Some(RelationName::new(None, name.as_ref())),
            [.., schema, name] => Some(RelationName::new(Some(schema.as_ref()), name.as_ref())),
            [] => None,
        }
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The SQL form: `public."Orders"`, `"my.table"`, `orders`.
impl fmt::Display for RelationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", quote_ident(schema))?;
        }
        f.write_str(&quote_ident(&self.name))
    }
}

/// Serialized as its SQL form, a plain string (plan JSON's `relations`).
impl Serialize for RelationName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why text is not a `[schema.]name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}` is not a relation name: a part is empty; write [schema.]name")]
    EmptyPart(String),
    #[error("`{0}` is not a relation name: a quoted part has no closing `\"`")]
    Unterminated(String),
    #[error(
        "`{0}` is not a relation name: it has more than two parts; write [schema.]name, quoting a part that holds a dot"
    )]
    TooManyParts(String),
    #[error(
        "`{0}` is not a relation name: a part has text after its closing quote; double a quote inside a quoted part (\"a\"\"b\")"
    )]
    AfterQuote(String),
    #[error("`{0}` is not a relation name: an unquoted part holds a space; quote that part")]
    Space(String),
}

/// Reads the SQL form back as PostgreSQL does (`SplitIdentifierString`): a
/// quoted part is taken as written (`""` is one `"`, a dot inside is part of
/// the name), an unquoted one is folded to lower case.
impl FromStr for RelationName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<RelationName, NameError> {
        let mut parts: Vec<String> = Vec::new();
        let mut chars = text.trim().chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(NameError::Unterminated(text.to_string())),
                    }
                }
                if !matches!(chars.peek(), None | Some('.')) {
                    return Err(NameError::AfterQuote(text.to_string()));
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != '.') {
                    part.push(c.to_ascii_lowercase());
                }
                part = part.trim().to_string();
                if part.contains(char::is_whitespace) {
                    return Err(NameError::Space(text.to_string()));
                }
            }
            if part.is_empty() {
                return Err(NameError::EmptyPart(text.to_string()));
            }
            parts.push(part);
            if chars.next().is_none() {
                break;
            }
        }
        match parts.as_slice() {
            [name] => Ok(RelationName::new(None, name)),
            [schema, name] => Ok(RelationName::new(Some(schema), name)),
            _ => Err(NameError::TooManyParts(text.to_string())),
        }
    }
}

/// One identifier in SQL form: as it is when PostgreSQL would read it back
/// unchanged (lower case, no special characters, not a reserved keyword),
/// quoted otherwise. The rule of PostgreSQL's `quote_ident()`.
pub fn quote_ident(part: &str) -> String {
    if is_plain(part) && !is_reserved_word(part) {
        part.to_string()
    } else {
        format!("\"{}\"", part.replace('"', "\"\""))
    }
}

/// `[a-z_][a-z0-9_$]*`: what the scanner reads as this very identifier.
fn is_plain(part: &str) -> bool {
    let mut bytes = part.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$')
}

/// A keyword that cannot stand for a name everywhere (only unreserved ones
/// can), as PostgreSQL's own scanner classifies it.
fn is_reserved_word(part: &str) -> bool {
    // No keyword is this long (the longest, "current_timestamp", has 17
    // characters; the margin is for new ones): a longer name
    // needs no scan (names are rendered for every lock of every statement).
    const LONGEST_KEYWORD: usize = 24;
    if part.len() > LONGEST_KEYWORD {
        return false;
    }
    // A runbook names the same few relations again and again; the scanner
    // is asked once per name and thread.
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashMap<String, bool>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    if let Some(known) = SEEN.with(|seen| seen.borrow().get(part).copied()) {
        return known;
    }
    let reserved = scan_reserved(part);
    SEEN.with(|seen| seen.borrow_mut().insert(part.to_string(), reserved));
    reserved
}

fn scan_reserved(part: &str) -> bool {
    match pg_query::scan_tokens(part) {
        Ok(tokens) => match tokens.as_slice() {
            [token] => !matches!(
                KeywordKind::try_from(token.keyword_kind),
                Ok(KeywordKind::NoKeyword | KeywordKind::UnreservedKeyword)
            ),
            _ => true,
        },
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> RelationName {
        let name: RelationName = text.parse().unwrap();
        assert_eq!(name.to_string(), text, "{name:?}");
        name
    }

    #[test]
    fn quoted_names_round_trip_with_their_exact_parts() {
        let orders = round_trip("public.\"Orders\"");
        assert_eq!((orders.schema(), orders.name()), (Some("public"), "Orders"));
        let dotted = round_trip("\"my.table\"");
        assert_eq!((dotted.schema(), dotted.name()), (None, "my.table"));
        let quote = round_trip("\"a\"\"b\"");
        assert_eq!(quote.name(), "a\"b");
        let mixed = round_trip("\"Sales\".line_items");
        assert_eq!(
            (mixed.schema(), mixed.name()),
            (Some("Sales"), "line_items")
        );
        let both = round_trip("\"my.schema\".\"T 1\"");
        assert_eq!((both.schema(), both.name()), (Some("my.schema"), "T 1"));
        round_trip("orders");
        round_trip("s.t_1$x");
    }

    #[test]
    fn unquoted_text_folds_to_lower_case_as_postgresql_does() {
        let n: RelationName = "Public.Orders".parse().unwrap();
        assert_eq!(n, RelationName::new(Some("public"), "orders"));
        assert_eq!(n.to_string(), "public.orders");
    }

    #[test]
    fn reserved_words_and_odd_characters_are_quoted_unreserved_words_are_not() {
        assert_eq!(RelationName::new(None, "user").to_string(), "\"user\"");
        assert_eq!(RelationName::new(None, "order").to_string(), "\"order\"");
        // Unreserved keywords read back as names (PostgreSQL's quote_ident agrees).
        assert_eq!(RelationName::new(None, "copy").to_string(), "copy");
        assert_eq!(RelationName::new(None, "data").to_string(), "data");
        assert_eq!(RelationName::new(None, "1st").to_string(), "\"1st\"");
        assert_eq!(RelationName::new(None, "été").to_string(), "\"été\"");
        assert_eq!(RelationName::new(None, "").to_string(), "\"\"");
        let user = round_trip("\"user\"");
        assert_eq!(user.name(), "user");
    }

    #[test]
    fn malformed_names_are_refused_with_the_remedy() {
        for bad in [
            "", "a.", ".a", "\"open", "a.b.c", "\"a\"b", "\"\"", "my table",
        ] {
            let e = bad.parse::<RelationName>().unwrap_err();
            assert!(e.to_string().contains("not a relation name"), "{bad}: {e}");
        }
    }

    #[test]
    fn parser_name_lists_keep_schema_and_name() {
        assert_eq!(
            RelationName::from_parts(&["db", "s", "T"]),
            Some(RelationName::new(Some("s"), "T"))
        );
        assert_eq!(
            RelationName::from_parts(&["t"]),
            Some(RelationName::new(None, "t"))
        );
        assert_eq!(RelationName::from_parts::<&str>(&[]), None);
    }

    #[test]
    fn serialized_as_its_sql_form() {
        let json = serde_json::to_string(&RelationName::new(Some("public"), "Orders")).unwrap();
        assert_eq!(json, r#""public.\"Orders\"""#);
    }
}
