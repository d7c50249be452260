//! Drain and evacuation planning: move everything off some nodes, respecting constraints.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::{AppName, Labels, Mode, NodeId};

use crate::Assignment;
use crate::migration::{Migration, diff};
use crate::model::{AppSpec, NodeInfo};
use crate::schedule::schedule;

/// The outcome of a drain or evacuation.
#[derive(Debug, Clone, Default)]
pub struct DrainPlan {
    /// The nodes being drained.
    pub nodes: Vec<NodeId>,
    /// The assignment once drained (version bumped if anything changed).
    pub assignment: Assignment,
    /// Steps from the current assignment.
    pub migrations: Vec<Migration>,
    /// Instances that cannot move, with the reason. Without `force` they stay on the drained
    /// nodes; with `force` they are stopped without a replacement.
    pub stuck: Vec<(AppName, String)>,
    /// Apps that cannot be placed at all once drained (and do not stay), with the reason.
    /// Absent from [`assignment`](Self::assignment).
    pub pending: Vec<(AppName, String)>,
}

impl DrainPlan {
    /// Whether the drained nodes end up running nothing.
    pub fn complete(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| self.assignment.apps_on(n).is_empty())
    }
}

/// Plans moving every instance off `node`. The node should be cordoned first (by the caller)
/// so nothing new lands on it meanwhile.
pub fn plan_drain(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    node: &NodeId,
    force: bool,
) -> DrainPlan {
    drain_set(nodes, apps, current, &BTreeSet::from([node.clone()]), force)
}

/// Plans moving every instance off every node of `drained` at once (the controller's view of
/// several concurrent drains). Same rules as [`plan_drain`].
pub fn plan_drain_nodes(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    drained: &BTreeSet<NodeId>,
    force: bool,
) -> DrainPlan {
    drain_set(nodes, apps, current, drained, force)
}

/// Plans moving every instance off the nodes whose labels include all of `selector`
/// (e.g. `zone=us-east-1a`). An empty selector matches no node.
pub fn plan_evacuate(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    selector: &Labels,
    force: bool,
) -> DrainPlan {
    let set: BTreeSet<NodeId> = nodes
        .iter()
        .filter(|n| !selector.is_empty() && selector.iter().all(|(k, v)| n.labels.matches(k, v)))
        .map(|n| n.id.clone())
        .collect();
    drain_set(nodes, apps, current, &set, force)
}

fn drain_set(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    drained: &BTreeSet<NodeId>,
    force: bool,
) -> DrainPlan {
    // Schedule as if the drained nodes were gone.
    let without: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| {
            let mut n = n.clone();
            if drained.contains(&n.id) {
                n.healthy = false;
                n.draining = true;
            }
            n
        })
        .collect();
    let r = schedule(&without, apps, current);
    let mut assignment = r.assignment.clone();
    let mut stuck = Vec::new();
    let on_drained = |app: &AppName| -> Vec<NodeId> {
        current
            .app(app)
            .map(|p| {
                p.nodes
                    .iter()
                    .filter(|n| drained.contains(n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let reasons: BTreeMap<&AppName, &String> = r
        .pending
        .iter()
        .chain(r.degraded.iter())
        .map(|(a, why)| (a, why))
        .collect();
    let modes: BTreeMap<AppName, Mode> = apps.iter().map(|a| (a.name.clone(), a.mode)).collect();
    for (app, why) in reasons {
        let lost = on_drained(app);
        if lost.is_empty() {
            continue;
        }
        let list: Vec<&str> = lost.iter().map(NodeId::as_str).collect();
        let what = if force {
            "stopped without replacement"
        } else {
            "stays"
        };
        stuck.push((
            app.clone(),
            format!("instance on {} {what}: {why}", list.join(", ")),
        ));
        if force {
            continue;
        }
        match assignment.apps.get_mut(app) {
            // Degraded Replicas: keep the instances that could not move.
            Some(p) => {
                let want = match modes.get(app) {
                    Some(Mode::Replicas { n }) => *n as usize,
                    _ => p.nodes.len() + lost.len(),
                };
                for n in lost {
                    if p.nodes.len() < want && !p.nodes.contains(&n) {
                        p.nodes.push(n);
                    }
                }
            }
            // Pending: keep the current placement.
            None => {
                if let Some(cur) = current.app(app) {
                    assignment.apps.insert(app.clone(), cur.clone());
                }
            }
        }
    }
    if !force {
        undo_invalid_restores(
            nodes,
            apps,
            current,
            &r.assignment,
            &mut assignment,
            &mut stuck,
        );
    }
    assignment.version = if assignment.same_placement(current) {
        current.version
    } else {
        current.version + 1
    };
    let migrations = diff(current, &assignment, &modes);
    let pending = r
        .pending
        .into_iter()
        .filter(|(app, _)| !assignment.apps.contains_key(app))
        .collect();
    DrainPlan {
        nodes: drained.iter().cloned().collect(),
        assignment,
        migrations,
        stuck,
        pending,
    }
}

/// Keeping a stuck instance can break a constraint of the app that stays (its `WithApp`
/// target may have moved off the drained node). Such instances are stopped after all, until
/// the assignment verifies.
fn undo_invalid_restores(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    scheduled: &Assignment,
    assignment: &mut Assignment,
    stuck: &mut [(AppName, String)],
) {
    loop {
        let bad: BTreeSet<AppName> =
            crate::verify::verify_by_app(nodes, apps, assignment, Some(current))
                .into_iter()
                .filter_map(|(app, _)| app)
                .filter(|app| stuck.iter().any(|(s, _)| s == app))
                .collect();
        if bad.is_empty() {
            return;
        }
        for app in bad {
            match scheduled.app(&app) {
                Some(p) => assignment.apps.insert(app.clone(), p.clone()),
                None => assignment.apps.remove(&app),
            };
            for (s, why) in stuck.iter_mut() {
                if *s == app {
                    *why = format!("{why}; stopped after all: staying would break its constraints");
                }
            }
        }
    }
}
