//! NATS/JetStream implementation of the cluster platform's transport and KV traits.
//!
//! * [`NatsConnection`]: connects with [`ConnectOptions`] (server list, creds file,
//!   user/password, token, TLS, connection name, unlimited reconnects with backoff) and refuses
//!   servers older than 2.11.
//! * [`NatsTransport`]: `cluster_core::Transport` on core NATS (headers, request/reply, queue
//!   groups).
//! * [`NatsKvStore`] / [`NatsKvBucket`]: `cluster_core::KvStore` / `KvBucket` on JetStream KV
//!   buckets with per-key TTLs and expiry events from server delete markers.
//! * [`NatsReplicatedLog`] / [`NatsObjectStore`]: `cluster_core::stream::ReplicatedLog` on one
//!   JetStream stream (compare-and-append with `Nats-Expected-Last-Sequence`, `Nats-Msg-Id`
//!   dedup, ordered-consumer reads) and `ObjectStore` on a JetStream object store.
//!
//! * [`doctor`]: `cluster doctor`'s checks (secure-mode version floor, fsync policy, bucket
//!   replicas vs cluster size, clock offset).
//! * [`security`]: the role table (per-identity publish/subscribe permissions) and
//!   `cluster auth gen-config`'s nats-server accounts block with nkey users.
//!
//! The wire mapping (buckets, subjects, headers, markers) is in `docs/protocol/nats-mapping.md`.

mod audit;
mod connection;
pub mod doctor;
mod error;
mod kv;
mod options;
pub mod security;
mod stream;
mod transport;
mod version;
mod violations;

pub use audit::{AuditStreamOptions, NatsAuditLog, audit_stream_name, audit_subject};
pub use connection::NatsConnection;
pub use kv::{NatsKvBucket, NatsKvStore};
pub use options::{Auth, ConnectOptions, TlsOptions};
pub use stream::{
    DEFAULT_DUPLICATE_WINDOW, LogConfig, NatsObjectStore, NatsReplicatedLog, ObjectStoreConfig,
};
pub use transport::NatsTransport;
pub use version::{MIN_SERVER_VERSION, check_server_version, parse_version};
pub use violations::{PERMISSION_VIOLATIONS, describe_metrics};
