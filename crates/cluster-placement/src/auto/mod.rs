//! Auto-rebalance decisions: when a run starts (triggers, pauses, cooldown), which planned
//! steps it executes, when each step may start (per-app cooldown, rate limit, still valid,
//! target load), when a step is done, and what a timed-out step becomes. Pure functions of the
//! configuration records, the membership and elapsed times.
//!
//! The runtime's auto-rebalance loop keeps the mechanism: watching membership and the
//! placement bucket, timers, migration locks, approvals, writing move and status records.

mod gate;
mod steps;
mod triggers;

pub use gate::{cooling, pause_reason};
pub use steps::{
    Admission, TimedOut, admit, done, options, over_load_threshold, reached_target, retention,
    runnable, still_valid, timed_out, timeout_reason,
};
pub use triggers::{membership_trigger, timed_trigger};

/// Membership as the decisions see it: every member record, by node.
pub type Members = std::collections::BTreeMap<cluster_core::NodeId, cluster_core::Member>;
