//! The scheduler's inputs: nodes and app specifications.

use cluster_core::{AppName, Labels, Mode, NodeId};
use serde::{Deserialize, Serialize};

use crate::resources::Resources;
use crate::strategy::StrategyKind;

/// What the scheduler knows about one member node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node.
    pub id: NodeId,
    /// Its labels (zone, tier, ...).
    pub labels: Labels,
    /// Cordoned nodes keep what they run but receive no new placements.
    pub cordoned: bool,
    /// Unhealthy nodes run nothing: their instances are rescheduled elsewhere.
    pub healthy: bool,
    /// Being drained: set together with `healthy = false` by drain planning, so the reason a
    /// node is not eligible says "node draining" rather than "node unhealthy".
    #[serde(default)]
    pub draining: bool,
    /// What the node can hold; [`Resources::UNLIMITED`] when not declared.
    pub capacity: Resources,
}

impl NodeInfo {
    /// A healthy, uncordoned node with unlimited capacity.
    pub fn new(id: NodeId, labels: Labels) -> Self {
        Self {
            id,
            labels,
            cordoned: false,
            healthy: true,
            draining: false,
            capacity: Resources::UNLIMITED,
        }
    }

    /// Sets the capacity.
    pub fn with_capacity(mut self, capacity: Resources) -> Self {
        self.capacity = capacity;
        self
    }

    /// Whether the node may receive new placements.
    pub fn schedulable(&self) -> bool {
        self.healthy && !self.cordoned
    }
}

pub use cluster_core::wire::rules::{Constraint, Preference};

/// Everything the scheduler needs to know about one app.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The app.
    pub name: AppName,
    /// How many instances run and how they cooperate.
    pub mode: Mode,
    /// Hard constraints; all of them must hold on every node the app runs on.
    pub constraints: Vec<Constraint>,
    /// Resources one instance needs on its node.
    pub resources: Resources,
    /// Soft preferences (summed per node).
    pub preferences: Vec<Preference>,
    /// How eligible nodes are ranked.
    pub strategy: StrategyKind,
    /// For Singleton apps: how many standby candidates besides the leader (`None` = every
    /// eligible node is a candidate).
    pub standbys: Option<u32>,
    /// App labels, matched by a rebalance policy's `include_labels`.
    pub labels: Labels,
}

impl AppSpec {
    /// An app with no constraints, no resource request and the default strategy.
    pub fn new(name: AppName, mode: Mode) -> Self {
        Self {
            name,
            mode,
            constraints: Vec::new(),
            resources: Resources::ZERO,
            preferences: Vec::new(),
            strategy: StrategyKind::default(),
            standbys: None,
            labels: Labels::new(),
        }
    }

    /// Adds a hard constraint.
    pub fn with(mut self, c: Constraint) -> Self {
        self.constraints.push(c);
        self
    }

    /// Adds a soft preference.
    pub fn prefer(mut self, p: Preference) -> Self {
        self.preferences.push(p);
        self
    }

    /// Sets the per-instance resource request.
    pub fn with_resources(mut self, r: Resources) -> Self {
        self.resources = r;
        self
    }

    /// Sets the strategy.
    pub fn with_strategy(mut self, s: StrategyKind) -> Self {
        self.strategy = s;
        self
    }

    /// Sum of the preference weights for `node`.
    pub fn preference_for(&self, node: &NodeInfo) -> i64 {
        self.preferences.iter().map(|p| weight_for(p, node)).sum()
    }
}

/// The weight `preference` gives `node` (0 when it does not apply).
fn weight_for(preference: &Preference, node: &NodeInfo) -> i64 {
    match preference {
        Preference::PreferLabel { key, value, weight } if node.labels.matches(key, value) => {
            i64::from(*weight)
        }
        Preference::PreferNode { node: n, weight } if *n == node.id => i64::from(*weight),
        _ => 0,
    }
}

/// Shorthand constructors for constraints and preferences.
pub mod dsl {
    use super::*;

    /// `OnNodes(...)`.
    pub fn on_nodes(nodes: impl IntoIterator<Item = NodeId>) -> Constraint {
        Constraint::OnNodes {
            nodes: nodes.into_iter().collect(),
        }
    }
    /// `OnLabel(key, value)`.
    pub fn on_label(key: &str, value: &str) -> Constraint {
        Constraint::OnLabel {
            key: key.into(),
            value: value.into(),
        }
    }
    /// `AvoidLabel(key, value)`.
    pub fn avoid_label(key: &str, value: &str) -> Constraint {
        Constraint::AvoidLabel {
            key: key.into(),
            value: value.into(),
        }
    }
    /// `WithApp(app)`.
    pub fn with_app(app: AppName) -> Constraint {
        Constraint::WithApp { app }
    }
    /// `AwayFromApp(app)`.
    pub fn away_from_app(app: AppName) -> Constraint {
        Constraint::AwayFromApp { app }
    }
    /// `PreferLabel(key, value, weight)`.
    pub fn prefer_label(key: &str, value: &str, weight: u32) -> Preference {
        Preference::PreferLabel {
            key: key.into(),
            value: value.into(),
            weight,
        }
    }
    /// `PreferNode(node, weight)`.
    pub fn prefer_node(node: NodeId, weight: u32) -> Preference {
        Preference::PreferNode { node, weight }
    }
}
