//! Parameters and results of the placement admin methods (JSON, admin format 1): cordon,
//! uncordon, drain, labels, move, rebalance plan and the placement status. Documented in
//! `docs/protocol/admin.md`.
//!
//! Parameters travel in [`AdminRequest::params`](super::admin::AdminRequest::params); results
//! in the reply's `result`. Fields added later must be optional (`#[serde(default)]`).

use serde::{Deserialize, Serialize};

use crate::id::{AppName, NodeId};
use crate::labels::Labels;

use super::member::MemberRecord;
use super::placement::AssignmentRecord;

/// Parameters naming one node (`node.cordon`, `node.uncordon`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeParams {
    /// The node.
    pub node: NodeId,
    /// Why (shown in the cordon record).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Parameters of `node.drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainParams {
    /// The node to drain.
    pub node: NodeId,
    /// Give up after this many milliseconds.
    pub timeout_ms: u64,
    /// Stop instances that cannot move anywhere.
    #[serde(default)]
    pub force: bool,
    /// At most this many instances migrate at a time (0 or absent: all at once).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_concurrent: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Result of `node.drain`: the node runs nothing any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReply {
    /// The drained node.
    pub node: NodeId,
    /// Instances that ran on it when the drain started.
    pub total: usize,
    /// Instances still running (empty on success).
    pub remaining: Vec<AppName>,
}

/// Parameters of `node.label`: labels to set and keys to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelParams {
    /// The node.
    pub node: NodeId,
    /// Labels added or changed.
    #[serde(default)]
    pub set: Labels,
    /// Label keys removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Parameters of `app.move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveParams {
    /// The app.
    pub app: AppName,
    /// The node it moves away from.
    pub from: NodeId,
    /// The target (`None`: the platform chooses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NodeId>,
    /// Give up after this many milliseconds.
    pub timeout_ms: u64,
}

/// Result of `app.move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveReply {
    /// The app.
    pub app: AppName,
    /// The node it left.
    pub from: NodeId,
    /// The node it runs on now.
    pub to: NodeId,
}

/// Parameters of `rebalance.plan`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RebalanceParams {
    /// Only this app (`None`: every app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppName>,
    /// Start only above this imbalance (`None`: the planner's default, 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// One planned step of a rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMigration {
    /// The app.
    pub app: AppName,
    /// Source node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NodeId>,
    /// Target node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NodeId>,
    /// `move` (Replicas instance), `leader` (Singleton leadership), `start`, `stop`,
    /// `partitions`.
    pub kind: String,
}

/// Result of `rebalance.plan`: what a rebalance would do now (nothing is changed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RebalancePlan {
    /// The steps, in order.
    pub migrations: Vec<PlannedMigration>,
    /// Imbalance before (0 = balanced; see `cluster_placement::imbalance`).
    pub imbalance_before: f64,
    /// Imbalance once the steps are applied.
    pub imbalance_after: f64,
    /// Proposed steps that were refused, with the reason.
    #[serde(default)]
    pub rejected: Vec<String>,
}

/// A pending move request (record `move.{app}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMove {
    /// The app.
    pub app: AppName,
    /// Source node.
    pub from: NodeId,
    /// Target node (`None`: the platform chooses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NodeId>,
}

/// Result of `placement.status`: the answering node's view of placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementStatus {
    /// The controller's current assignment (`None` before its first write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<AssignmentRecord>,
    /// Cordoned nodes.
    pub cordoned: Vec<NodeId>,
    /// Nodes being drained.
    pub draining: Vec<NodeId>,
    /// Move requests not completed yet.
    pub moves: Vec<PendingMove>,
    /// The live members (what each runs, with its role).
    pub members: Vec<MemberRecord>,
    /// The node holding the placement controller's lease (`None` during an election).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<NodeId>,
}
