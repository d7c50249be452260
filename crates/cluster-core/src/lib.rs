//! Core of the cluster platform: domain types, errors, the pluggable traits (transport, KV store,
//! election, lock, clock) and the platform/app runtime written only against those traits.
//!
//! This crate depends on no NATS, SQLite, HTTP or network crate (checked by `cargo xtask test`).
//! Implementations live in other crates: `cluster-nats` (NATS/JetStream) and
//! `cluster-memory` (in-memory, for dev mode and tests).

pub mod audit;
pub mod backend;
pub mod clock;
pub mod duration;
pub mod election;
pub mod epoch;
pub mod error;
pub mod host;
pub mod id;
pub mod kv;
pub mod labels;
pub mod lock;
pub mod member;
pub mod metrics;
pub mod mode;
pub mod runtime;
pub mod stream;
pub mod trace;
pub mod transport;
pub mod wire;

pub use clock::{Clock, TokioClock};
pub use election::Election;
pub use epoch::{Epoch, FencingToken};
pub use error::{Error, Result};
pub use id::{AppName, LockName, MethodName, NodeId, PlatformName, SubjectToken};
pub use kv::{BucketConfig, KvBucket, KvEntry, KvStore, KvWatch, Revision, WatchEvent, WatchOp};
pub use labels::Labels;
pub use lock::Lock;
pub use member::{Member, MemberApp, NodeLoad};
pub use mode::{Mode, Role};
pub use runtime::{App, Platform, PlatformOptions};
pub use transport::{Headers, Message, Subscription, Transport};
