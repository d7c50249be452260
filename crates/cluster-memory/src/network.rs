//! The in-memory network shared by simulated nodes, and its fault-injection controls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bucket::BucketShared;
use crate::bus::Bus;
use crate::faults::{Faults, NodeStats};
use crate::kv::MemoryKvStore;
use crate::lock::lock;
use crate::transport::MemoryTransport;

/// Settings of a [`MemoryNetwork`].
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Largest message (payload plus encoded headers) a transport accepts. Default 1 MiB.
    pub max_payload: usize,
    /// How long a KV operation of a partitioned node waits for the heal before it fails with
    /// `Error::Unavailable`. Default 1 s.
    pub kv_op_timeout: Duration,
    /// Seed of the per-node random generators used by drop rates. Default 1.
    pub seed: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            max_payload: 1024 * 1024,
            kv_op_timeout: Duration::from_secs(1),
            seed: 1,
        }
    }
}

/// State shared by every handle of one network.
pub(crate) struct Shared {
    pub(crate) config: NetworkConfig,
    pub(crate) faults: Arc<Faults>,
    pub(crate) bus: Mutex<Bus>,
    pub(crate) buckets: Mutex<HashMap<String, Arc<BucketShared>>>,
    next_inbox: AtomicU64,
    next_client: AtomicU64,
    audit: Arc<crate::MemoryAuditLog>,
}

impl Shared {
    /// A network-wide unique inbox subject.
    pub(crate) fn new_inbox(&self) -> String {
        let n = self.next_inbox.fetch_add(1, Ordering::Relaxed);
        format!("_INBOX.mem.{n}")
    }
}

/// One in-process "server" that many simulated nodes connect to: a message bus with NATS core
/// semantics and a KV store, with per-node fault injection.
///
/// Cheap to clone (an `Arc` inside); clones control the same network. Nodes are plain names and
/// come into existence on first use. All timing uses `tokio::time`, so scenarios run under
/// paused time (`#[tokio::test(start_paused = true)]`).
///
/// Fault model (per node):
/// * [`partition`](Self::partition): the node's publishes are dropped, it receives nothing, its
///   subscriptions count as disconnected (no interest, never picked in a queue group), its
///   requests time out, its KV operations wait up to [`NetworkConfig::kv_op_timeout`] for the
///   heal and then fail with `Error::Unavailable`, and its KV watches hold their events until
///   [`heal`](Self::heal), then deliver them in order.
/// * [`cut_link`](Self::cut_link): messages from one node to another are dropped (one
///   direction), for asymmetric partitions.
/// * [`set_delay`](Self::set_delay): every message from or to the node and every KV operation
///   and watch event of the node is delayed (order is kept).
/// * [`set_drop_rate`](Self::set_drop_rate): messages from or to the node are dropped with that
///   probability, drawn from a per-node generator seeded by [`NetworkConfig::seed`].
/// * [`expire_key`](Self::expire_key): a key's TTL runs out now.
#[derive(Clone)]
pub struct MemoryNetwork {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryNetwork {
    /// A network with default settings.
    pub fn new() -> Self {
        Self::with_config(NetworkConfig::default())
    }

    /// A network with `config`.
    pub fn with_config(config: NetworkConfig) -> Self {
        let faults = Arc::new(Faults::new(config.seed));
        Self {
            shared: Arc::new(Shared {
                config,
                faults,
                bus: Mutex::new(Bus::default()),
                buckets: Mutex::new(HashMap::new()),
                next_inbox: AtomicU64::new(1),
                next_client: AtomicU64::new(1),
                audit: Arc::new(crate::MemoryAuditLog::new()),
            }),
        }
    }

    /// A fresh node name (`client-<n>`, unique per network) for a connection that stands for
    /// an anonymous client, e.g. one per `connect()` of a conformance factory.
    pub fn new_client_name(&self) -> String {
        let n = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        format!("client-{n}")
    }

    /// The network's settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.shared.config
    }

    /// A new transport connection for `node`.
    pub fn transport(&self, node: &str) -> Arc<MemoryTransport> {
        Arc::new(MemoryTransport::new(self.shared.clone(), node))
    }

    /// The network's audit log, shared by every node.
    pub fn audit(&self) -> Arc<crate::MemoryAuditLog> {
        self.shared.audit.clone()
    }

    /// A new KV store connection for `node`; buckets of the same name are shared by all nodes.
    pub fn kv(&self, node: &str) -> Arc<MemoryKvStore> {
        Arc::new(MemoryKvStore::new(self.shared.clone(), node))
    }

    /// Cuts `node` off the network (see the fault model above).
    pub fn partition(&self, node: &str) {
        tracing::debug!(node, "partition");
        self.shared.faults.set_partitioned(node, true);
    }

    /// Reconnects `node`; its held watch events are delivered.
    pub fn heal(&self, node: &str) {
        tracing::debug!(node, "heal");
        self.shared.faults.set_partitioned(node, false);
    }

    /// Whether `node` is partitioned.
    pub fn is_partitioned(&self, node: &str) -> bool {
        self.shared.faults.is_partitioned(node)
    }

    /// Drops every message from `from` to `to` (one direction; KV traffic is unaffected) until
    /// [`restore_link`](Self::restore_link). Unlike a partition, `to`'s subscriptions keep their
    /// interest: requests over a cut link time out instead of failing with `NoResponders`.
    pub fn cut_link(&self, from: &str, to: &str) {
        tracing::debug!(from, to, "cut link");
        self.shared.faults.set_link_cut(from, to, true);
    }

    /// Restores the link from `from` to `to`.
    pub fn restore_link(&self, from: &str, to: &str) {
        tracing::debug!(from, to, "restore link");
        self.shared.faults.set_link_cut(from, to, false);
    }

    /// Delays every message from or to `node` and each of its KV operations by `delay`
    /// (`Duration::ZERO` removes the delay). Messages stay in order.
    pub fn set_delay(&self, node: &str, delay: Duration) {
        self.shared.faults.set_delay(node, delay);
    }

    /// Drops messages from or to `node` with probability `rate` (clamped to `0.0..=1.0`).
    /// Deterministic for a given [`NetworkConfig::seed`] and sequence of messages.
    pub fn set_drop_rate(&self, node: &str, rate: f64) {
        self.shared.faults.set_drop_rate(node, rate);
    }

    /// Makes the live `key` of `bucket` expire now, as if its TTL ran out (with or without a
    /// TTL): the key disappears under a new revision and watchers see `WatchOp::Expired`.
    /// Returns whether a live key was expired.
    pub fn expire_key(&self, bucket: &str, key: &str) -> bool {
        let state = lock(&self.shared.buckets).get(bucket).cloned();
        state.is_some_and(|b| b.expire(key, None))
    }

    /// The traffic counters of `node`.
    pub fn stats(&self, node: &str) -> NodeStats {
        self.shared.faults.stats(node)
    }

    /// Number of live subscriptions on the network (inboxes of pending requests included).
    pub fn subscription_count(&self) -> usize {
        lock(&self.shared.bus).len()
    }

    /// Number of live watches on `bucket` (0 if it does not exist).
    pub fn watch_count(&self, bucket: &str) -> usize {
        let state = lock(&self.shared.buckets).get(bucket).cloned();
        state.map_or(0, |b| b.watch_count())
    }
}
