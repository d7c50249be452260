//! Wire formats: every bucket name, key, subject, header and payload the runtime uses.
//!
//! This module is the only place that spells them; `docs/PROTOCOL.md` documents them. Every
//! message carries a version (`Cluster-Version` header or a `v` field); a message with an
//! unknown version or missing fields is rejected and counted, never panics.

pub mod admin;
pub mod assignment;
pub mod event;
pub mod headers;
pub mod member;
pub mod names;
pub mod placement;
pub mod placement_admin;
pub mod rebalance;
pub mod resources;
pub mod rpc;
pub mod rules;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
