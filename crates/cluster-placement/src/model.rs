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

/// A hard placement constraint: the app never runs on a node that violates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Constraint {
    /// Only on these nodes.
    OnNodes {
        /// Allowed nodes.
        nodes: Vec<NodeId>,
    },
    /// Only on nodes whose label `key` equals `value`.
    OnLabel {
        /// Label key.
        key: String,
        /// Required value.
        value: String,
    },
    /// Never on nodes whose label `key` equals `value`.
    AvoidLabel {
        /// Label key.
        key: String,
        /// Value to avoid.
        value: String,
    },
    /// Only on nodes that host an instance of `app` (co-location).
    WithApp {
        /// The app to co-locate with.
        app: AppName,
    },
    /// Never on nodes that host an instance of `app` (anti-affinity).
    AwayFromApp {
        /// The app to stay away from.
        app: AppName,
    },
}

impl Constraint {
    /// The app this constraint depends on, if any (it must be placed first).
    pub fn dependency(&self) -> Option<&AppName> {
        match self {
            Constraint::WithApp { app } | Constraint::AwayFromApp { app } => Some(app),
            _ => None,
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Constraint::OnNodes { nodes } => {
                let list: Vec<&str> = nodes.iter().map(NodeId::as_str).collect();
                write!(f, "OnNodes({})", list.join(","))
            }
            Constraint::OnLabel { key, value } => write!(f, "OnLabel({key}={value})"),
            Constraint::AvoidLabel { key, value } => write!(f, "AvoidLabel({key}={value})"),
            Constraint::WithApp { app } => write!(f, "WithApp({app})"),
            Constraint::AwayFromApp { app } => write!(f, "AwayFromApp({app})"),
        }
    }
}

/// A soft preference: it orders eligible nodes but never makes a node ineligible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Preference {
    /// Prefer nodes whose label `key` equals `value`, by `weight`.
    PreferLabel {
        /// Label key.
        key: String,
        /// Preferred value.
        value: String,
        /// Higher = more preferred.
        weight: u32,
    },
    /// Prefer `node`, by `weight`.
    PreferNode {
        /// Preferred node.
        node: NodeId,
        /// Higher = more preferred.
        weight: u32,
    },
}

impl Preference {
    /// The weight this preference gives `node` (0 when it does not apply).
    pub fn weight_for(&self, node: &NodeInfo) -> i64 {
        match self {
            Preference::PreferLabel { key, value, weight } if node.labels.matches(key, value) => {
                i64::from(*weight)
            }
            Preference::PreferNode { node: n, weight } if *n == node.id => i64::from(*weight),
            _ => 0,
        }
    }
}

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
        self.preferences.iter().map(|p| p.weight_for(node)).sum()
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
