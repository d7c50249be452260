//! The steps of a run: the planner's options, which planned steps run, when each may start,
//! when it is done, and what a step that timed out becomes.

use std::time::Duration;

use cluster_core::planner::RebalanceOptions;
use cluster_core::wire::placement_admin::PlannedMigration;
use cluster_core::wire::rebalance::{AutoRebalanceConfig, MigrationPolicy};
use cluster_core::{AppName, NodeId, Role};

use super::Members;

/// The rebalance options of a run under `config` (every app).
pub fn options(config: &AutoRebalanceConfig) -> RebalanceOptions {
    RebalanceOptions {
        app: None,
        threshold: Some(config.threshold),
        exclude_apps: config.exclude_apps.clone(),
        include_labels: config.include_labels.clone(),
        strategy: config.strategy.clone(),
        resource_aware: config.resource_aware,
        resource_thresholds: config.resource_thresholds,
        max_node_load: config.max_node_load,
    }
}

/// The planned migrations a run executes: `move` and `leader` steps with a source and a
/// target, of apps not excluded.
pub fn runnable(
    migrations: Vec<PlannedMigration>,
    config: &AutoRebalanceConfig,
) -> Vec<PlannedMigration> {
    migrations
        .into_iter()
        .filter(|m| (m.kind == "move" || m.kind == "leader") && m.from.is_some() && m.to.is_some())
        .filter(|m| !config.exclude_apps.contains(&m.app))
        .collect()
}

/// Whether a step can start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes (the remaining checks: still valid, target load, approval, migration lock).
    Go,
    /// Not this step now: its app is migrating or within its cooldown; later steps may go.
    Skip,
    /// No step now: the rate limit is reached.
    Stop,
}

/// Whether a step of `app` may start: `busy` = a migration of the app is in flight;
/// `recent` = the apps migrated lately with the time since each started.
pub fn admit(
    app: &AppName,
    busy: bool,
    recent: &[(AppName, Duration)],
    policy: &MigrationPolicy,
) -> Admission {
    let cooldown = Duration::from_millis(policy.cooldown_period_ms);
    let window = Duration::from_millis(policy.rate_limit.window_ms);
    if busy || recent.iter().any(|(a, age)| a == app && *age < cooldown) {
        return Admission::Skip;
    }
    let in_window = recent.iter().filter(|(_, age)| *age < window).count();
    if policy.rate_limit.count > 0 && in_window >= policy.rate_limit.count as usize {
        return Admission::Stop;
    }
    Admission::Go
}

/// How long a started migration is remembered (for the cooldowns and the rate limit).
pub fn retention(config: &AutoRebalanceConfig, policy: &MigrationPolicy) -> Duration {
    Duration::from_millis(
        policy
            .cooldown_period_ms
            .max(policy.rate_limit.window_ms)
            .max(config.cooldown_period_ms),
    )
}

/// Whether `step` still applies to the app's current placement `placed` (a plan goes stale
/// after failures or operators' moves): a `leader` step needs its source leading and its
/// target a candidate; a `move` its source placed and its target not.
pub fn still_valid(step: &PlannedMigration, placed: &[NodeId]) -> bool {
    match (&step.from, &step.to) {
        (Some(f), Some(t)) if step.kind == "leader" => {
            placed.first() == Some(f) && placed.contains(t)
        }
        (Some(f), Some(t)) => placed.contains(f) && !placed.contains(t),
        _ => false,
    }
}

/// Why `step` must wait under the policy's `load_threshold`: its target's measured load
/// (highest dimension) is above it (`None`: go ahead; unmeasured targets and a threshold of 0
/// never wait).
pub fn over_load_threshold(
    members: &Members,
    step: &PlannedMigration,
    threshold: f64,
) -> Option<String> {
    if threshold <= 0.0 {
        return None;
    }
    let to = step.to.as_ref()?;
    let load = members.get(to)?.load?;
    let (dim, value) = load
        .fractions()
        .into_iter()
        .fold(("cpu", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    (value > threshold).then(|| {
        format!("target {to} load {dim} {value:.2} is above the load threshold {threshold:.2}")
    })
}

/// Whether `node` reports the app running (in `role`, when given).
fn runs(members: &Members, node: Option<&NodeId>, app: &AppName, role: Option<Role>) -> bool {
    node.and_then(|n| members.get(n)).is_some_and(|m| {
        m.apps
            .iter()
            .any(|a| a.name == *app && a.running && role.is_none_or(|r| a.role == r))
    })
}

/// Whether `step` completed according to membership: a `leader` step when the target leads;
/// a `move` when the target runs the app and the source does not.
pub fn done(members: &Members, step: &PlannedMigration) -> bool {
    if step.kind == "leader" {
        runs(members, step.to.as_ref(), &step.app, Some(Role::Leader))
    } else {
        runs(members, step.to.as_ref(), &step.app, None)
            && !runs(members, step.from.as_ref(), &step.app, None)
    }
}

/// Whether the target of `step` runs the app (in any role).
pub fn reached_target(members: &Members, step: &PlannedMigration) -> bool {
    runs(members, step.to.as_ref(), &step.app, None)
}

/// What becomes of a step that did not complete within the migration timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimedOut {
    /// It was itself a move back: it fails for good.
    RollbackFailed,
    /// Roll back: move the app back with this step (the target already runs it).
    MoveBack(PlannedMigration),
    /// Roll back by withdrawing the request: the app stays where it was.
    Withdrawn,
    /// No rollback (`rollback_on_failure` off).
    Kept,
}

impl TimedOut {
    /// What the failure reason adds (a `MoveBack` only once the move back is issued).
    pub fn suffix(&self) -> &'static str {
        match self {
            TimedOut::RollbackFailed => " (rollback)",
            TimedOut::MoveBack(_) => "; moving back",
            TimedOut::Withdrawn => "; request withdrawn, the app stays where it was",
            TimedOut::Kept => "; not rolled back",
        }
    }
}

/// The failure reason of a step that timed out, before the [`TimedOut::suffix`].
pub fn timeout_reason(timeout: Duration) -> String {
    format!("did not complete within {timeout:?}")
}

/// What becomes of `step` after it timed out: `rollback` = it was a move back;
/// `reached_target` = its target runs the app.
pub fn timed_out(
    step: &PlannedMigration,
    rollback: bool,
    policy: &MigrationPolicy,
    reached_target: bool,
) -> TimedOut {
    if rollback {
        TimedOut::RollbackFailed
    } else if policy.rollback_on_failure && reached_target {
        TimedOut::MoveBack(PlannedMigration {
            app: step.app.clone(),
            from: step.to.clone(),
            to: step.from.clone(),
            kind: step.kind.clone(),
        })
    } else if policy.rollback_on_failure {
        TimedOut::Withdrawn
    } else {
        TimedOut::Kept
    }
}
