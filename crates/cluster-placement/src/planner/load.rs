//! Measured node load in rebalance plans: the `max_node_load` limit on targets, and the
//! resource-aware step when app counts are balanced but the measured load is not.

use cluster_core::planner::{PlanRequest, RebalanceOptions};
use cluster_core::wire::placement_admin::PlannedMigration;
use cluster_core::wire::rebalance::ResourceLimits;
use cluster_core::{Mode, NodeId, NodeLoad};

use crate::Assignment;
use crate::model::{AppSpec, NodeInfo};
use crate::rebalance::RebalancePolicy;
use crate::verify::verify;

/// Why `node` may not receive an instance under `limits` (its measured load is above one);
/// `None` when it may, when it is unknown or not measured, or when there is no target.
pub fn over_limit(
    request: &PlanRequest,
    node: Option<&NodeId>,
    limits: &ResourceLimits,
) -> Option<String> {
    let node = node?;
    let load = request.nodes.iter().find(|n| n.id == *node)?.load?;
    limits.exceeded_by(&load).map(|(dim, v, limit)| {
        format!("target {node} is over the max node load ({dim} {v:.2} > {limit:.2})")
    })
}

/// Resource-aware rebalancing: when the measured load spreads more than the thresholds allow,
/// one step moving an instance (Replicas) or the leadership (Singleton) from the most loaded
/// node to the least loaded node that may take it (uncordoned, under `max_node_load`, and
/// adding no hard-constraint violation). `None` when balanced or nothing can move.
pub fn resource_step(
    request: &PlanRequest,
    nodes: &[NodeInfo],
    specs: &[AppSpec],
    current: &Assignment,
    policy: &RebalancePolicy,
    options: &RebalanceOptions,
) -> Option<PlannedMigration> {
    let measured: Vec<(&NodeId, NodeLoad)> = request
        .nodes
        .iter()
        .filter(|n| n.healthy && !n.draining)
        .filter_map(|n| n.load.map(|l| (&n.id, l)))
        .collect();
    let loads: Vec<NodeLoad> = measured.iter().map(|(_, l)| *l).collect();
    let (dim, _, _) = options.resource_thresholds.exceeded(&loads)?;
    let value = |l: &NodeLoad| {
        l.fractions()
            .into_iter()
            .find(|(d, _)| *d == dim)
            .map_or(0.0, |(_, v)| v)
    };
    let mut by_load = measured.clone();
    by_load.sort_by(|a, b| value(&a.1).total_cmp(&value(&b.1)).then(a.0.cmp(b.0)));
    let (hot, _) = *by_load.last()?;
    let targets: Vec<&NodeId> = by_load
        .iter()
        .filter(|(n, l)| {
            *n != hot
                && options.max_node_load.exceeded_by(l).is_none()
                && request.nodes.iter().any(|p| p.id == **n && !p.cordoned)
        })
        .map(|(n, _)| *n)
        .collect();
    let baseline = verify(nodes, specs, current, None).len();
    // Heaviest first: the app requesting the most of the overloaded dimension relieves the
    // hot node most (apps without requests keep their order, after those with requests).
    let request_of = |s: &&AppSpec| match dim {
        "cpu" => s.resources.cpu_millis,
        "memory" => s.resources.memory_bytes,
        "disk" => s.resources.disk_bytes,
        _ => 0,
    };
    let mut candidates: Vec<&AppSpec> = specs.iter().filter(|s| policy.may_move(s)).collect();
    candidates.sort_by_key(|s| std::cmp::Reverse(request_of(s)));
    for spec in candidates {
        let Some(placed) = current.app(&spec.name) else {
            continue;
        };
        if !placed.nodes.contains(hot) {
            continue;
        }
        for to in &targets {
            let mut next = current.clone();
            let Some(p) = next.apps.get_mut(&spec.name) else {
                continue;
            };
            let kind = match spec.mode {
                Mode::Replicas { .. } if !p.nodes.contains(to) => {
                    p.nodes.retain(|n| n != hot);
                    p.nodes.push((*to).clone());
                    "move"
                }
                Mode::Singleton if p.nodes.first() == Some(hot) && p.nodes.contains(to) => {
                    p.nodes.retain(|n| n != *to);
                    p.nodes.insert(0, (*to).clone());
                    "leader"
                }
                _ => continue,
            };
            if verify(nodes, specs, &next, Some(current)).len() <= baseline {
                return Some(PlannedMigration {
                    app: spec.name.clone(),
                    from: Some(hot.clone()),
                    to: Some((*to).clone()),
                    kind: kind.to_owned(),
                });
            }
        }
    }
    None
}
