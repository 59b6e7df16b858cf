//! Who blocks whom, as a tree: root blockers first, each waiter under what
//! blocks it, with how many sessions queue downstream.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::{Backend, SessionName};

/// One row of the tree, depth-first; `depth` 0 is a root blocker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    pub pid: i32,
    pub depth: usize,
    /// The pid this one waits behind, in the tree (one of its blockers).
    pub parent: Option<i32>,
    pub state: String,
    pub mode: Option<String>,
    pub relation: Option<String>,
    pub wait_s: Option<f64>,
    pub xact_age_s: Option<f64>,
    pub query: String,
    #[serde(flatten)]
    pub name: SessionName,
    /// Sessions waiting, directly or not, behind this one.
    pub queued_behind: usize,
}

/// The state of a blocker the poll did not list: an idle session (one
/// holding a session-level advisory lock) or one of another database.
pub const NOT_LISTED: &str = "not listed (idle, or in another database)";

/// waiter pid → the pids it waits for.
fn edges(backends: &[Backend]) -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for b in backends {
        for blocker in &b.blocked_by {
            children.entry(*blocker).or_default().push(b.pid);
        }
    }
    for c in children.values_mut() {
        c.sort_unstable();
        c.dedup();
    }
    children
}

/// For each pid, how many distinct sessions wait behind it, directly or not.
pub fn downstream_counts(backends: &[Backend]) -> HashMap<i32, usize> {
    let children = edges(backends);
    children
        .keys()
        .map(|&pid| {
            let mut seen = HashSet::new();
            let mut stack = vec![pid];
            while let Some(p) = stack.pop() {
                for c in children.get(&p).into_iter().flatten() {
                    if *c != pid && seen.insert(*c) {
                        stack.push(*c);
                    }
                }
            }
            (pid, seen.len())
        })
        .collect()
}

pub fn blocking_tree(backends: &[Backend]) -> Vec<TreeNode> {
    let children = edges(backends);
    let by_pid: HashMap<i32, &Backend> = backends.iter().map(|b| (b.pid, b)).collect();
    let counts = downstream_counts(backends);
    let waiting: HashSet<i32> = backends
        .iter()
        .filter(|b| !b.blocked_by.is_empty())
        .map(|b| b.pid)
        .collect();
    // Roots block someone and wait for no one; a cycle (a deadlock about to be
    // broken by the server) has none, so its lowest pid stands in.
    let mut roots: Vec<i32> = children
        .keys()
        .copied()
        .filter(|p| !waiting.contains(p))
        .collect();
    roots.sort_by_key(|p| (std::cmp::Reverse(counts.get(p).copied().unwrap_or(0)), *p));
    let mut out = Vec::new();
    let mut placed = HashSet::new();
    for root in roots {
        walk(
            root,
            None,
            0,
            &children,
            &by_pid,
            &counts,
            &mut placed,
            &mut out,
        );
    }
    let mut rest: Vec<i32> = waiting
        .iter()
        .copied()
        .filter(|p| !placed.contains(p))
        .collect();
    rest.sort_unstable();
    for pid in rest {
        if !placed.contains(&pid) {
            walk(
                pid,
                None,
                0,
                &children,
                &by_pid,
                &counts,
                &mut placed,
                &mut out,
            );
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn walk(
    pid: i32,
    parent: Option<i32>,
    depth: usize,
    children: &HashMap<i32, Vec<i32>>,
    by_pid: &HashMap<i32, &Backend>,
    counts: &HashMap<i32, usize>,
    placed: &mut HashSet<i32>,
    out: &mut Vec<TreeNode>,
) {
    if !placed.insert(pid) {
        return;
    }
    let b = by_pid.get(&pid);
    out.push(TreeNode {
        pid,
        depth,
        parent,
        state: b
            .map(|b| b.state.clone())
            .unwrap_or_else(|| NOT_LISTED.into()),
        mode: b.and_then(|b| b.waiting_for.as_ref().map(|w| w.mode.clone())),
        relation: b.and_then(|b| b.waiting_for.as_ref().and_then(|w| w.relation.clone())),
        wait_s: b.and_then(|b| b.waiting_for.as_ref().and_then(|w| w.wait_s)),
        xact_age_s: b.and_then(|b| b.xact_age_s),
        query: b.map(|b| b.query.clone()).unwrap_or_default(),
        name: b.map(|b| SessionName::of(b)).unwrap_or_default(),
        queued_behind: counts.get(&pid).copied().unwrap_or(0),
    });
    for c in children.get(&pid).into_iter().flatten() {
        walk(
            *c,
            Some(pid),
            depth + 1,
            children,
            by_pid,
            counts,
            placed,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(pid: i32, blocked_by: &[i32]) -> Backend {
        Backend {
            pid,
            backend_type: "client backend".into(),
            user: None,
            application: None,
            client: "local".into(),
            state: "active".into(),
            wait_event_type: None,
            wait_event: None,
            xact_age_s: None,
            query_age_s: None,
            state_age_s: None,
            query: String::new(),
            blocked_by: blocked_by.to_vec(),
            waiting_for: None,
        }
    }

    #[test]
    fn a_chain_becomes_a_tree_with_counts() {
        // A (1) holds, B (2) waits on A, C (3) waits on B.
        let tree = blocking_tree(&[b(1, &[]), b(2, &[1]), b(3, &[2])]);
        let shape: Vec<(i32, usize, usize)> = tree
            .iter()
            .map(|n| (n.pid, n.depth, n.queued_behind))
            .collect();
        assert_eq!(shape, [(1, 0, 2), (2, 1, 1), (3, 2, 0)]);
    }

    #[test]
    fn a_waiter_behind_two_blockers_is_shown_once() {
        let tree = blocking_tree(&[b(1, &[]), b(2, &[]), b(3, &[1, 2])]);
        assert_eq!(tree.iter().filter(|n| n.pid == 3).count(), 1);
        assert_eq!(tree.len(), 3);
    }

    #[test]
    fn a_cycle_does_not_loop() {
        let tree = blocking_tree(&[b(1, &[2]), b(2, &[1])]);
        assert_eq!(tree.len(), 2);
    }
}
