//! sqitch's registry on PostgreSQL (App::Sqitch::Engine::pg: the schema
//! `sqitch` by default, tables `releases`, `projects`, `changes`, `tags`,
//! `dependencies`, `events`), written as sqitch writes it: a deployed
//! change is a `changes` row keyed by its change id with its dependencies
//! and tags, and a `deploy` event; a reverted one loses those rows and
//! gains a `revert` event. `sqitch status` then agrees with pgpilot.

use super::{Project, ids};
use crate::runbook::vars::{quote_ident, quote_literal};

/// The registry release this DDL is (`sqitch.releases.version`).
const RELEASE: &str = "1.1";

/// The registry's tables as sqitch 1.x creates them (lib/App/Sqitch/Engine/
/// pg.sql, registry release 1.1), `IF NOT EXISTS` so that creating it is
/// harmless beside a registry sqitch made half-way. `@R` is the schema.
const DDL: &str = "SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS @R;
COMMENT ON SCHEMA @R IS 'Sqitch database deployment metadata v1.1.';
CREATE TABLE IF NOT EXISTS @R.releases (
    version REAL PRIMARY KEY, installed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    installer_name TEXT NOT NULL, installer_email TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS @R.projects (
    project TEXT PRIMARY KEY, uri TEXT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    creator_name TEXT NOT NULL, creator_email TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS @R.changes (
    change_id TEXT PRIMARY KEY, script_hash TEXT NULL, change TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES @R.projects(project) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, UNIQUE(project, script_hash));
CREATE TABLE IF NOT EXISTS @R.tags (
    tag_id TEXT PRIMARY KEY, tag TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES @R.projects(project) ON UPDATE CASCADE,
    change_id TEXT NOT NULL REFERENCES @R.changes(change_id) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, UNIQUE(project, tag));
CREATE TABLE IF NOT EXISTS @R.dependencies (
    change_id TEXT NOT NULL REFERENCES @R.changes(change_id) ON UPDATE CASCADE ON DELETE CASCADE,
    type TEXT NOT NULL, dependency TEXT NOT NULL,
    dependency_id TEXT NULL REFERENCES @R.changes(change_id) ON UPDATE CASCADE CONSTRAINT dependencies_check CHECK (
        (type = 'require' AND dependency_id IS NOT NULL) OR (type = 'conflict' AND dependency_id IS NULL)),
    PRIMARY KEY (change_id, dependency));
CREATE TABLE IF NOT EXISTS @R.events (
    event TEXT NOT NULL CONSTRAINT events_event_check CHECK (event IN ('deploy', 'revert', 'fail', 'merge')),
    change_id TEXT NOT NULL, change TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES @R.projects(project) ON UPDATE CASCADE,
    note TEXT NOT NULL DEFAULT '', requires TEXT[] NOT NULL DEFAULT '{}', conflicts TEXT[] NOT NULL DEFAULT '{}',
    tags TEXT[] NOT NULL DEFAULT '{}', committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL, planned_at TIMESTAMPTZ NOT NULL,
    planner_name TEXT NOT NULL, planner_email TEXT NOT NULL, PRIMARY KEY (change_id, committed_at));
RESET client_min_messages";

fn schema(p: &Project) -> String {
    quote_ident(&p.registry)
}

/// Who pgpilot records as committer: sqitch.conf's `[user]`, else the
/// database role (`current_user`, `current_user@localhost`).
fn committer(p: &Project) -> (String, String) {
    match &p.committer {
        Some((n, e)) => (quote_literal(n), quote_literal(e)),
        None => ("current_user".into(), "current_user || '@localhost'".into()),
    }
}

/// Creates the registry (run only when it is absent, as `sqitch deploy`
/// does on first use) with its release row.
pub fn create_sql(p: &Project) -> String {
    let r = schema(p);
    let (name, email) = committer(p);
    format!(
        "{ddl};
INSERT INTO {r}.releases (version, installer_name, installer_email) VALUES ({RELEASE}, {name}, {email})",
        ddl = DDL.replace("@R", &r),
    )
}

/// Registers the project, as sqitch does before deploying (a no-op when
/// it is registered).
pub fn register_sql(p: &Project) -> String {
    let r = schema(p);
    let (name, email) = committer(p);
    format!(
        "INSERT INTO {r}.projects (project, uri, creator_name, creator_email)
VALUES ({proj}, {uri}, {name}, {email}) ON CONFLICT (project) DO NOTHING",
        proj = quote_literal(&p.plan.project),
        uri = p.plan.uri.as_deref().map_or("NULL".into(), quote_literal),
    )
}

/// The query that lists the project's deployed change ids (`change_id`,
/// `change`), and the project's registered URI (`uri`, `registered`).
pub fn deployed_sql(p: &Project) -> (String, String) {
    let r = schema(p);
    let proj = quote_literal(&p.plan.project);
    (
        format!(
            "SELECT change_id, change FROM {r}.changes WHERE project = {proj} ORDER BY committed_at"
        ),
        format!("SELECT uri FROM {r}.projects WHERE project = {proj}"),
    )
}

/// The table whose presence says the registry exists.
pub fn changes_table(p: &Project) -> String {
    format!("{}.changes", schema(p))
}

/// SQL recording that change `key` was deployed (`deployed`) or reverted,
/// run in the step's transaction. `script` is the deploy script's bytes.
pub fn record_sql(p: &Project, key: &str, deployed: bool, script: &[u8]) -> Option<String> {
    let (i, change, scripts) = p.change(key)?;
    let r = schema(p);
    let (who, email) = committer(p);
    let id = quote_literal(&scripts.id);
    let proj = quote_literal(&p.plan.project);
    if !deployed {
        // As sqitch's log_revert_change: the event keeps the tags and
        // dependencies the registry had, then the rows go (dependencies
        // by their ON DELETE CASCADE).
        return Some(format!(
            "INSERT INTO {r}.events (event, change_id, change, project, note, tags, requires, conflicts, committer_name, committer_email, planned_at, planner_name, planner_email)
SELECT 'revert', c.change_id, c.change, c.project, c.note,
       ARRAY(SELECT tag FROM {r}.tags WHERE change_id = c.change_id),
       ARRAY(SELECT dependency FROM {r}.dependencies WHERE change_id = c.change_id AND type = 'require'),
       ARRAY(SELECT dependency FROM {r}.dependencies WHERE change_id = c.change_id AND type = 'conflict'),
       {who}, {email}, c.planned_at, c.planner_name, c.planner_email
  FROM {r}.changes c WHERE c.change_id = {id};
DELETE FROM {r}.tags WHERE change_id = {id};
DELETE FROM {r}.changes WHERE change_id = {id}"
        ));
    }
    let lit = quote_literal;
    let ts = |t: &str| format!("{}::timestamptz", lit(t));
    let array = |items: Vec<String>| {
        format!(
            "ARRAY[{}]::text[]",
            items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let mut sql = format!(
        "INSERT INTO {r}.changes (change_id, script_hash, change, project, note, committer_name, committer_email, planned_at, planner_name, planner_email)
VALUES ({id}, {hash}, {name}, {proj}, {note}, {who}, {email}, {planned}, {pname}, {pemail})",
        hash = lit(&ids::script_hash(script)),
        name = lit(&change.name),
        note = lit(&change.note),
        planned = ts(&change.timestamp),
        pname = lit(&change.planner_name),
        pemail = lit(&change.planner_email),
    );
    for dep in change.requires.iter().chain(&change.conflicts) {
        let resolved = if dep.conflicts {
            "NULL".to_string()
        } else {
            match resolve(p, i, dep) {
                Some(id) => lit(&id),
                // Another project's change: the one the registry has.
                None => format!(
                    "(SELECT change_id FROM {r}.changes WHERE project = {} AND change = {} ORDER BY committed_at DESC LIMIT 1)",
                    lit(dep.project.as_deref().unwrap_or(&p.plan.project)),
                    lit(dep.change.as_deref().unwrap_or_default()),
                ),
            }
        };
        sql.push_str(&format!(
            ";\nINSERT INTO {r}.dependencies (change_id, type, dependency, dependency_id) VALUES ({id}, {}, {}, {resolved})",
            lit(if dep.conflicts { "conflict" } else { "require" }),
            lit(&dep.as_string(&p.plan.project)),
        ));
    }
    for tag in &change.tags {
        sql.push_str(&format!(
            ";\nINSERT INTO {r}.tags (tag_id, tag, project, change_id, note, committer_name, committer_email, planned_at, planner_name, planner_email)
VALUES ({}, {}, {proj}, {id}, {}, {who}, {email}, {}, {}, {})",
            lit(&ids::tag_id(&p.plan, tag, &scripts.id)),
            lit(&format!("@{}", tag.name)),
            lit(&tag.note),
            ts(&tag.timestamp),
            lit(&tag.planner_name),
            lit(&tag.planner_email),
        ));
    }
    sql.push_str(&format!(
        ";\nINSERT INTO {r}.events (event, change_id, change, project, note, tags, requires, conflicts, committer_name, committer_email, planned_at, planner_name, planner_email)
VALUES ('deploy', {id}, {name}, {proj}, {note}, {tags}, {requires}, {conflicts}, {who}, {email}, {planned}, {pname}, {pemail})",
        name = lit(&change.name),
        note = lit(&change.note),
        tags = array(change.tags.iter().map(|t| format!("@{}", t.name)).collect()),
        requires = array(change.requires.iter().map(|d| d.as_string(&p.plan.project)).collect()),
        conflicts = array(change.conflicts.iter().map(|d| d.as_string(&p.plan.project)).collect()),
        planned = ts(&change.timestamp),
        pname = lit(&change.planner_name),
        pemail = lit(&change.planner_email),
    ));
    Some(sql)
}

/// The plan's id for a requirement of change `i` on this project: `name`
/// is its latest version before `i`; `name@tag` the version as of the tag;
/// `@tag` the change the tag follows; an id is itself. `None` for another
/// project's change.
fn resolve(p: &Project, i: usize, dep: &super::plan::Dep) -> Option<String> {
    if let Some(id) = &dep.id {
        return Some(id.clone());
    }
    if !dep.is_internal(&p.plan.project) {
        return None;
    }
    let changes = &p.plan.changes[..i];
    let upto = match &dep.tag {
        Some(tag) => changes
            .iter()
            .position(|c| c.tags.iter().any(|t| &t.name == tag))
            .map(|at| at + 1)?,
        None => changes.len(),
    };
    let at = match &dep.change {
        Some(name) => changes[..upto].iter().rposition(|c| &c.name == name)?,
        None => upto.checked_sub(1)?,
    };
    Some(p.scripts[at].id.clone())
}
