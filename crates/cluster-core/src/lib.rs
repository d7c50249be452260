//! Core of the cluster platform: ids, errors, epochs, modes, members, the wire records and
//! names, and the pluggable traits with their "To ensure correctness" contracts (transport, KV
//! store, election, lock, clock, audit sink, backend, active resource, planner, load probe,
//! trace propagation, replicated log).
//!
//! Nothing here runs anything: the runtime that drives these traits is `cluster-runtime`; the
//! implementations live in `cluster-nats` (NATS/JetStream), `cluster-wal`, `cluster-backend`,
//! `cluster-vip`, `cluster-placement` and the in-memory crate. This crate depends on no NATS,
//! SQLite, HTTP, network, cron or time-zone crate (checked by `cargo xtask test`).

pub mod audit;
pub mod backend;
pub mod clock;
pub mod deadline;
pub mod duration;
pub mod election;
pub mod epoch;
pub mod error;
pub mod health;
pub mod host;
pub mod id;
pub mod kv;
pub mod labels;
pub mod load;
pub mod lock;
pub mod member;
pub mod mode;
pub mod partition;
pub mod planner;
pub mod resource;
pub mod stream;
pub mod trace;
pub mod transport;
pub mod wire;

pub use clock::{Clock, TokioClock};
pub use deadline::DeadlineWatch;
pub use election::Election;
pub use epoch::{Epoch, FencingToken};
pub use error::{Error, Result};
pub use health::HealthStatus;
pub use id::{AppName, LockName, MethodName, NodeId, PlatformName, SubjectToken};
pub use kv::{BucketConfig, KvBucket, KvEntry, KvStore, KvWatch, Revision, WatchEvent, WatchOp};
pub use labels::Labels;
pub use load::{FixedLoad, LoadProbe};
pub use lock::Lock;
pub use member::{Member, MemberApp, NodeLoad};
pub use mode::{Mode, Role};
pub use partition::partition_of;
pub use planner::Planner;
pub use resource::{ActiveResource, RetryPolicy};
pub use transport::{Headers, Message, Subscription, Transport};
