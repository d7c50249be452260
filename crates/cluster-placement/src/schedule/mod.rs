//! `schedule`: (nodes, apps, current assignment) → desired assignment.
//!
//! Steps:
//! 1. Every app's current instances on healthy known nodes are *reserved* in the resource
//!    ledger, so an app processed earlier cannot take the room an existing instance holds.
//! 2. Apps are processed in dependency order (`WithApp`/`AwayFromApp` targets first, ties by
//!    name). Apps in a dependency cycle are pending.
//! 3. For each app: release its own reservations, filter nodes by the hard constraints and
//!    free resources, then choose nodes by mode (sticky to current placements that are still
//!    valid) and strategy, and charge the ledger.
//! 4. Diff against the current assignment to list migrations.

mod cluster;
mod eligibility;
mod order;
mod select;

use std::collections::BTreeMap;

use cluster_core::{AppName, Mode, NodeId};

use crate::migration::{Migration, diff};
use crate::model::{AppSpec, NodeInfo};
use crate::ring::assign_partitions;
use crate::strategy::{Candidate, StrategyKind};
use crate::{AppPlacement, Assignment};

pub(crate) use cluster::{Cluster, Ledger, Placed};
pub(crate) use eligibility::constraint_holds;

/// The outcome of [`schedule`].
#[derive(Debug, Clone, Default)]
pub struct PlacementResult {
    /// The desired placement. Its version is `current.version + 1` if anything changed,
    /// otherwise `current.version`.
    pub assignment: Assignment,
    /// A human-readable explanation per app (placed, degraded or pending).
    pub reasons: BTreeMap<AppName, String>,
    /// Apps that could not be placed at all, with the reason (which constraint eliminated
    /// which nodes). They are absent from the assignment.
    pub pending: Vec<(AppName, String)>,
    /// Apps placed on fewer nodes than asked (Replicas(N) with fewer than N eligible nodes).
    pub degraded: Vec<(AppName, String)>,
    /// Steps from the current to the desired assignment.
    pub migrations: Vec<Migration>,
}

impl PlacementResult {
    /// Whether `app` is pending.
    pub fn is_pending(&self, app: &AppName) -> bool {
        self.pending.iter().any(|(a, _)| a == app)
    }
}

/// Computes the desired placement. Pure and deterministic: the same inputs always give the same
/// output, whatever the order of `nodes` and `apps`.
///
/// Guarantees: every hard constraint holds on every node in the output; no node's resources
/// are overcommitted by placements this call makes; unhealthy nodes run nothing; cordoned nodes
/// get no new instances (existing ones stay until drained); `Replicas(n)` gets exactly `n`
/// nodes when `n` are eligible; Ring partition counts differ by at most one between members.
pub fn schedule(nodes: &[NodeInfo], apps: &[AppSpec], current: &Assignment) -> PlacementResult {
    let cluster = Cluster::new(nodes);
    let mut result = PlacementResult::default();

    // The first spec of a name wins; duplicates are noted in the reasons.
    let mut specs: BTreeMap<&AppName, &AppSpec> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for spec in apps {
        if specs.contains_key(&spec.name) {
            duplicates.push(&spec.name);
        } else {
            specs.insert(&spec.name, spec);
        }
    }

    // 1. Reserve current instances.
    let mut ledger = Ledger::new(cluster.len());
    let mut current_sets: BTreeMap<&AppName, Vec<bool>> = BTreeMap::new();
    for (name, spec) in &specs {
        let mut set = vec![false; cluster.len()];
        if let Some(p) = current.app(name) {
            for node in &p.nodes {
                if let Some(i) = cluster.index(node)
                    && cluster.nodes[i].healthy
                    && !set[i]
                {
                    set[i] = true;
                    ledger.add(i, spec.resources);
                }
            }
        }
        current_sets.insert(name, set);
    }

    // 2. Order.
    let (order, blocked) = order::dependency_order(&specs);
    let mut placed: Placed = BTreeMap::new();
    let mut new = Assignment {
        format: crate::ASSIGNMENT_FORMAT,
        version: current.version,
        apps: BTreeMap::new(),
    };
    let mut pending: BTreeMap<AppName, String> = BTreeMap::new();
    for (name, reason) in blocked {
        release(&mut ledger, &current_sets[name], specs[name]);
        pending.insert(name.clone(), reason);
    }

    // 3. Place.
    for name in order {
        let spec = specs[name];
        let cur_set = &current_sets[name];
        release(&mut ledger, cur_set, spec);
        match place_app(
            &cluster,
            spec,
            current.app(name),
            cur_set,
            &ledger,
            &placed,
            &specs,
        ) {
            Ok(p) => {
                let mut set = vec![false; cluster.len()];
                for node in &p.placement.nodes {
                    if let Some(i) = cluster.index(node) {
                        set[i] = true;
                        ledger.add(i, spec.resources);
                    }
                }
                placed.insert(name.clone(), set);
                if let Some(d) = p.degraded {
                    result.degraded.push((name.clone(), d));
                }
                result.reasons.insert(name.clone(), p.reason);
                new.apps.insert(name.clone(), p.placement);
            }
            Err(reason) => {
                pending.insert(name.clone(), reason);
            }
        }
    }
    for (name, reason) in pending {
        result
            .reasons
            .insert(name.clone(), format!("pending: {reason}"));
        result.pending.push((name, reason));
    }

    for name in duplicates {
        if let Some(r) = result.reasons.get_mut(name) {
            r.push_str(" (app registered more than once; the first spec was used)");
        }
    }

    // 4. Diff and version.
    let modes: BTreeMap<AppName, Mode> =
        specs.iter().map(|(n, s)| ((*n).clone(), s.mode)).collect();
    result.migrations = diff(current, &new, &modes);
    if !new.same_placement(current) {
        new.version = current.version + 1;
    }
    result.assignment = new;
    result
}

fn release(ledger: &mut Ledger, set: &[bool], spec: &AppSpec) {
    for (i, &on) in set.iter().enumerate() {
        if on {
            ledger.remove(i, spec.resources);
        }
    }
}

struct Placement {
    placement: AppPlacement,
    reason: String,
    degraded: Option<String>,
}

fn place_app(
    cluster: &Cluster<'_>,
    spec: &AppSpec,
    current: Option<&AppPlacement>,
    cur_set: &[bool],
    ledger: &Ledger,
    placed: &Placed,
    specs: &BTreeMap<&AppName, &AppSpec>,
) -> Result<Placement, String> {
    for c in &spec.constraints {
        if let crate::model::Constraint::WithApp { app } = c {
            if !specs.contains_key(app) {
                return Err(format!("{c}: app {app} is not registered"));
            }
            if !placed.contains_key(app) {
                return Err(format!("{c}: app {app} is pending"));
            }
        }
    }
    if spec.mode == (Mode::Replicas { n: 0 }) {
        return Ok(Placement {
            placement: AppPlacement::default(),
            reason: "replicas(0): scaled to zero".into(),
            degraded: None,
        });
    }
    if let Mode::Ring { partitions: 0 } = spec.mode {
        return Err("ring(0) has no partitions to assign".into());
    }
    let (eligible, eliminated) = eligibility::filter(cluster, spec, cur_set, ledger, placed);
    let excluded = eligibility::summarize(&eliminated);
    if eligible.is_empty() {
        return Err(format!("no eligible node: {excluded}"));
    }
    let cands: Vec<Candidate<'_>> = eligible
        .iter()
        .map(|&i| {
            let node = cluster.nodes[i];
            Candidate {
                node,
                instances: ledger.instances[i],
                used: ledger.used[i],
                free: ledger.free(i, &node.capacity),
                preference: spec.preference_for(node),
                current: cur_set[i],
            }
        })
        .collect();
    let pos_of = |id: &NodeId| cands.iter().position(|c| &c.node.id == id);
    // Current placements that are still valid, in current order.
    let sticky: Vec<usize> = current
        .map(|p| p.nodes.iter().filter_map(pos_of).collect())
        .unwrap_or_default();
    let ids =
        |pos: &[usize]| -> Vec<NodeId> { pos.iter().map(|&p| cands[p].node.id.clone()).collect() };
    let all_sorted = || -> Vec<NodeId> {
        eligible
            .iter()
            .map(|&i| cluster.nodes[i].id.clone())
            .collect()
    };

    let mut degraded = None;
    let placement = match spec.mode {
        Mode::Singleton => {
            let k = spec
                .standbys
                .map_or(cands.len(), |s| (s as usize).saturating_add(1))
                .min(cands.len());
            let mut chosen: Vec<usize> = sticky.iter().copied().take(k).collect();
            let more = select::pick(spec, &cands, &chosen, k - chosen.len());
            chosen.extend(more);
            AppPlacement {
                nodes: ids(&chosen),
                partitions: None,
            }
        }
        Mode::Spread => AppPlacement {
            nodes: all_sorted(),
            partitions: None,
        },
        Mode::Replicas { n } => {
            let n = n as usize;
            let mut chosen = if sticky.len() > n {
                // Keep the n best-ranked current placements, in current order.
                let sub: Vec<Candidate<'_>> = sticky.iter().map(|&p| cands[p]).collect();
                let mut keep: Vec<usize> = select::pick(spec, &sub, &[], n)
                    .into_iter()
                    .map(|q| sticky[q])
                    .collect();
                keep.sort_by_key(|p| sticky.iter().position(|s| s == p));
                keep
            } else {
                sticky.clone()
            };
            let more = select::pick(spec, &cands, &chosen, n.saturating_sub(chosen.len()));
            chosen.extend(more);
            // ZoneAware keeps the zone spread of sticky placements (each repair covers one
            // more zone, so this ends; the result is a fixed point: scheduling stays idempotent).
            if let StrategyKind::ZoneAware { key } = &spec.strategy {
                while let Some((slot, target)) = select::zone_repair(&cands, &chosen, key) {
                    chosen[slot] = target;
                }
            }
            if chosen.len() < n {
                degraded = Some(format!(
                    "only {} of {n} replicas placed; {excluded}",
                    chosen.len()
                ));
            }
            AppPlacement {
                nodes: ids(&chosen),
                partitions: None,
            }
        }
        Mode::Ring { partitions } => {
            let members = all_sorted();
            let cur_parts = current.and_then(|p| p.partitions.as_deref());
            let map = assign_partitions(&members, partitions, cur_parts);
            AppPlacement {
                nodes: members,
                partitions: Some(map),
            }
        }
    };
    if placement.nodes.is_empty() {
        return Err(format!(
            "strategy {:?} chose no node among the eligible ones",
            spec.strategy
        ));
    }
    let list: Vec<&str> = placement.nodes.iter().map(NodeId::as_str).collect();
    let mut reason = format!("{} on {} ({:?})", spec.mode, list.join(", "), spec.strategy);
    if !eliminated.is_empty() {
        reason.push_str("; ");
        reason.push_str(&excluded);
    }
    Ok(Placement {
        placement,
        reason,
        degraded,
    })
}
