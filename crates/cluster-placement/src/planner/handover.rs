//! Make-before-break: a replaced Replicas instance keeps running on its old node until the
//! new node reports it running.

use std::collections::{BTreeMap, BTreeSet};

use cluster_core::planner::PlanRequest;
use cluster_core::{AppName, Mode, NodeId};

use crate::Assignment;

/// Keeps an instance that is being replaced on its old, still usable (healthy, not draining)
/// node while it runs there, until every node added to the app reports the instance running
/// (Replicas apps only).
pub fn make_before_break(next: &mut Assignment, current: &Assignment, request: &PlanRequest) {
    let usable: BTreeSet<&NodeId> = request
        .nodes
        .iter()
        .filter(|n| n.healthy && !n.draining)
        .map(|n| &n.id)
        .collect();
    let running = |node: &NodeId, app: &AppName| {
        request
            .nodes
            .iter()
            .any(|n| n.id == *node && n.running.contains(app))
    };
    let modes: BTreeMap<&AppName, Mode> = request.apps.iter().map(|a| (&a.name, a.mode)).collect();
    for (app, placement) in next.apps.iter_mut() {
        if !matches!(modes.get(app), Some(Mode::Replicas { .. })) {
            continue;
        }
        let Some(before) = current.apps.get(app) else {
            continue;
        };
        let added_not_ready = placement
            .nodes
            .iter()
            .any(|n| !before.nodes.contains(n) && !running(n, app));
        if !added_not_ready {
            continue;
        }
        for old in &before.nodes {
            if !placement.nodes.contains(old) && usable.contains(old) && running(old, app) {
                placement.nodes.push(old.clone());
            }
        }
    }
}
