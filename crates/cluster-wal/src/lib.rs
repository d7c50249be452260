//! SQLite physical WAL replication: the leader's committed WAL frames are captured per
//! transaction, shipped through a [`ReplicatedLog`](cluster_core::stream::ReplicatedLog) with
//! compare-and-append fencing, and applied on standbys through `sqlite_dbpage`, so that every
//! standby is a page-identical, openable database.
//!
//! Layers (see `docs/architecture/cluster-wal.md`):
//! * pure: [`wal`] (WAL parsing), [`pagesum`] (rolling checksum), [`record`] (wire format);
//! * blocking, one thread per database: [`capture`] (leader), [`apply`] (standby), [`snapshot`];
//! * async runtimes: [`leader`], [`follower`], [`mod@promote`];
//! * app-facing: [`resource`] ([`WalDb`]: rusqlite closures) and [`mod@pool`] ([`WalPool`]: the
//!   sqlx pool, `WalDb::pool()`);
//! * [`memory`]: in-memory log and object store for tests, benchmarks and dev mode.

pub mod admin;
pub mod apply;
pub mod audit;
pub mod blocked;
pub mod capture;
pub mod crc;
pub mod error;
pub mod follower;
mod foreign;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod pagesum;
pub mod pool;
pub mod position;
pub mod promote;
pub mod record;
pub mod resource;
pub mod restore;
pub mod snapshot;
pub mod sqlite;
pub mod wal;
pub mod watch;

pub use apply::{Applied, Standby, StandbyOptions};
pub use audit::WalAudit;
pub use blocked::PromotionBlock;
pub use capture::{Capture, CheckpointOutcome, LeaderStart};
pub use error::{ErrorKind, Result, WalError};
pub use follower::{Follower, FollowerConfig, FollowerProgress, RestoreFence};
pub use leader::{Durability, Leader, LeaderConfig, LeaderProgress};
pub use pool::{FencedTx, WalPool};
pub use position::Position;
pub use promote::{PromoteConfig, bootstrap, promote, promote_standby};
pub use resource::{WalDb, WalResource, WalRole, WalStatus, WithSqlite};
pub use restore::{RestoreReport, RestoreStep};
pub use snapshot::{Retention, Snapshot, SnapshotMeta};
/// The sqlx version of [`WalPool`] (use it for queries: `cluster_wal::sqlx::query(…)`).
pub use sqlx;
