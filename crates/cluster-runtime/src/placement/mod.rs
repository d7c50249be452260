//! Enforced placement: a leader-elected controller decides where apps run, node agents make it
//! so, and operators steer it (cordon, drain, move, labels).
//!
//! ```text
//!  members (labels, health, running instances, placement rules)  ┐
//!  {P}_placement: cordon.*, drain.*, move.*                       ├─▶ controller (leader of
//!                                                                 ┘   `controller.placement`)
//!        Planner::plan (pure; cluster-placement via the facade)  ◀──┘
//!        CAS write of `assignment` (epoch-stamped)  ──watch──▶ node agents
//!        agents: start/stop instances, campaign only where placed, hand off on moves
//! ```
//!
//! The runtime owns the mechanism; the policy is a [`Planner`](cluster_core::planner::Planner)
//! supplied by the facade (`cluster-placement`), so the runtime stays free of placement algorithms.

mod agent;
mod auto;
mod auto_ops;
mod controller;
mod labels_watch;
mod lock;
mod mirror;
mod observe;
mod ops;
mod rebalance_ops;
mod ring;

pub(crate) use mirror::MirroredBucket;

pub(crate) use agent::spawn as spawn_agent;
pub(crate) use auto::RebalanceDefaults;
pub use cluster_core::wire::placement::{AssignmentRecord, AssignmentView, PlacementView};
pub(crate) use controller::{gather as gather_plan_request, spawn as spawn_controller};
pub use labels_watch::LabelWatch;
pub use ops::{DrainOptions, DrainProgress, MoveRequest};
pub use ring::RingView;

pub(crate) use ring::{release_all as ring_release_all, view as ring_view};
