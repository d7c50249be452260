//! Test kit of the cluster platform.
//!
//! * [`nats_server`]: launchers for real `nats-server` processes (a single server, a
//!   three-server JetStream cluster) with crash, restart and pause controls, and a TCP fault
//!   proxy to partition one client from NATS.

pub mod nats_server;
