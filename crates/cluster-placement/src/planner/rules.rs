//! The placement rules an app advertises in its member record (JSON, `v` = 1), and their
//! translation into the scheduler's [`AppSpec`].

use std::sync::Arc;

use cluster_core::{AppName, Error, Labels, Mode, Result};
use serde::{Deserialize, Serialize};

use crate::model::{AppSpec, Constraint, Preference};
use crate::resources::Resources;
use crate::strategy::{Strategy, StrategyKind};

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

    /// The scheduler's spec of app `name` under these rules; `custom` (a strategy registered
    /// on the planner) overrides the named strategy.
    pub fn app_spec(self, name: AppName, mode: Mode, custom: Option<Arc<dyn Strategy>>) -> AppSpec {
        let mut spec = AppSpec::new(name, mode).with_resources(self.resources);
        spec.constraints = self.constraints;
        spec.preferences = self.preferences;
        spec.standbys = self.standbys;
        spec.labels = self.labels;
        spec.strategy = match (custom, self.strategy) {
            (Some(custom), _) => StrategyKind::Custom(custom),
            (None, NamedStrategy::SpreadEvenly) => StrategyKind::SpreadEvenly,
            (None, NamedStrategy::BinPack) => StrategyKind::BinPack,
            (None, NamedStrategy::ZoneAware { key }) => StrategyKind::ZoneAware { key },
        };
        spec
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

    #[test]
    fn app_spec_carries_the_rules_and_a_custom_strategy_wins() {
        let mut rules = PlacementSpec::current();
        rules.standbys = Some(1);
        rules.strategy = NamedStrategy::BinPack;
        let name = AppName::new("db").unwrap();
        let spec = rules.clone().app_spec(name.clone(), Mode::Singleton, None);
        assert_eq!(spec.standbys, Some(1));
        assert!(matches!(spec.strategy, StrategyKind::BinPack));
        let custom: Arc<dyn Strategy> =
            Arc::new(|_: &AppSpec, c: &[crate::Candidate<'_>]| (0..c.len()).rev().collect());
        let spec = rules.app_spec(name, Mode::Singleton, Some(custom));
        assert!(matches!(spec.strategy, StrategyKind::Custom(_)));
    }
}
