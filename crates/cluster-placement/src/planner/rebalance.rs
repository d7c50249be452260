//! A rebalance plan for the admin API and auto-rebalance: `plan_rebalance` under the options'
//! filters and strategy, steps onto overloaded targets refused, and a resource-aware step when
//! app counts are balanced.

use cluster_core::Result;
use cluster_core::planner::{PlanRequest, RebalanceOptions};
use cluster_core::wire::placement_admin::{PlannedMigration, RebalancePlan};
use cluster_core::wire::rebalance::{StrategyName, parse_strategy};

use super::load::{over_limit, resource_step};
use crate::Assignment;
use crate::migration::{Migration, MigrationKind};
use crate::model::{AppSpec, NodeInfo};
use crate::rebalance::{RebalancePolicy, RebalanceStrategy, plan_rebalance};

/// The rebalance policy of `options` (`specs`: every app, to exclude all but `options.app`).
pub fn policy(options: &RebalanceOptions, specs: &[AppSpec]) -> Result<RebalancePolicy> {
    let mut policy = RebalancePolicy {
        max_concurrent: 0,
        exclude_apps: options.exclude_apps.clone(),
        include_labels: options.include_labels.clone(),
        strategy: match parse_strategy(&options.strategy)? {
            StrategyName::SpreadEvenly => RebalanceStrategy::SpreadEvenly,
            StrategyName::BinPack => RebalanceStrategy::BinPack,
            StrategyName::ZoneAware(key) => RebalanceStrategy::ZoneAware { key },
        },
        ..Default::default()
    };
    if let Some(t) = options.threshold {
        policy.threshold = t;
    }
    if let Some(app) = &options.app {
        policy
            .exclude_apps
            .extend(specs.iter().map(|s| s.name.clone()).filter(|n| n != app));
    }
    Ok(policy)
}

/// A migration as the admin API reports it.
pub fn planned(m: &Migration) -> PlannedMigration {
    PlannedMigration {
        app: m.app.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        kind: match &m.kind {
            MigrationKind::Start => "start",
            MigrationKind::Stop => "stop",
            MigrationKind::Move => "move",
            MigrationKind::Leader => "leader",
            MigrationKind::Partitions { .. } => "partitions",
        }
        .to_owned(),
    }
}

/// The rebalance plan of `request` under `options`.
pub fn rebalance(
    request: &PlanRequest,
    nodes: &[NodeInfo],
    specs: &[AppSpec],
    current: &Assignment,
    options: &RebalanceOptions,
) -> Result<RebalancePlan> {
    let policy = policy(options, specs)?;
    let plan = plan_rebalance(nodes, specs, current, &policy);
    let mut rejected: Vec<String> = plan
        .rejected
        .iter()
        .map(|(m, why)| format!("{m}: {why}"))
        .collect();
    let mut migrations: Vec<PlannedMigration> = Vec::new();
    for m in plan.migrations.iter().map(planned) {
        match over_limit(request, m.to.as_ref(), &options.max_node_load) {
            Some(why) => rejected.push(format!(
                "{} {}→{}: {why}",
                m.app,
                m.from.as_ref().map_or("-", |n| n.as_str()),
                m.to.as_ref().map_or("-", |n| n.as_str())
            )),
            None => migrations.push(m),
        }
    }
    if options.resource_aware
        && migrations.is_empty()
        && let Some(m) = resource_step(request, nodes, specs, current, &policy, options)
    {
        migrations.push(m);
    }
    Ok(RebalancePlan {
        migrations,
        imbalance_before: plan.imbalance_before,
        imbalance_after: plan.imbalance_after,
        rejected,
    })
}
