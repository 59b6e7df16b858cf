//! What a statement leaves for a look at the target's catalog (`check --db`):
//! the column types it changes and the objects it drops. And the rule,
//! from PostgreSQL's own, for when a type change rewrites nothing.

use super::RelationName;

/// `ALTER COLUMN … TYPE`: the column and the type it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retype {
    pub table: RelationName,
    pub column: String,
    /// The target type's internal name (`numeric`, `varchar`, `text`, `int8`).
    pub to: String,
    /// Its modifiers as written: `numeric(12,2)` → [12, 2], `varchar(20)` → [20].
    pub to_mods: Vec<i64>,
    /// A USING clause: pgpilot cannot tell what it computes, so it rewrites.
    pub using: bool,
}

/// What a DROP names, for finding what depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub kind: DropKind,
    /// The name as `to_regclass` / `to_regprocedure` / `to_regproc` read it.
    pub lookup: String,
    pub cascade: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// A table, view, materialized view or sequence.
    Relation,
    /// A function or procedure with its argument types.
    Routine,
    /// A function or procedure named without arguments (one of that name).
    RoutineByName,
}

/// A column type as the catalog has it: `pg_type.typname` and `atttypmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub name: String,
    pub typmod: i32,
}

/// Whether changing a column of type `from` to `r.to` keeps every stored
/// value's bytes, so PostgreSQL rewrites nothing (ALTER TABLE docs: "when
/// the old type is either binary coercible to the new type or an
/// unconstrained domain over the new type, a table rewrite is not needed";
/// varchar_support and numeric_support in varchar.c and numeric.c decide
/// the length and precision changes). Anything not listed here counts as a
/// rewrite.
pub fn rewrites_nothing(from: &ColumnType, r: &Retype) -> bool {
    if r.using {
        return false;
    }
    // typmod: varchar(n) stores n + 4; numeric(p,s) stores (p << 16 | s) + 4.
    let from_mod = (from.typmod >= 4).then(|| from.typmod - 4);
    match (from.name.as_str(), r.to.as_str(), r.to_mods.as_slice()) {
        ("varchar" | "text", "text", []) => true,
        ("varchar" | "text", "varchar", []) => true,
        ("varchar", "varchar", [n]) => from_mod.is_some_and(|m| i64::from(m) <= *n),
        ("numeric", "numeric", []) => true,
        ("numeric", "numeric", mods) => {
            let (p2, s2) = match mods {
                [p] => (*p, 0),
                [p, s] => (*p, *s),
                _ => return false,
            };
            from_mod.is_some_and(|m| {
                let (p, s) = (i64::from(m >> 16), i64::from(m & 0xffff));
                s2 == s && p2 >= p
            })
        }
        _ => false,
    }
}

/// A type as SQL writes it, for messages: `numeric(12,2)`, `varchar(20)`.
pub fn shown(name: &str, mods: &[i64]) -> String {
    let name = match name {
        "int4" => "integer",
        "int8" => "bigint",
        "int2" => "smallint",
        "float8" => "double precision",
        other => other,
    };
    if mods.is_empty() {
        name.to_string()
    } else {
        let mods: Vec<String> = mods.iter().map(i64::to_string).collect();
        format!("{name}({})", mods.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(name: &str, mods: &[i64]) -> Retype {
        Retype {
            table: RelationName::new(None, "t"),
            column: "c".into(),
            to: name.into(),
            to_mods: mods.to_vec(),
            using: false,
        }
    }

    fn numeric(p: i32, s: i32) -> ColumnType {
        ColumnType {
            name: "numeric".into(),
            typmod: ((p << 16) | s) + 4,
        }
    }

    #[test]
    fn numeric_widening_with_the_same_scale_rewrites_nothing() {
        assert!(rewrites_nothing(&numeric(10, 2), &to("numeric", &[12, 2])));
        assert!(rewrites_nothing(&numeric(10, 2), &to("numeric", &[10, 2])));
        assert!(rewrites_nothing(&numeric(10, 2), &to("numeric", &[])));
        assert!(rewrites_nothing(&numeric(10, 0), &to("numeric", &[12])));
        // A narrower precision or another scale changes values: rewritten.
        assert!(!rewrites_nothing(&numeric(10, 2), &to("numeric", &[8, 2])));
        assert!(!rewrites_nothing(&numeric(10, 2), &to("numeric", &[12, 3])));
        let unconstrained = ColumnType {
            name: "numeric".into(),
            typmod: -1,
        };
        assert!(!rewrites_nothing(&unconstrained, &to("numeric", &[12, 2])));
        let int = ColumnType {
            name: "int4".into(),
            typmod: -1,
        };
        assert!(!rewrites_nothing(&int, &to("numeric", &[])));
    }

    #[test]
    fn varchar_lengthening_rewrites_nothing_shortening_does() {
        let v = |n: i32| ColumnType {
            name: "varchar".into(),
            typmod: n + 4,
        };
        assert!(rewrites_nothing(&v(10), &to("varchar", &[20])));
        assert!(rewrites_nothing(&v(10), &to("text", &[])));
        assert!(!rewrites_nothing(&v(20), &to("varchar", &[10])));
        let mut using = to("text", &[]);
        using.using = true;
        assert!(!rewrites_nothing(&v(10), &using));
    }
}
