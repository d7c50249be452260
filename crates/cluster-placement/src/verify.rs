//! Independent check of an assignment against the hard constraints.

use std::collections::BTreeMap;

use cluster_core::{AppName, Mode, NodeId};

use crate::Assignment;
use crate::model::{AppSpec, NodeInfo};
use crate::resources::Resources;
use crate::schedule::constraint_holds;

/// Lists every hard-constraint violation in `assignment` (empty = valid).
///
/// Checks: nodes exist and are healthy; `OnNodes`, `OnLabel`, `AvoidLabel`, `WithApp`,
/// `AwayFromApp` hold on every node of every app; summed requests fit every node's capacity;
/// `Replicas(n)` uses at most `n` nodes and a Singleton at most `standbys + 1`; Ring maps have P
/// entries owned by members with counts differing by at most one; no node is listed twice.
/// With `current`, also: cordoned nodes run nothing they did not run in `current`.
pub fn verify(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    assignment: &Assignment,
    current: Option<&Assignment>,
) -> Vec<String> {
    verify_by_app(nodes, apps, assignment, current)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// As [`verify`], with the app each violation concerns (`None` for node-level ones).
pub(crate) fn verify_by_app(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    assignment: &Assignment,
    current: Option<&Assignment>,
) -> Vec<(Option<AppName>, String)> {
    let by_id: BTreeMap<&NodeId, &NodeInfo> = nodes.iter().map(|n| (&n.id, n)).collect();
    let specs: BTreeMap<&AppName, &AppSpec> = apps.iter().map(|a| (&a.name, a)).collect();
    let mut out: Vec<(Option<AppName>, String)> = Vec::new();
    let mut used: BTreeMap<&NodeId, Resources> = BTreeMap::new();
    if let Err(e) = assignment.validate() {
        out.push((None, e.to_string()));
    }
    for (app, placement) in &assignment.apps {
        let mut app_out = Vec::new();
        let out_app = &mut app_out;
        let Some(spec) = specs.get(app) else {
            out.push((
                Some(app.clone()),
                format!("{app}: placed but not registered"),
            ));
            continue;
        };
        for node in &placement.nodes {
            let Some(info) = by_id.get(node) else {
                out_app.push(format!("{app}: runs on unknown node {node}"));
                continue;
            };
            if !info.healthy {
                out_app.push(format!("{app}: runs on unhealthy node {node}"));
            }
            if info.cordoned
                && let Some(cur) = current
                && !cur.app(app).is_some_and(|p| p.contains(node))
            {
                out_app.push(format!("{app}: newly placed on cordoned node {node}"));
            }
            let hosts = |other: &AppName| assignment.app(other).map(|p| p.contains(node));
            for c in &spec.constraints {
                if !constraint_holds(c, info, hosts) {
                    out_app.push(format!("{app}: {c} violated on {node}"));
                }
            }
            let u = used.entry(node).or_default();
            *u = u.saturating_add(spec.resources);
        }
        match spec.mode {
            Mode::Replicas { n } if placement.nodes.len() > n as usize => out_app.push(format!(
                "{app}: {} nodes for replicas({n})",
                placement.nodes.len()
            )),
            Mode::Singleton
                if spec
                    .standbys
                    .is_some_and(|s| placement.nodes.len() > s as usize + 1) =>
            {
                out_app.push(format!("{app}: more candidates than standbys + 1"));
            }
            Mode::Ring { partitions } => check_ring(app, placement, partitions, out_app),
            _ => {}
        }
        out.extend(app_out.into_iter().map(|v| (Some(app.clone()), v)));
    }
    for (node, u) in used {
        if let Some(info) = by_id.get(node)
            && let Some(s) = u.shortfall(&info.capacity)
        {
            out.push((None, format!("node {node} overcommitted: {s}")));
        }
    }
    out
}

fn check_ring(
    app: &AppName,
    placement: &crate::AppPlacement,
    partitions: u32,
    out: &mut Vec<String>,
) {
    let Some(map) = &placement.partitions else {
        out.push(format!("{app}: ring without a partition map"));
        return;
    };
    if map.len() != partitions as usize {
        out.push(format!(
            "{app}: {} partitions, expected {partitions}",
            map.len()
        ));
        return;
    }
    let mut counts: BTreeMap<&NodeId, usize> = placement.nodes.iter().map(|n| (n, 0)).collect();
    for owner in map {
        if let Some(c) = counts.get_mut(owner) {
            *c += 1;
        }
    }
    let n = placement.nodes.len().max(1);
    let (lo, hi) = (map.len() / n, map.len().div_ceil(n));
    if let Some((node, c)) = counts.iter().find(|(_, c)| **c < lo || **c > hi) {
        out.push(format!(
            "{app}: {node} owns {c} partitions, outside {lo}..={hi}"
        ));
    }
}
