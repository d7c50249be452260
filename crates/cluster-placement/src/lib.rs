//! Placement for the cluster platform: a pure, deterministic, synchronous library.
//!
//! - [`schedule()`]: (nodes, app specs, current [`Assignment`]) → desired assignment, per-app
//!   reasons, pending apps and [`Migration`]s. Hard constraints always hold in the output.
//! - [`ring`]: key → partition (`SHA-256`) and partition → node (bounded-load rendezvous with
//!   stickiness), and the [`HashRing`] view nodes route with.
//! - [`rebalance`]: [`plan_rebalance`] with hysteresis, [`plan_drain`] and [`plan_evacuate`].
//! - [`verify()`]: checks any assignment against the hard constraints, so every node can verify
//!   what the controller published.
//! - [`planner`](mod@planner): the platform's [`PlacementPlanner`] (the core `Planner` trait) and the
//!   controller's policy around the scheduler: apps' rules documents ([`PlacementSpec`]),
//!   registration constraints, operators' moves, drains, make-before-break, rebalance plans.
//! - [`auto`]: the decisions of auto-rebalance (triggers, pauses, cooldowns, step admission,
//!   validity, completion, timeouts); the runtime's loop keeps the mechanism.
//!
//! Nothing here performs IO, spawns tasks or reads clocks; the same inputs always give the same
//! outputs (only ordered collections are iterated).

pub mod auto;
pub mod migration;
pub mod model;
pub mod planner;
pub mod rebalance;
pub mod resources;
pub mod ring;
pub mod schedule;
pub mod strategy;
pub mod verify;

pub use cluster_core::wire::assignment::{
    ASSIGNMENT_FORMAT, AppPlacement, Assignment, AssignmentError,
};
pub use migration::{Migration, MigrationKind, diff};
pub use model::{AppSpec, Constraint, NodeInfo, Preference};
pub use planner::{NamedStrategy, PlacementPlanner, PlacementSpec, planner};
pub use rebalance::{
    DrainPlan, Plan, RebalancePolicy, RebalanceState, RebalanceStrategy, imbalance, node_loads,
    plan_drain, plan_drain_nodes, plan_evacuate, plan_rebalance,
};
pub use resources::{ResourceError, Resources};
pub use ring::{HashRing, RingError, VnodeRing, assign_partitions, partition_of};
pub use schedule::{PlacementResult, schedule};
pub use strategy::{Candidate, Strategy, StrategyKind};
pub use verify::verify;
