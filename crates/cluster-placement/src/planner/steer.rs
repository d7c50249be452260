//! The scheduler's inputs from a planning request: the nodes as the scheduler sees them, the
//! implicit registration constraint, and the edits of the current placement that steer the
//! sticky scheduler (actual Singleton leaders, operators' moves).

use cluster_core::planner::PlanRequest;
use cluster_core::{Mode, NodeId};

use crate::Assignment;
use crate::model::{AppSpec, Constraint, NodeInfo};
use crate::resources::Resources;

/// The nodes of `request` as the scheduler sees them: capacity from the node's labels (a node
/// without, or with unparsable, capacity labels is not limited); a draining node runs nothing,
/// so it counts as unhealthy.
pub fn node_infos(request: &PlanRequest) -> Vec<NodeInfo> {
    request
        .nodes
        .iter()
        .map(|n| {
            let mut info = NodeInfo::new(n.id.clone(), n.labels.clone());
            if let Ok(capacity) = Resources::from_labels(&n.labels) {
                info = info.with_capacity(capacity);
            }
            info.cordoned = n.cordoned;
            info.healthy = n.healthy && !n.draining;
            info.draining = n.draining;
            info
        })
        .collect()
}

/// An app runs only on nodes that registered it: a node hosting a subset of the apps gets an
/// implicit `OnNodes` constraint on the others.
pub fn only_where_registered(specs: &mut [AppSpec], request: &PlanRequest) {
    for spec in specs {
        let hosts: Vec<NodeId> = request
            .nodes
            .iter()
            .filter(|n| n.hosts.contains(&spec.name))
            .map(|n| n.id.clone())
            .collect();
        if hosts.len() < request.nodes.len() {
            spec.constraints.push(Constraint::OnNodes { nodes: hosts });
        }
    }
}

/// A Singleton's preferred leader follows the actual leader (a placed node that reports
/// leading it) while no move of the app is requested, so a failed or withdrawn move leaves
/// nothing behind.
pub fn follow_leaders(current: &mut Assignment, request: &PlanRequest) {
    for (app, placed) in current.apps.iter_mut() {
        if request.moves.iter().any(|m| m.app == *app) {
            continue;
        }
        let leader = request
            .nodes
            .iter()
            .find(|n| n.leading.contains(app) && placed.nodes.contains(&n.id));
        if let Some(leader) = leader
            && placed.nodes.first() != Some(&leader.id)
        {
            placed.nodes.retain(|n| *n != leader.id);
            placed.nodes.insert(0, leader.id.clone());
        }
    }
}

/// Applies the operators' moves by editing the current placement: a Singleton's target leads;
/// a Replicas instance leaves its source for the target (or a node the scheduler chooses) and
/// may not come back to the source. Moves of unknown or unplaced apps are ignored.
pub fn apply_moves(specs: &mut [AppSpec], current: &mut Assignment, request: &PlanRequest) {
    for mv in &request.moves {
        let Some(spec) = specs.iter_mut().find(|s| s.name == mv.app) else {
            continue;
        };
        let Some(placed) = current.apps.get_mut(&mv.app) else {
            continue;
        };
        match spec.mode {
            Mode::Singleton => {
                if let Some(to) = &mv.to {
                    placed.nodes.retain(|n| n != to);
                    placed.nodes.insert(0, to.clone());
                }
            }
            Mode::Replicas { .. } => {
                placed.nodes.retain(|n| *n != mv.from);
                if let Some(to) = &mv.to
                    && !placed.nodes.contains(to)
                {
                    placed.nodes.push(to.clone());
                }
                let others: Vec<NodeId> = request
                    .nodes
                    .iter()
                    .map(|n| n.id.clone())
                    .filter(|n| *n != mv.from)
                    .collect();
                spec.constraints.push(Constraint::OnNodes { nodes: others });
            }
            Mode::Spread | Mode::Ring { .. } => {}
        }
    }
}
