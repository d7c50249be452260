//! Per-node fault state of the in-memory network: partitions, delays, drop rates, counters.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use cluster_core::{Error, Result};
use tokio::sync::watch;

use crate::lock::lock;

/// Traffic counters of one node, for assertions in tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Messages this node published (dropped ones included).
    pub published: u64,
    /// Messages handed to this node's subscriptions (yielded by their streams).
    pub delivered: u64,
    /// Messages sent by or addressed to this node that fault injection discarded.
    pub dropped: u64,
}

/// A tiny deterministic xorshift64* generator (no `rand` dependency).
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (a zero seed is replaced, xorshift must not start at 0).
    pub(crate) fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // 53 random bits fill the mantissa of an f64 exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FNV-1a, a stable hash (std's hasher is randomly seeded) to derive per-node seeds.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct NodeState {
    partitioned: watch::Sender<bool>,
    delay: Duration,
    drop_rate: f64,
    rng: XorShift,
    stats: NodeStats,
}

/// The fault table of a network, keyed by node name. Nodes appear on first mention.
pub(crate) struct Faults {
    seed: u64,
    nodes: Mutex<HashMap<String, NodeState>>,
    /// Directed links `(from, to)` whose messages are dropped.
    cut: Mutex<HashSet<(String, String)>>,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            nodes: Mutex::new(HashMap::new()),
            cut: Mutex::new(HashSet::new()),
        }
    }

    fn with<R>(&self, node: &str, f: impl FnOnce(&mut NodeState) -> R) -> R {
        let mut nodes = lock(&self.nodes);
        let seed = self.seed;
        let state = nodes.entry(node.to_owned()).or_insert_with(|| NodeState {
            partitioned: watch::Sender::new(false),
            delay: Duration::ZERO,
            drop_rate: 0.0,
            rng: XorShift::new(seed ^ fnv1a(node)),
            stats: NodeStats::default(),
        });
        f(state)
    }

    pub(crate) fn set_partitioned(&self, node: &str, partitioned: bool) {
        self.with(node, |s| {
            s.partitioned.send_replace(partitioned);
        });
    }

    pub(crate) fn is_partitioned(&self, node: &str) -> bool {
        self.with(node, |s| *s.partitioned.borrow())
    }

    pub(crate) fn set_link_cut(&self, from: &str, to: &str, cut: bool) {
        let link = (from.to_owned(), to.to_owned());
        let mut links = lock(&self.cut);
        if cut {
            links.insert(link);
        } else {
            links.remove(&link);
        }
    }

    pub(crate) fn is_link_cut(&self, from: &str, to: &str) -> bool {
        let links = lock(&self.cut);
        !links.is_empty() && links.contains(&(from.to_owned(), to.to_owned()))
    }

    pub(crate) fn set_delay(&self, node: &str, delay: Duration) {
        self.with(node, |s| s.delay = delay);
    }

    pub(crate) fn delay(&self, node: &str) -> Duration {
        self.with(node, |s| s.delay)
    }

    pub(crate) fn set_drop_rate(&self, node: &str, rate: f64) {
        self.with(node, |s| s.drop_rate = rate.clamp(0.0, 1.0));
    }

    /// Rolls the node's RNG against its drop rate; counts a drop when it hits. The RNG is only
    /// consumed when a drop rate is set, so enabling drops on one node leaves others unchanged.
    pub(crate) fn roll_drop(&self, node: &str) -> bool {
        self.with(node, |s| {
            let hit = s.drop_rate > 0.0 && s.rng.next_f64() < s.drop_rate;
            if hit {
                s.stats.dropped += 1;
            }
            hit
        })
    }

    pub(crate) fn stats(&self, node: &str) -> NodeStats {
        self.with(node, |s| s.stats)
    }

    pub(crate) fn count_published(&self, node: &str) {
        self.with(node, |s| s.stats.published += 1);
    }

    pub(crate) fn count_delivered(&self, node: &str) {
        self.with(node, |s| s.stats.delivered += 1);
    }

    pub(crate) fn count_dropped(&self, node: &str) {
        self.with(node, |s| s.stats.dropped += 1);
    }

    /// Waits until `node` is not partitioned.
    pub(crate) async fn wait_reachable(&self, node: &str) {
        let mut rx = self.with(node, |s| s.partitioned.subscribe());
        // The sender lives in the table for the network's lifetime, so this cannot fail while
        // the caller holds the network; on failure there is nothing to wait for.
        let _ = rx.wait_for(|partitioned| !*partitioned).await;
    }

    /// What every KV operation of `node` goes through: the node's delay, then, while it is
    /// partitioned, a wait for the heal of at most `op_timeout` before failing `Unavailable`.
    pub(crate) async fn kv_gate(&self, node: &str, op_timeout: Duration) -> Result<()> {
        let delay = self.delay(node);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if !self.is_partitioned(node) {
            return Ok(());
        }
        match tokio::time::timeout(op_timeout, self.wait_reachable(node)).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::Unavailable(format!(
                "node {node} is partitioned from the store (no answer within {op_timeout:?})"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_is_deterministic_and_uniform_enough() {
        let mut a = XorShift::new(42);
        let mut b = XorShift::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut r = XorShift::new(7);
        let below_half = (0..10_000).filter(|_| r.next_f64() < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }
}
