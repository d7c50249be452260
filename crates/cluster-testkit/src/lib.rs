//! Test support for the cluster platform.
//!
//! * [`memory`]: in-memory implementations of the core traits ([`cluster_core::Transport`],
//!   [`cluster_core::KvStore`]) over one in-process network shared by many simulated nodes, with
//!   fault injection (partitions, delays, drop rates, forced expiry) and traffic counters.
//!   Everything times itself with `tokio::time`, so multi-node scenarios run under paused time.
//! * [`conformance`]: suites that check an implementation against the contracts of the core
//!   traits; the same suites run against the in-memory implementations and against NATS.
//! * [`metrics`]: a recording `metrics` recorder to assert that series moved.
//! * [`nats_server`]: launchers for real `nats-server` processes (a single server, a
//!   three-server JetStream cluster) with crash, restart and pause controls, and a TCP fault
//!   proxy to partition one client from NATS.
//! * `systemd_user` (feature `systemd`): a real systemd user manager in private namespaces.

pub mod conformance;
pub mod memory;
pub mod metrics;
pub mod nats_server;
pub mod scenario;
#[cfg(feature = "systemd")]
pub mod systemd_user;

pub use memory::{
    MemoryAuditLog, MemoryBucket, MemoryKvStore, MemoryNetwork, MemoryTransport, NetworkConfig,
    NodeStats,
};
