//! Test support for the cluster platform.
//!
//! * [`memory`]: in-memory implementations of the core traits ([`cluster_core::Transport`],
//!   [`cluster_core::KvStore`]) over one in-process network shared by many simulated nodes, with
//!   fault injection (partitions, delays, drop rates, forced expiry) and traffic counters.
//!   Everything times itself with `tokio::time`, so multi-node scenarios run under paused time.
//! * [`conformance`]: suites that check an implementation against the contracts of the core
//!   traits; the same suites run against the in-memory implementations and against NATS.

pub mod conformance;
pub mod memory;

pub use memory::{
    MemoryBucket, MemoryKvStore, MemoryNetwork, MemoryTransport, NetworkConfig, NodeStats,
};
