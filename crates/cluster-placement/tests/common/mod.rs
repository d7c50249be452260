// Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use cluster_core::{AppName, Labels, Mode, NodeId};
use cluster_placement::{AppSpec, NodeInfo};

pub(crate) fn n(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

pub(crate) fn a(s: &str) -> AppName {
    AppName::new(s).unwrap()
}

pub(crate) fn node(id: &str, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo::new(n(id), Labels::from_pairs(labels.iter().copied()).unwrap())
}

pub(crate) fn app(name: &str, mode: Mode) -> AppSpec {
    AppSpec::new(a(name), mode)
}

pub(crate) fn ids(v: &[NodeId]) -> Vec<&str> {
    v.iter().map(NodeId::as_str).collect()
}

/// A healthy planning node that hosts every app of the request (see [`request`]).
pub(crate) fn plan_node(id: &str) -> cluster_core::planner::PlanNode {
    cluster_core::planner::PlanNode {
        id: n(id),
        labels: Labels::new(),
        healthy: true,
        cordoned: false,
        draining: false,
        drain_force: false,
        drain_release: None,
        running: Default::default(),
        leading: Default::default(),
        hosts: Default::default(),
        load: None,
    }
}

/// A planning request over `nodes` and `apps` (no rules), with every app registered on every
/// node and an empty current assignment.
pub(crate) fn request(
    mut nodes: Vec<cluster_core::planner::PlanNode>,
    apps: &[(&str, Mode)],
) -> cluster_core::planner::PlanRequest {
    for node in &mut nodes {
        node.hosts = apps.iter().map(|(name, _)| a(name)).collect();
    }
    cluster_core::planner::PlanRequest {
        nodes,
        apps: apps
            .iter()
            .map(|(name, mode)| cluster_core::planner::PlanApp {
                name: a(name),
                mode: *mode,
                placement: None,
            })
            .collect(),
        current: Default::default(),
        moves: Vec::new(),
    }
}

/// Places `app` on `nodes` in the request's current assignment.
pub(crate) fn place(request: &mut cluster_core::planner::PlanRequest, app: &str, nodes: &[&str]) {
    request.current.apps.insert(
        a(app),
        cluster_placement::AppPlacement {
            nodes: nodes.iter().map(|s| n(s)).collect(),
            partitions: None,
        },
    );
}

/// Marks `app` as running on `nodes` (they report it).
pub(crate) fn running(request: &mut cluster_core::planner::PlanRequest, app: &str, nodes: &[&str]) {
    for node in request
        .nodes
        .iter_mut()
        .filter(|x| nodes.contains(&x.id.as_str()))
    {
        node.running.insert(a(app));
    }
}
