//! The placement rules document (defined in `cluster_core::wire::rules`) translated into the
//! scheduler's [`AppSpec`].

use std::sync::Arc;

use cluster_core::{AppName, Mode};

pub use cluster_core::wire::rules::{NamedStrategy, PlacementSpec, SPEC_VERSION};

use crate::model::AppSpec;
use crate::strategy::{Strategy, StrategyKind};

/// The scheduler's spec of app `name` under `rules`; `custom` (a strategy registered on the
/// planner) overrides the named strategy.
pub fn app_spec(
    rules: PlacementSpec,
    name: AppName,
    mode: Mode,
    custom: Option<Arc<dyn Strategy>>,
) -> AppSpec {
    let mut spec = AppSpec::new(name, mode).with_resources(rules.resources);
    spec.constraints = rules.constraints;
    spec.preferences = rules.preferences;
    spec.standbys = rules.standbys;
    spec.labels = rules.labels;
    spec.strategy = match (custom, rules.strategy) {
        (Some(custom), _) => StrategyKind::Custom(custom),
        (None, NamedStrategy::SpreadEvenly) => StrategyKind::SpreadEvenly,
        (None, NamedStrategy::BinPack) => StrategyKind::BinPack,
        (None, NamedStrategy::ZoneAware { key }) => StrategyKind::ZoneAware { key },
    };
    spec
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn app_spec_carries_the_rules_and_a_custom_strategy_wins() {
        let mut rules = PlacementSpec::current();
        rules.standbys = Some(1);
        rules.strategy = NamedStrategy::BinPack;
        let name = AppName::new("db").unwrap();
        let spec = app_spec(rules.clone(), name.clone(), Mode::Singleton, None);
        assert_eq!(spec.standbys, Some(1));
        assert!(matches!(spec.strategy, StrategyKind::BinPack));
        let custom: Arc<dyn Strategy> =
            Arc::new(|_: &AppSpec, c: &[crate::Candidate<'_>]| (0..c.len()).rev().collect());
        let spec = app_spec(rules, name, Mode::Singleton, Some(custom));
        assert!(matches!(spec.strategy, StrategyKind::Custom(_)));
    }
}
