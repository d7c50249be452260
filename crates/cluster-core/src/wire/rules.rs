//! The placement rules an app advertises in its member record (JSON, `v` = 1): hard
//! constraints, soft preferences, the resources one instance needs, the ranking strategy,
//! standbys and app labels. Set on an app with `App::set_placement`; interpreted by the
//! platform's planner (`cluster-placement`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{AppName, NodeId};
use crate::labels::Labels;
use crate::wire::resources::Resources;

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

/// Version of the placement rules document.
pub const SPEC_VERSION: u32 = 1;

/// A named scheduling strategy (custom strategies are registered on the planner).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NamedStrategy {
    /// Fewest instances first (default).
    #[default]
    SpreadEvenly,
    /// Fill nodes up.
    BinPack,
    /// Spread across zones first (label `key`).
    ZoneAware {
        /// The zone label.
        key: String,
    },
}

/// An app's placement rules, as advertised in its member record (JSON, `v` = 1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSpec {
    /// Document version.
    #[serde(default)]
    pub v: u32,
    /// Hard constraints.
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// Soft preferences.
    #[serde(default)]
    pub preferences: Vec<Preference>,
    /// Resources one instance needs.
    #[serde(default)]
    pub resources: Resources,
    /// Ranking strategy.
    #[serde(default)]
    pub strategy: NamedStrategy,
    /// Singleton apps: standby candidates besides the leader (`None` = every eligible node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standbys: Option<u32>,
    /// App labels, matched by an auto-rebalance `include_labels` filter.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl PlacementSpec {
    /// Empty rules of the current document version.
    pub fn current() -> Self {
        Self {
            v: SPEC_VERSION,
            ..Self::default()
        }
    }

    /// Decodes and checks a rules document.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let spec: PlacementSpec = serde_json::from_value(value.clone())
            .map_err(|e| Error::Malformed(format!("placement rules: {e}")))?;
        if spec.v != SPEC_VERSION {
            return Err(Error::Malformed(format!(
                "placement rules version {} (this node understands {SPEC_VERSION})",
                spec.v
            )));
        }
        Ok(spec)
    }

    /// Encodes the rules document.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::Internal(format!("placement rules: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let mut spec = PlacementSpec::current();
        spec.constraints.push(Constraint::OnLabel {
            key: "tier".into(),
            value: "compute".into(),
        });
        spec.strategy = NamedStrategy::ZoneAware { key: "rack".into() };
        let json = spec.to_json().unwrap();
        assert_eq!(PlacementSpec::from_json(&json).unwrap(), spec);

        let e = PlacementSpec::from_json(&serde_json::json!({"v": 2})).unwrap_err();
        assert!(e.to_string().contains("placement rules version 2"), "{e}");
        let e =
            PlacementSpec::from_json(&serde_json::json!({"v": 1, "constraints": 3})).unwrap_err();
        assert!(e.to_string().contains("placement rules:"), "{e}");
    }
}
