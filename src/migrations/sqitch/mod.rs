//! A sqitch project: `sqitch.plan` (and `sqitch.conf`) with `deploy/`,
//! `revert/` and `verify/` scripts. Each planned change is one migration:
//! its deploy script the change, its revert script the rollback, its verify
//! script a verify step. The registry (`sqitch.changes` …) is read and
//! written by `registry`.

mod conf;
pub mod ids;
pub mod plan;
pub mod registry;

use std::path::{Path, PathBuf};

use super::folder_file::{Unread, read_in_folder};
use crate::diag::{Diagnostic, Location};

pub use plan::Plan;

/// The plan file's name, which marks a folder as a sqitch project.
pub const PLAN_FILE: &str = "sqitch.plan";
pub const CONF_FILE: &str = "sqitch.conf";

/// Whether `dir` is a sqitch project (it holds a plan or a configuration).
pub fn is_project(dir: &Path) -> bool {
    dir.join(PLAN_FILE).is_file() || dir.join(CONF_FILE).is_file()
}

/// One planned change and its scripts (paths relative to the project's
/// folder, `/`-separated).
#[derive(Debug, Clone)]
pub struct Scripts {
    /// Unique in the plan: the name, or `name@TAG` for a reworked change's
    /// earlier version (its scripts are `name@TAG.sql`).
    pub key: String,
    /// sqitch's change id.
    pub id: String,
    pub deploy: String,
    pub revert: Option<String>,
    pub verify: Option<String>,
}

/// A sqitch project read from its folder.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub plan: Plan,
    /// The registry schema (`sqitch`, or `[engine "pg"] registry`).
    pub registry: String,
    /// `[user] name` / `email` of sqitch.conf: who pgpilot records as the
    /// committer; `None`: the database role.
    pub committer: Option<(String, String)>,
    /// The plan's changes in order, with their scripts and ids.
    pub scripts: Vec<Scripts>,
}

impl Project {
    /// Reads the project in `dir`; errors at their place in the files.
    pub fn load(dir: &Path) -> Result<Project, Vec<Diagnostic>> {
        let conf_path = dir.join(CONF_FILE);
        let conf = match read_in_folder(dir, CONF_FILE, &Location::file(&conf_path)) {
            Ok(t) => conf::Conf::parse(&conf_path, &t)?,
            Err(Unread::Absent) => conf::Conf::default(),
            Err(Unread::Refused(d)) => return Err(vec![d]),
        };
        if let Some(engine) = conf.get("core", "engine")
            && engine != "pg"
        {
            return Err(vec![
                Diagnostic::error(
                    Location::file(&conf_path),
                    format!(
                        "the project's engine is {engine:?}; pgpilot runs PostgreSQL (pg) projects"
                    ),
                )
                .with_help(
                    "set `engine = pg` under [core], or point pgpilot at a PostgreSQL project",
                ),
            ]);
        }
        let setting = |key: &str| {
            conf.get("engine \"pg\"", key)
                .or_else(|| conf.get("core", key))
        };
        let top = setting("top_dir").unwrap_or(".");
        let rel = |p: &str| -> String {
            let joined = Path::new(top).join(p);
            joined
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string()
        };
        let plan_rel = setting("plan_file")
            .map(str::to_string)
            .unwrap_or_else(|| rel(PLAN_FILE));
        let plan_path = dir.join(&plan_rel);
        // A plan named by sqitch.conf is reported there; the plan itself
        // (a link out of the folder, a FIFO) at its own path.
        let plan_at = if setting("plan_file").is_some() || setting("top_dir").is_some() {
            Location::file(&conf_path)
        } else {
            Location::file(&plan_path)
        };
        let text = read_in_folder(dir, &plan_rel, &plan_at).map_err(|e| match e {
            Unread::Refused(d) => vec![d],
            Unread::Absent => vec![
                Diagnostic::error(
                    Location::file(&plan_path),
                    "cannot read the plan: No such file or directory",
                )
                .with_help(
                    "a sqitch project keeps its changes in sqitch.plan (`sqitch init` writes it)",
                ),
            ],
        })?;
        let plan = plan::parse(&plan_path, &text)?;
        let dir_of = |which: &str| {
            setting(&format!("{which}_dir"))
                .map(str::to_string)
                .unwrap_or_else(|| rel(which))
        };
        let (deploy_dir, revert_dir, verify_dir) =
            (dir_of("deploy"), dir_of("revert"), dir_of("verify"));
        let ext = setting("extension").unwrap_or("sql");
        let mut scripts = Vec::new();
        let mut parent: Option<String> = None;
        let mut errors = Vec::new();
        for change in &plan.changes {
            // A reworked change's earlier version: the first tag after it
            // whose deploy file exists (else the first), as sqitch looks.
            let base = match change.rework_tags.iter().find(|t| {
                dir.join(&deploy_dir)
                    .join(format!("{}@{t}.{ext}", change.name))
                    .is_file()
            }) {
                Some(t) => format!("{}@{t}", change.name),
                None => match change.rework_tags.first() {
                    Some(t) => format!("{}@{t}", change.name),
                    None => change.name.clone(),
                },
            };
            let file = |d: &str| format!("{}/{base}.{ext}", d.trim_end_matches('/'));
            let deploy = file(&deploy_dir);
            if !dir.join(&deploy).is_file() {
                errors.push(
                    Diagnostic::error(
                        Location {
                            path: plan_path.clone(),
                            line: change.line,
                            col: 1,
                        },
                        format!("change {:?} has no deploy script {deploy}", change.name),
                    )
                    .with_help(
                        "`sqitch add` writes deploy/, revert/ and verify/ scripts for each change",
                    ),
                );
            }
            let existing = |p: String| dir.join(&p).is_file().then_some(p);
            let id = ids::change_id(&plan, change, parent.as_deref());
            parent = Some(id.clone());
            scripts.push(Scripts {
                key: base.clone(),
                id,
                deploy,
                revert: existing(file(&revert_dir)),
                verify: existing(file(&verify_dir)),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let committer = match (conf.get("user", "name"), conf.get("user", "email")) {
            (Some(n), Some(e)) => Some((n.to_string(), e.to_string())),
            _ => None,
        };
        Ok(Project {
            dir: dir.to_path_buf(),
            registry: setting("registry").unwrap_or("sqitch").to_string(),
            plan,
            committer,
            scripts,
        })
    }

    /// The change and its scripts for a step's `migration` key.
    pub fn change(&self, key: &str) -> Option<(usize, &plan::Change, &Scripts)> {
        self.scripts
            .iter()
            .position(|s| s.key == key)
            .map(|i| (i, &self.plan.changes[i], &self.scripts[i]))
    }
}
