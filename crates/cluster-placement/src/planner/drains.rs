//! Drains in a plan: scheduling with the draining nodes excluded, and drains limited to some
//! concurrent migrations.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::planner::PlanRequest;
use cluster_core::{AppName, NodeId};

use crate::Assignment;
use crate::model::{AppSpec, NodeInfo};
use crate::rebalance::plan_drain_nodes;
use crate::schedule::schedule;

/// Schedules with the draining nodes excluded (`nodes` from [`node_infos`](super::node_infos)).
/// A drain without force keeps an instance that has no eligible node elsewhere where it runs
/// (returned as blocked, with the reason); a forced drain (like an unhealthy node) stops it,
/// so the app becomes pending or degraded. Pending apps are added to `pending`.
pub fn schedule_with_drains(
    nodes: &[NodeInfo],
    specs: &[AppSpec],
    current: &Assignment,
    request: &PlanRequest,
    pending: &mut BTreeMap<AppName, String>,
) -> (Assignment, BTreeMap<AppName, String>) {
    let gentle: BTreeSet<NodeId> = request
        .nodes
        .iter()
        .filter(|n| n.draining && !n.drain_force && n.healthy)
        .map(|n| n.id.clone())
        .collect();
    let mut blocked = BTreeMap::new();
    if gentle.is_empty() {
        let result = schedule(nodes, specs, current);
        pending.extend(result.pending);
        return (result.assignment, blocked);
    }
    // `plan_drain_nodes` excludes the gentle nodes itself and restores what cannot move.
    let mut infos = nodes.to_vec();
    for n in infos.iter_mut().filter(|n| gentle.contains(&n.id)) {
        n.healthy = true;
    }
    let plan = plan_drain_nodes(&infos, specs, current, &gentle, false);
    pending.extend(plan.pending);
    for (app, why) in plan.stuck {
        if plan.assignment.apps.contains_key(&app) {
            blocked.insert(app, why);
        }
    }
    (plan.assignment, blocked)
}

/// A drain limited to some concurrent migrations: apps not yet released keep their current
/// placement on the draining node (and are neither pending nor blocked). The version of
/// `next` is recomputed against `current` when this changed anything.
pub fn throttle_drains(
    next: &mut Assignment,
    current: &Assignment,
    request: &PlanRequest,
    pending: &mut BTreeMap<AppName, String>,
    blocked: &mut BTreeMap<AppName, String>,
) {
    let before = next.clone();
    for node in &request.nodes {
        let (true, Some(release)) = (node.draining, &node.drain_release) else {
            continue;
        };
        for (app, placed) in &current.apps {
            if !placed.nodes.contains(&node.id)
                || release.contains(app)
                || next.app(app).is_some_and(|p| p.nodes.contains(&node.id))
            {
                continue;
            }
            next.apps.insert(app.clone(), placed.clone());
            pending.remove(app);
            blocked.remove(app);
        }
    }
    if next.same_placement(&before) {
        return;
    }
    next.version = if next.same_placement(current) {
        current.version
    } else {
        current.version + 1
    };
}
