//! sqitch's ids of changes and tags: SHA-1 over the object's "info" text,
//! git-style (`change LEN\0INFO`), as App::Sqitch::Plan::Change/Tag compute
//! them. The registry keys deployed changes by this id, so pgpilot's rows
//! must carry the same one for `sqitch status` to agree.

use sha1::{Digest, Sha1};

use super::plan::{Change, Plan, Tag};

fn sha1_of(kind: &str, info: &str) -> String {
    let mut h = Sha1::new();
    h.update(format!("{kind} {}\0", info.len()).as_bytes());
    h.update(info.as_bytes());
    hex::encode(h.finalize())
}

fn head(plan: &Plan) -> Vec<String> {
    let mut lines = vec![format!("project {}", plan.project)];
    if let Some(uri) = &plan.uri {
        lines.push(format!("uri {uri}"));
    }
    lines
}

/// The change's id; `parent` is the id of the change before it in the plan.
pub fn change_id(plan: &Plan, change: &Change, parent: Option<&str>) -> String {
    let mut lines = head(plan);
    lines.push(format!("change {}", change.name));
    if let Some(p) = parent {
        lines.push(format!("parent {p}"));
    }
    lines.push(format!(
        "planner {} <{}>",
        change.planner_name, change.planner_email
    ));
    lines.push(format!("date {}", change.timestamp));
    let deps = |list: &[super::plan::Dep], sign: &str| {
        list.iter()
            .map(|d| d.as_string(&plan.project))
            .collect::<Vec<_>>()
            .join(&format!("\n  {sign} "))
    };
    if !change.requires.is_empty() {
        lines.push(format!("requires\n  + {}", deps(&change.requires, "+")));
    }
    if !change.conflicts.is_empty() {
        lines.push(format!("conflicts\n  - {}", deps(&change.conflicts, "-")));
    }
    if !change.note.is_empty() {
        lines.push(String::new());
        lines.push(change.note.clone());
    }
    sha1_of("change", &lines.join("\n"))
}

/// The tag's id; `change_id` is the id of the change it follows.
pub fn tag_id(plan: &Plan, tag: &Tag, change_id: &str) -> String {
    let mut lines = head(plan);
    lines.push(format!("tag @{}", tag.name));
    lines.push(format!("change {change_id}"));
    lines.push(format!(
        "planner {} <{}>",
        tag.planner_name, tag.planner_email
    ));
    lines.push(format!("date {}", tag.timestamp));
    if !tag.note.is_empty() {
        lines.push(String::new());
        lines.push(tag.note.clone());
    }
    sha1_of("tag", &lines.join("\n"))
}

/// SHA-1 of a deploy script's bytes (`script_hash` in the registry).
pub fn script_hash(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids `sqitch plan --format 'format:%H %n'` (sqitch 1.3.1) prints
    /// for the fixture's plan (a non-ASCII planner, a tag, dependencies and
    /// a reworked change), and the tag id `sqitch deploy` recorded.
    #[test]
    fn change_ids_are_the_ones_sqitch_computes() {
        let text = include_str!("../../../tests/fixtures/migrations/sqitch/sqitch.plan");
        let plan = super::super::plan::parse(std::path::Path::new("sqitch.plan"), text).unwrap();
        let mut parent: Option<String> = None;
        let mut got = Vec::new();
        for c in &plan.changes {
            let id = change_id(&plan, c, parent.as_deref());
            got.push(format!("{id} {}", c.name));
            parent = Some(id);
        }
        assert_eq!(
            got,
            [
                "b0abab461cd62cce57efc7f05b73bd1887a13be5 appschema",
                "3cd05d8e91ab0396bcff05548668b5cf23585940 users",
                "9fae46beb0cf8d3d0cf9a14e3a069468b0a27759 email_index",
                "57974d3d4db69b526a418c0ac2ca327d266b225d users",
            ]
        );
        // The tag id `sqitch deploy` wrote into sqitch.tags for @v1.0.
        assert_eq!(
            tag_id(
                &plan,
                &plan.changes[1].tags[0],
                "3cd05d8e91ab0396bcff05548668b5cf23585940"
            ),
            "a05cecae9a17ca866a0cbe547fbf27d47c943f9d"
        );
        // script_hash is the deploy file's SHA-1, as sqitch logged it.
        assert_eq!(
            script_hash(include_bytes!(
                "../../../tests/fixtures/migrations/sqitch/deploy/appschema.sql"
            )),
            "5c4b2be44e4ed974a8268c671621c7a5904bd2b7"
        );
    }
}
