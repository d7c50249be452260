//! Placement policy as a trait: what the runtime's placement controller asks, and what a
//! [`Planner`] (the pure implementations live in `cluster-placement`) answers.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::id::{AppName, NodeId};
use crate::labels::Labels;
use crate::mode::Mode;
use crate::wire::assignment::Assignment;

/// A node as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNode {
    /// The node.
    pub id: NodeId,
    /// Its effective labels.
    pub labels: Labels,
    /// Whether it reports itself healthy.
    pub healthy: bool,
    /// Cordoned: keeps what it runs, receives nothing new.
    pub cordoned: bool,
    /// Being drained: everything moves off.
    pub draining: bool,
    /// The drain is forced: instances that cannot move anywhere are stopped. Without force
    /// they stay on the draining node (reported in [`PlanOutcome::blocked`]).
    pub drain_force: bool,
    /// A drain limited to a number of concurrent migrations: only these apps may leave the
    /// draining node now (the drain operation releases more as earlier ones complete).
    /// `None`: every app leaves at once.
    pub drain_release: Option<BTreeSet<AppName>>,
    /// Apps whose instance runs on it now.
    pub running: BTreeSet<AppName>,
    /// Singleton apps it leads now.
    pub leading: BTreeSet<AppName>,
    /// Apps registered on it (whether running or not): an app can only run where it is
    /// registered.
    pub hosts: BTreeSet<AppName>,
    /// Its measured load (`None`: not measured).
    pub load: Option<crate::member::NodeLoad>,
}

/// An app as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanApp {
    /// The app.
    pub name: AppName,
    /// Its mode.
    pub mode: Mode,
    /// Its placement rules (opaque JSON, see the facade's typed builder).
    pub placement: Option<serde_json::Value>,
}

/// An operator's move request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMove {
    /// The app.
    pub app: AppName,
    /// Move away from this node.
    pub from: NodeId,
    /// To this node (`None`: the planner chooses).
    pub to: Option<NodeId>,
}

/// Everything the planner decides from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// Live members.
    pub nodes: Vec<PlanNode>,
    /// Apps advertised by members.
    pub apps: Vec<PlanApp>,
    /// The current assignment.
    pub current: Assignment,
    /// Pending move requests.
    pub moves: Vec<PlanMove>,
}

/// The planner's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOutcome {
    /// The new assignment (version bumped when anything changed).
    pub assignment: Assignment,
    /// Apps that cannot be placed, with the reason.
    pub pending: BTreeMap<AppName, String>,
    /// Instances that stay on a node drained without force (no eligible target), with the
    /// reason.
    pub blocked: BTreeMap<AppName, String>,
}

/// Decides where apps run. Implementations are pure and deterministic.
///
/// # To ensure correctness
///
/// * Every hard constraint of every app holds on every node of the returned assignment.
/// * The same request gives the same outcome; the version changes only when a placement does.
/// * Unhealthy nodes run nothing; cordoned nodes get no new instances. A draining node runs
///   nothing, except (without `drain_force`) instances that have no eligible node elsewhere:
///   they stay and are listed in `blocked`. With `drain_release`, only the listed apps
///   leave the draining node; the others keep their current placement.
/// * Make-before-break: when an instance moves between two live nodes (also by an operator's
///   move), the old node stays in the assignment until the new one reports the instance
///   running.
/// * An app is placed only on nodes that host it ([`PlanNode::hosts`]); the resources an app's
///   rules ask for are a hard constraint against the node's capacity; an app that fits nowhere
///   is listed in `pending`, never placed elsewhere.
///
/// Executable form: `cluster_testkit::conformance::planner`.
pub trait Planner: Send + Sync + 'static {
    /// Computes the assignment.
    fn plan(&self, request: &PlanRequest) -> Result<PlanOutcome>;

    /// A rebalance plan for the current state (every app, or only `app`), changing nothing.
    /// Every step must respect the hard constraints; a balanced cluster gives an empty plan.
    /// The default answers `Unsupported`.
    fn rebalance(
        &self,
        request: &PlanRequest,
        app: Option<&AppName>,
        threshold: Option<f64>,
    ) -> Result<crate::wire::placement_admin::RebalancePlan> {
        let _ = (request, app, threshold);
        Err(crate::error::Error::Unsupported(
            "this planner does not plan rebalances".into(),
        ))
    }

    /// A rebalance plan under an auto-rebalance policy (app filters, strategy). The default
    /// calls [`rebalance`](Self::rebalance) and drops steps of excluded apps; it cannot honour
    /// `include_labels` or `strategy`.
    fn rebalance_with(
        &self,
        request: &PlanRequest,
        options: &RebalanceOptions,
    ) -> Result<crate::wire::placement_admin::RebalancePlan> {
        let mut plan = self.rebalance(request, options.app.as_ref(), options.threshold)?;
        plan.migrations
            .retain(|m| !options.exclude_apps.contains(&m.app));
        Ok(plan)
    }
}

/// What an (auto-)rebalance may do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RebalanceOptions {
    /// Only this app (`None`: every app).
    pub app: Option<AppName>,
    /// Start above this imbalance (`None`: the planner's default); stop at or below half.
    pub threshold: Option<f64>,
    /// Apps never moved.
    pub exclude_apps: BTreeSet<AppName>,
    /// When not empty, only apps carrying all these labels are moved.
    pub include_labels: Labels,
    /// `spread-evenly`, `bin-pack`, `zone-aware[:label]` (empty: spread evenly).
    pub strategy: String,
    /// Resource-aware: when app counts are balanced but the measured load spreads more than
    /// `resource_thresholds`, move one instance from the most to the least loaded node.
    pub resource_aware: bool,
    /// Load spread thresholds (resource-aware).
    pub resource_thresholds: crate::wire::rebalance::ResourceThresholds,
    /// Never plan a step onto a node above these load limits.
    pub max_node_load: crate::wire::rebalance::ResourceLimits,
}
