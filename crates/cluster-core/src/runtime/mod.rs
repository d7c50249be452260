//! The platform/app runtime, written only against the core traits.

mod admin;
mod admin_client;
mod admin_ext;
mod admin_member;
mod admin_placement;
mod app;
mod audit;
mod bounded;
mod candidacy;
mod deadline;
mod election;
mod events;
mod hooks;
mod instance;
mod isolate;
mod kv;
mod leadership;
mod lease_view;
mod load;
mod locks;
mod member_claim;
mod member_view;
mod membership;
mod notify;
mod options;
mod placement;
mod platform;
mod resource;
mod rpc;
pub mod schedule;

pub use admin_client::{AdminClient, AdminTarget};
pub use app::{App, HealthStatus, RoleState};
pub use audit::Audit;
pub use deadline::DeadlineWatch;
pub use events::{Event, EventStream, EventSubscription, Events};
pub use hooks::{BoxError, HookContext};
pub use kv::AppKv;
pub use load::{FixedLoad, LoadProbe};
pub use locks::DistLock;
pub use options::{AppOptions, HookKind, PlatformOptions};
pub use placement::{
    AssignmentRecord, AssignmentView, DrainOptions, DrainProgress, LabelWatch, MoveRequest,
    PlacementView, PlanApp, PlanMove, PlanNode, PlanOutcome, PlanRequest, Planner,
    RebalanceOptions, RingView, partition_of,
};
pub use platform::{Platform, PlatformBuilder, Stats};
pub use resource::{ActiveResource, RetryPolicy};
pub use rpc::{BroadcastReply, Next, Request, Routing, RpcClient, json_response};
