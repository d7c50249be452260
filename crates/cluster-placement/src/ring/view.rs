//! A read-only view of one Ring app's partition map, answering routing questions.

use cluster_core::{AppName, NodeId};

use super::hash::partition_of;
use crate::Assignment;

/// Why a [`HashRing`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The app has no placement (pending or unknown).
    #[error("app {0} is not placed")]
    NotPlaced(AppName),
    /// The app has a placement but no partition map (it is not a Ring app).
    #[error("app {0} has no partition map (not a ring app)")]
    NotARing(AppName),
    /// The partition map is empty.
    #[error("app {0} has an empty partition map")]
    Empty(AppName),
}

/// Key routing for one Ring app at one assignment version.
///
/// Every node building it from the same assignment version answers identically: the key →
/// partition hash is fixed (see [`partition_of`]) and partition → node is read from the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRing {
    version: u64,
    members: Vec<NodeId>,
    partitions: Vec<NodeId>,
}

impl HashRing {
    /// The ring of `app` in `assignment`.
    pub fn from_assignment(assignment: &Assignment, app: &AppName) -> Result<Self, RingError> {
        let placement = assignment
            .app(app)
            .ok_or_else(|| RingError::NotPlaced(app.clone()))?;
        let parts = placement
            .partitions
            .as_ref()
            .ok_or_else(|| RingError::NotARing(app.clone()))?;
        if parts.is_empty() {
            return Err(RingError::Empty(app.clone()));
        }
        let mut members = placement.nodes.clone();
        members.sort();
        Ok(Self {
            version: assignment.version,
            members,
            partitions: parts.clone(),
        })
    }

    /// The assignment version this view was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of partitions (P).
    pub fn partition_count(&self) -> u32 {
        // Built from a Vec indexed by u32 partition numbers.
        self.partitions.len() as u32
    }

    /// The partition of `key`.
    pub fn partition_for(&self, key: impl AsRef<[u8]>) -> u32 {
        partition_of(key.as_ref(), self.partition_count())
    }

    /// The owner of `partition`, if it exists.
    pub fn owner(&self, partition: u32) -> Option<&NodeId> {
        self.partitions.get(partition as usize)
    }

    /// The node owning `key`.
    pub fn node_for(&self, key: impl AsRef<[u8]>) -> &NodeId {
        let p = self.partition_for(key) as usize;
        // partition_for < partition_count = partitions.len() > 0 (checked at construction).
        &self.partitions[p]
    }

    /// Whether `node` owns `key`.
    pub fn owns_key(&self, node: &NodeId, key: impl AsRef<[u8]>) -> bool {
        self.node_for(key) == node
    }

    /// The partitions `node` owns, ascending.
    pub fn owned_partitions(&self, node: &NodeId) -> Vec<u32> {
        self.partitions
            .iter()
            .enumerate()
            .filter(|(_, n)| *n == node)
            .map(|(p, _)| p as u32)
            .collect()
    }

    /// The nodes running the app, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The whole map (index = partition).
    pub fn partition_map(&self) -> &[NodeId] {
        &self.partitions
    }
}
