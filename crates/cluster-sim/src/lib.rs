//! A seeded deterministic simulator of the platform (issue 13, tier 1). Test-only: never a
//! dependency of a shipped crate.
//!
//! One `u64` seed expands into [`SimOptions`] (nodes, Singleton apps, fault rates) and a fault
//! schedule ([`plan::plan`]): symmetric partitions, crashes and restarts, KV/message latency,
//! and an attacker's raw writes to the election bucket (corrupt, forged and deleted leases,
//! a raised or deleted epoch floor). Real [`cluster_runtime::Platform`]s run on one
//! [`cluster_memory::MemoryNetwork`] under tokio's paused time on a current-thread runtime.
//! Every 10 ms of simulated time the checker samples every node's `is_leader()`; each leader
//! writes `(epoch, node, n)` to a fenced [`register::Register`]. Invariants: at most one leader
//! per app at any sample (outside the window a tampered lease key opens), new terms' epochs
//! strictly increase, no stale or shared epoch accepted by the register; after the last heal,
//! every app has a leader within `T(1+ε) + cooldown + 1 s`. The trace of a run has a stable
//! hash: the same seed gives the same hash.

// The simulator reports through its report, not through errors; tests and the binary print it.

pub mod checker;
pub mod options;
pub mod plan;
pub mod register;
pub mod rng;
mod run;
pub mod summary;
mod tamper;
pub mod trace;
mod world;

pub use options::{PlantedBug, SimOptions};
pub use run::{Report, run_seed};
