//! Test support for the cluster platform (a dev-dependency only: nothing here ships in the
//! daemon).
//!
//! The in-memory implementations of the core traits live in `cluster-memory`; this crate adds
//! what only tests need:
//!
//! * [`conformance`]: suites that check an implementation against the contracts of the core
//!   traits; the same suites run against the in-memory implementations (`cluster-memory`'s
//!   `MemoryNetwork` is a factory of every suite it implements) and against NATS.
//! * [`scenario`]: the `SimCluster` harness, whole platforms on one in-memory network under
//!   paused time.
//! * [`metrics`]: a recording `metrics` recorder to assert that series moved.
//! * [`nats_server`]: launchers for real `nats-server` processes (a single server, a
//!   three-server JetStream cluster) with crash, restart and pause controls, and a TCP fault
//!   proxy to partition one client from NATS.
//! * `systemd_user` (feature `systemd`): a real systemd user manager in private namespaces.

pub mod conformance;
pub mod metrics;
pub mod nats_server;
pub mod scenario;
#[cfg(feature = "systemd")]
pub mod systemd_user;
