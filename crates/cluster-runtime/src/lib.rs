//! The platform/app runtime of the cluster platform, written only against the traits of
//! `cluster-core`: the [`Platform`] and its [`App`]s, membership, leadership (the lease
//! election over a KV bucket), distributed locks, RPC, events, the admin service, the placement
//! controller and node agents, auto-rebalance and maintenance schedules.
//!
//! It depends on no NATS, SQLite, HTTP or network crate: the facade `cluster` wires it to
//! implementations (`cluster-nats`, the in-memory ones) by dependency injection. The traits a
//! plugin implements (`ActiveResource`, `Planner`, `LoadProbe`, …) live in `cluster-core` and
//! are re-exported here for convenience.

mod admin;
mod admin_client;
mod admin_ext;
mod admin_member;
mod admin_placement;
mod app;
mod audit;
mod audit_query;
mod bounded;
mod candidacy;
mod election;
mod event_registry;
mod events;
mod hooks;
mod instance;
mod isolate;
mod jitter;
mod kv;
mod kv_lock;
mod leader_watch;
mod leadership;
mod lease;
mod lease_view;
mod locks;
mod member_claim;
mod member_view;
mod membership;
pub mod metrics;
mod node;
mod notify;
mod options;
mod placement;
mod platform;
mod resource;
mod rpc;
pub mod schedule;
mod stats;
mod sync;
mod weak_app;

pub use admin_client::{AdminClient, AdminTarget};
pub use app::{App, RoleState};
pub use audit_query::Audit;
pub use events::{Event, EventStream, EventSubscription, Events};
pub use hooks::{BoxError, HookContext};
pub use jitter::seed_thread_jitter;
pub use kv::AppKv;
pub use kv_lock::{KvLock, LockOptions};
pub use lease::LeaseElection;
pub use locks::DistLock;
pub use options::{AppOptions, HookKind, PlatformOptions};
pub use placement::{
    AssignmentRecord, AssignmentView, DrainOptions, DrainProgress, LabelWatch, MoveRequest,
    PlacementView, RingView,
};
pub use platform::{Platform, PlatformBuilder};
pub use rpc::{BroadcastReply, Next, Request, Routing, RpcClient, json_response};
pub use stats::Stats;
pub use weak_app::WeakApp;

pub use cluster_core::deadline::DeadlineWatch;
pub use cluster_core::health::HealthStatus;
pub use cluster_core::load::{FixedLoad, LoadProbe};
pub use cluster_core::partition::partition_of;
pub use cluster_core::planner::{
    PlanApp, PlanMove, PlanNode, PlanOutcome, PlanRequest, Planner, RebalanceOptions,
};
pub use cluster_core::resource::{ActiveResource, RetryPolicy};
