//! Records of the placement bucket (`{P}_placement`): the assignment written by the
//! controller, and the operators' requests (cordon, drain, move, label overrides).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{AppName, NodeId};
use crate::labels::Labels;

/// Version of every placement record.
pub const PLACEMENT_RECORD_VERSION: u32 = 1;

/// Key of the assignment record.
pub const ASSIGNMENT_KEY: &str = "assignment";

/// Key of a node's cordon record: `cordon.{node}`.
pub fn cordon_key(node: &NodeId) -> String {
    format!("cordon.{node}")
}

/// Key of a node's drain request: `drain.{node}`.
pub fn drain_key(node: &NodeId) -> String {
    format!("drain.{node}")
}

/// Key of an app's move request: `move.{app}`.
pub fn move_key(app: &AppName) -> String {
    format!("move.{app}")
}

/// Key of a node's label overrides: `labels.{node}`.
pub fn labels_key(node: &NodeId) -> String {
    format!("labels.{node}")
}

pub use super::assignment::{ASSIGNMENT_FORMAT, AppPlacement, Assignment, AssignmentError};

/// The former name of [`AppPlacement`] (kept for source compatibility).
pub type PlacementView = AppPlacement;

/// The former name of [`Assignment`] (kept for source compatibility).
pub type AssignmentView = Assignment;

/// The controller's record under [`ASSIGNMENT_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    /// Record version.
    pub v: u32,
    /// The epoch of the controller that wrote it (its fencing token).
    pub epoch: u64,
    /// The assignment.
    pub assignment: Assignment,
    /// Apps that cannot be placed, with the reason.
    #[serde(default)]
    pub pending: BTreeMap<AppName, String>,
    /// Instances kept on a node being drained without `force` because they cannot run
    /// anywhere else, with the reason (absent in records of older controllers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<AppName, String>,
}

/// A cordon: the node receives no new placements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CordonRecord {
    /// Record version.
    pub v: u32,
    /// Why (free text).
    #[serde(default)]
    pub reason: String,
    /// Node that issued the request.
    pub by: NodeId,
}

/// A drain request: every instance moves off the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRecord {
    /// Record version.
    pub v: u32,
    /// Unique id of the drain operation.
    pub id: String,
    /// Stop instances that cannot move anywhere.
    pub force: bool,
    /// Node that issued the request.
    pub by: NodeId,
    /// At most this many instances migrate off the node at a time (0: no limit; absent in
    /// records of older nodes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_concurrent: u32,
    /// With `max_concurrent`: the apps allowed to leave the node so far (the drain operation
    /// adds more as earlier migrations complete). Ignored when `max_concurrent` is 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<AppName>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A move request for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// Record version.
    pub v: u32,
    /// Unique id of the move.
    pub id: String,
    /// The node the app moves away from.
    pub from: NodeId,
    /// The target (`None`: the platform chooses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<NodeId>,
    /// Node that issued the request.
    pub by: NodeId,
    /// Fencing token of the app's migration lock held by the requester (0 or absent: written
    /// by a node without migration locks). A move whose token is not the current holder's is
    /// stale and ignored.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub lock: u64,
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

/// Label overrides of a node, applied by the node on top of its configured labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelsRecord {
    /// Record version.
    #[serde(default = "one")]
    pub v: u32,
    /// Labels set (added or changed).
    pub set: Labels,
    /// Label keys removed.
    #[serde(default)]
    pub removed: Vec<String>,
}

fn one() -> u32 {
    1
}

/// Encodes a record as JSON.
pub fn encode<T: Serialize>(record: &T) -> Result<Bytes> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encode placement record: {e}")))
}

/// Decodes a record and checks its version field `v`.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let v: Version = serde_json::from_slice(bytes)
        .map_err(|e| Error::Malformed(format!("{what} record: {e}")))?;
    if v.v != PLACEMENT_RECORD_VERSION {
        return Err(Error::Malformed(format!(
            "{what} record version {} (this node understands {PLACEMENT_RECORD_VERSION})",
            v.v
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::Malformed(format!("{what} record: {e}")))
}

impl Default for AssignmentRecord {
    fn default() -> Self {
        Self {
            v: PLACEMENT_RECORD_VERSION,
            epoch: 0,
            assignment: Assignment::default(),
            pending: BTreeMap::new(),
            blocked: BTreeMap::new(),
        }
    }
}
