//! In-memory implementations of the cluster traits, safe to ship: dev mode (`cluster run --dev`,
//! `cluster::dev`) runs on them, and so do the workspace's tests.
//!
//! * [`MemoryNetwork`]: one in-process "server" shared by many simulated nodes, handing out
//!   [`MemoryTransport`] ([`cluster_core::Transport`], NATS core semantics),
//!   [`MemoryKvStore`]/[`MemoryBucket`] ([`cluster_core::KvStore`]/[`cluster_core::KvBucket`],
//!   JetStream KV semantics) and one shared [`MemoryAuditLog`]
//!   ([`cluster_core::audit::AuditSink`]), with per-node fault injection (partitions, one-way
//!   link cuts, delays, seeded drop rates, forced expiry) and traffic counters ([`NodeStats`]).
//! * [`MemoryLog`] ([`cluster_core::stream::ReplicatedLog`]) and [`MemoryObjectStore`]
//!   ([`cluster_core::stream::ObjectStore`]): the JetStream stream and object store of WAL
//!   replication.
//!
//! Everything times itself with `tokio::time` (the same monotonic clock as
//! [`cluster_core::TokioClock`]), so tests may run whole clusters under tokio's paused time; this
//! crate itself does not enable tokio's `test-util` feature and depends on nothing but
//! `cluster-core` and small runtime crates. Test-only machinery (nats-server launchers, the TCP
//! fault proxy, conformance suites, the `SimCluster` harness) lives in `cluster-testkit`.
//! See `docs/architecture/cluster-memory.md`.

mod audit;
mod bucket;
mod bus;
mod delivery;
mod faults;
mod kv;
mod lock;
mod log;
mod network;
mod object_store;
mod transport;

pub use audit::MemoryAuditLog;
pub use faults::NodeStats;
pub use kv::{MemoryBucket, MemoryKvStore};
pub use log::MemoryLog;
pub use network::{MemoryNetwork, NetworkConfig};
pub use object_store::MemoryObjectStore;
pub use transport::MemoryTransport;
