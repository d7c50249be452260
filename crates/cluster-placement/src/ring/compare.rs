//! Reference mappings, for ad-hoc lookups and for comparison in the benchmark.
//!
//! Neither is used for `Ring(P)` partition ownership: a virtual-node ring and plain rendezvous
//! leave the busiest node 10–50 % above average at P = 256 (reference notes §D).

use cluster_core::NodeId;

use super::hash::{hrw_score, node_hash};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VNode {
    node: NodeId,
    replica: u32,
}

/// A consistent-hash ring with virtual nodes (the `hashring` crate), for ad-hoc key → node
/// lookups where balance and minimal movement are not required.
///
/// Positions come from the `hashring` crate's SipHash of the standard `Hash` encoding, which is
/// deterministic for one build but not a documented cross-language format: do not use it for
/// anything several implementations must agree on.
#[derive(Debug, Clone)]
pub struct VnodeRing {
    ring: hashring::HashRing<VNode>,
}

impl VnodeRing {
    /// The default number of virtual nodes per node (as in the Go implementation).
    pub const DEFAULT_VNODES: u32 = 150;

    /// A ring of `members` with `vnodes` virtual nodes each.
    pub fn new(members: &[NodeId], vnodes: u32) -> Self {
        let mut ring = hashring::HashRing::new();
        let mut all = Vec::with_capacity(members.len() * vnodes as usize);
        for m in members {
            for replica in 0..vnodes.max(1) {
                all.push(VNode {
                    node: m.clone(),
                    replica,
                });
            }
        }
        ring.batch_add(all);
        Self { ring }
    }

    /// The node for `key` (`None` when the ring is empty).
    pub fn node_for(&self, key: impl AsRef<[u8]>) -> Option<&NodeId> {
        self.ring.get(&key.as_ref()).map(|v| &v.node)
    }

    /// Maps each of `partitions` partitions through the ring.
    pub fn assign_partitions(&self, partitions: u32) -> Vec<NodeId> {
        (0..partitions)
            .filter_map(|p| self.ring.get(&p).map(|v| v.node.clone()))
            .collect()
    }
}

/// Plain rendezvous hashing: each partition goes to its highest-scoring member, no load bound.
pub fn assign_rendezvous(members: &[NodeId], partitions: u32) -> Vec<NodeId> {
    let hashes: Vec<(u64, &NodeId)> = members.iter().map(|m| (node_hash(m), m)).collect();
    (0..partitions)
        .filter_map(|p| {
            hashes
                .iter()
                .max_by_key(|(h, m)| (hrw_score(*h, p), std::cmp::Reverse(*m)))
                .map(|(_, m)| (*m).clone())
        })
        .collect()
}
