//! What triggers a run: membership changes, the interval, measured load, app counts and the
//! cron schedule.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_core::wire::rebalance::{AutoRebalanceConfig, RebalanceTriggers};
use cluster_core::{NodeId, NodeLoad};

/// The trigger of a membership change: `known` are the members at the previous look (`None`:
/// the first look, which triggers nothing), `nodes` the members now. A leave is reported over
/// a join; `None` when nothing enabled changed.
pub fn membership_trigger(
    known: Option<&BTreeSet<NodeId>>,
    nodes: &BTreeSet<NodeId>,
    triggers: &RebalanceTriggers,
) -> Option<String> {
    let known = known?;
    let joined = triggers
        .on_node_join
        .then(|| nodes.difference(known).next())
        .flatten()
        .map(|n| format!("node {n} joined"));
    let left = triggers
        .on_node_leave
        .then(|| known.difference(nodes).next())
        .flatten()
        .map(|n| format!("node {n} left"));
    left.or(joined)
}

/// The first of the configured triggers that fires now, in this order: the interval (elapsed
/// since the last evaluation; `None`: never evaluated), a measured-load spread above the
/// thresholds (`loads` of the nodes that report one), app-count imbalance (every tick), the
/// cron schedule (`schedule_fired`: it fired since the last look).
pub fn timed_trigger(
    config: &AutoRebalanceConfig,
    since_last_eval: Option<Duration>,
    loads: &[NodeLoad],
    schedule_fired: bool,
) -> Option<String> {
    let interval = Duration::from_millis(config.interval_ms);
    if config.interval_ms > 0 && since_last_eval.is_none_or(|d| d >= interval) {
        return Some("interval".into());
    }
    if config.triggers.on_resource_imbalance
        && let Some((dim, spread, limit)) = config.resource_thresholds.exceeded(loads)
    {
        return Some(format!(
            "resource imbalance: {dim} spread {spread:.2} > {limit:.2}"
        ));
    }
    if config.triggers.on_app_count_imbalance {
        return Some("app-count imbalance".into());
    }
    schedule_fired.then(|| "schedule".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<NodeId> {
        ids.iter().map(|s| NodeId::new(*s).unwrap()).collect()
    }

    #[test]
    fn joins_and_leaves_trigger_when_enabled() {
        let all = RebalanceTriggers::default();
        let known = set(&["n1", "n2"]);
        assert_eq!(membership_trigger(None, &known, &all), None);
        assert_eq!(membership_trigger(Some(&known), &known, &all), None);
        assert_eq!(
            membership_trigger(Some(&known), &set(&["n1", "n2", "n3"]), &all).as_deref(),
            Some("node n3 joined")
        );
        assert_eq!(
            membership_trigger(Some(&known), &set(&["n1", "n3"]), &all).as_deref(),
            Some("node n2 left")
        );
        let joins_only = RebalanceTriggers {
            on_node_leave: false,
            ..all
        };
        assert_eq!(
            membership_trigger(Some(&known), &set(&["n1", "n3"]), &joins_only).as_deref(),
            Some("node n3 joined")
        );
    }

    #[test]
    fn the_interval_wins_then_load_then_app_counts_then_the_schedule() {
        let mut config = AutoRebalanceConfig {
            interval_ms: 1000,
            ..AutoRebalanceConfig::default()
        };
        config.triggers.on_resource_imbalance = true;
        config.triggers.on_app_count_imbalance = true;
        config.resource_thresholds.cpu_imbalance = 0.3;
        let loads = [
            NodeLoad::from_fractions(0.9, 0.0, 0.0),
            NodeLoad::from_fractions(0.1, 0.0, 0.0),
        ];
        let ms = Duration::from_millis;
        let t = |since, schedule| timed_trigger(&config, since, &loads, schedule);
        assert_eq!(t(None, true).as_deref(), Some("interval"));
        assert_eq!(t(Some(ms(1000)), true).as_deref(), Some("interval"));
        assert_eq!(
            t(Some(ms(999)), true).as_deref(),
            Some("resource imbalance: cpu spread 0.80 > 0.30")
        );
        config.resource_thresholds.cpu_imbalance = 0.0;
        let t = |since, schedule| timed_trigger(&config, since, &loads, schedule);
        assert_eq!(
            t(Some(ms(999)), true).as_deref(),
            Some("app-count imbalance")
        );
        config.triggers.on_app_count_imbalance = false;
        let t = |since, schedule| timed_trigger(&config, since, &loads, schedule);
        assert_eq!(t(Some(ms(999)), true).as_deref(), Some("schedule"));
        assert_eq!(t(Some(ms(999)), false), None);
        config.interval_ms = 0;
        assert_eq!(timed_trigger(&config, None, &loads, false), None);
    }
}
