//! Hard constraints: which nodes an app may run on, and why the others were eliminated.

use std::collections::BTreeMap;

use cluster_core::NodeId;

use super::cluster::{Cluster, Ledger, Placed};
use crate::model::{AppSpec, Constraint, NodeInfo};

/// Why `node` cannot host `spec` (None = eligible). `current` says whether the app runs there
/// now (cordoned nodes keep existing instances).
pub(crate) fn node_rejection(
    node: &NodeInfo,
    i: usize,
    spec: &AppSpec,
    current: bool,
    ledger: &Ledger,
    placed: &Placed,
) -> Option<String> {
    if node.draining {
        return Some("node draining".into());
    }
    if !node.healthy {
        return Some("node unhealthy".into());
    }
    if node.cordoned && !current {
        return Some("node cordoned".into());
    }
    if let Some(c) = spec
        .constraints
        .iter()
        .find(|c| !constraint_holds(c, node, |app| placed.get(app).map(|v| v[i])))
    {
        return Some(c.to_string());
    }
    spec.resources.shortfall(&ledger.free(i, &node.capacity))
}

/// Whether `c` holds on `node`; `hosts(app)` says whether `app` runs on it (`None` when that
/// app is not placed at all).
pub(crate) fn constraint_holds(
    c: &Constraint,
    node: &NodeInfo,
    hosts: impl Fn(&cluster_core::AppName) -> Option<bool>,
) -> bool {
    match c {
        Constraint::OnNodes { nodes } => nodes.contains(&node.id),
        Constraint::OnLabel { key, value } => node.labels.matches(key, value),
        Constraint::AvoidLabel { key, value } => !node.labels.matches(key, value),
        Constraint::WithApp { app } => hosts(app) == Some(true),
        Constraint::AwayFromApp { app } => hosts(app) != Some(true),
    }
}

/// Eligible node indices, and eliminated nodes grouped by reason.
pub(crate) fn filter<'a>(
    cluster: &Cluster<'a>,
    spec: &AppSpec,
    current: &[bool],
    ledger: &Ledger,
    placed: &Placed,
) -> (Vec<usize>, BTreeMap<String, Vec<&'a NodeId>>) {
    let mut eligible = Vec::new();
    let mut eliminated: BTreeMap<String, Vec<&NodeId>> = BTreeMap::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        match node_rejection(node, i, spec, current[i], ledger, placed) {
            None => eligible.push(i),
            Some(why) => eliminated.entry(why).or_default().push(&node.id),
        }
    }
    (eligible, eliminated)
}

/// "OnLabel(tier=storage) eliminated node-1, node-2; node cordoned: node-4".
pub(crate) fn summarize(eliminated: &BTreeMap<String, Vec<&NodeId>>) -> String {
    if eliminated.is_empty() {
        return "no nodes in the cluster".into();
    }
    eliminated
        .iter()
        .map(|(why, nodes)| {
            let list: Vec<&str> = nodes.iter().map(|n| n.as_str()).collect();
            format!("{why} eliminated {}", list.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
