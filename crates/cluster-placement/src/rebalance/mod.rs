//! Rebalance planning with hysteresis, drain and evacuation planning.
//!
//! Load of a node = active instances on it: one per Replicas/Spread/Ring instance, one for a
//! Singleton's leader (standbys do not count). Only schedulable nodes (healthy, not cordoned)
//! count and take part.

mod drain;
mod moves;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cluster_core::{AppName, Labels, Mode, NodeId};

use crate::Assignment;
use crate::migration::Migration;
use crate::model::{AppSpec, NodeInfo};

pub use drain::{DrainPlan, plan_drain, plan_drain_nodes, plan_evacuate};

/// Everything a custom rebalance strategy sees.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceState<'a> {
    /// The nodes.
    pub nodes: &'a [NodeInfo],
    /// The app specs.
    pub apps: &'a [AppSpec],
    /// The current assignment.
    pub assignment: &'a Assignment,
}

/// A user-supplied rebalance: proposes `Move` / `Leader` migrations; the planner keeps only
/// those that respect every hard constraint and the policy's app filters.
pub type CustomRebalance = Arc<dyn Fn(&RebalanceState<'_>) -> Vec<Migration> + Send + Sync>;

/// How a rebalance chooses moves.
#[derive(Clone, Default)]
pub enum RebalanceStrategy {
    /// Move instances from the most to the least loaded nodes (each move narrows the gap by at
    /// least one instance).
    #[default]
    SpreadEvenly,
    /// Move instances from the least loaded non-empty node to the most loaded node with room
    /// that already runs at least as many (consolidates; ignores `threshold`).
    BinPack,
    /// First give Replicas apps instances in zones (label `key`) they do not use yet, then
    /// spread evenly without reducing any app's number of zones.
    ZoneAware {
        /// The zone label.
        key: String,
    },
    /// User-supplied moves, validated by the planner.
    Custom(CustomRebalance),
}

impl std::fmt::Debug for RebalanceStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebalanceStrategy::SpreadEvenly => f.write_str("SpreadEvenly"),
            RebalanceStrategy::BinPack => f.write_str("BinPack"),
            RebalanceStrategy::ZoneAware { key } => write!(f, "ZoneAware({key})"),
            RebalanceStrategy::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// What a rebalance may do.
#[derive(Debug, Clone)]
pub struct RebalancePolicy {
    /// Start only when [`imbalance`] exceeds this (0.2 = a node 20 % off the balanced load).
    pub threshold: f64,
    /// Stop once imbalance is at or below this (hysteresis; `None` = `threshold / 2`).
    pub stop_threshold: Option<f64>,
    /// At most this many migrations per plan (0 = no limit). Re-plan after applying for more.
    pub max_concurrent: usize,
    /// Apps never moved.
    pub exclude_apps: BTreeSet<AppName>,
    /// When not empty, only apps carrying all these labels are moved.
    pub include_labels: Labels,
    /// How moves are chosen.
    pub strategy: RebalanceStrategy,
}

impl Default for RebalancePolicy {
    fn default() -> Self {
        Self {
            threshold: 0.2,
            stop_threshold: None,
            max_concurrent: 2,
            exclude_apps: BTreeSet::new(),
            include_labels: Labels::new(),
            strategy: RebalanceStrategy::SpreadEvenly,
        }
    }
}

impl RebalancePolicy {
    /// Whether the policy allows moving `app`.
    pub fn may_move(&self, app: &AppSpec) -> bool {
        !self.exclude_apps.contains(&app.name)
            && self
                .include_labels
                .iter()
                .all(|(k, v)| app.labels.matches(k, v))
    }
}

/// A rebalance plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Moves to execute (at most `max_concurrent`).
    pub migrations: Vec<Migration>,
    /// [`imbalance`] before.
    pub imbalance_before: f64,
    /// [`imbalance`] once the migrations are applied.
    pub imbalance_after: f64,
    /// The assignment once the migrations are applied (version bumped if anything moved).
    pub assignment: Assignment,
    /// Custom-strategy proposals that were refused, with the reason.
    pub rejected: Vec<(Migration, String)>,
}

impl Plan {
    /// Whether nothing is to be moved.
    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }
}

/// Active instances per schedulable node.
pub fn node_loads(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    assignment: &Assignment,
) -> BTreeMap<NodeId, u32> {
    let modes: BTreeMap<&AppName, Mode> = apps.iter().map(|a| (&a.name, a.mode)).collect();
    let mut loads: BTreeMap<NodeId, u32> = nodes
        .iter()
        .filter(|n| n.schedulable())
        .map(|n| (n.id.clone(), 0))
        .collect();
    for (app, p) in &assignment.apps {
        let active: &[NodeId] = match modes.get(app) {
            Some(Mode::Singleton) => &p.nodes[..p.nodes.len().min(1)],
            _ => &p.nodes,
        };
        for n in active {
            if let Some(l) = loads.get_mut(n) {
                *l += 1;
            }
        }
    }
    loads
}

/// How far the busiest or idlest schedulable node is from the best integer balance, relative
/// to the average load: `max(max_load − ⌈avg⌉, ⌊avg⌋ − min_load, 0) / avg`. A cluster whose
/// loads differ by at most one scores 0.
pub fn imbalance(nodes: &[NodeInfo], apps: &[AppSpec], assignment: &Assignment) -> f64 {
    imbalance_of(&node_loads(nodes, apps, assignment))
}

pub(crate) fn imbalance_of(loads: &BTreeMap<NodeId, u32>) -> f64 {
    let n = loads.len() as f64;
    let total: u64 = loads.values().map(|&l| u64::from(l)).sum();
    if loads.is_empty() || total == 0 {
        return 0.0;
    }
    let avg = total as f64 / n;
    let max = f64::from(loads.values().copied().max().unwrap_or(0));
    let min = f64::from(loads.values().copied().min().unwrap_or(0));
    let over = max - avg.ceil();
    let under = avg.floor() - min;
    over.max(under).max(0.0) / avg
}

/// Plans moves that even out (or, with BinPack, consolidate) load, within the policy.
///
/// Hysteresis: nothing moves unless imbalance exceeds `threshold`; moving stops at
/// `stop_threshold` or when no move improves balance, so applying the plan (with no
/// `max_concurrent` cut) and planning again yields an empty plan. Every move respects all hard
/// constraints and capacities; Spread and Ring apps (which run on every eligible node) are not
/// moved, Singleton apps move their leader to an existing candidate.
pub fn plan_rebalance(
    nodes: &[NodeInfo],
    apps: &[AppSpec],
    current: &Assignment,
    policy: &RebalancePolicy,
) -> Plan {
    moves::plan(nodes, apps, current, policy)
}
