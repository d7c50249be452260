//! In-memory implementations of the core traits over one in-process network shared by many
//! simulated nodes, with fault injection. See [`MemoryNetwork`].

mod audit;
mod bucket;
mod bus;
mod delivery;
mod factory;
mod faults;
mod kv;
mod network;
mod transport;

pub use audit::MemoryAuditLog;
pub use faults::NodeStats;
pub use kv::{MemoryBucket, MemoryKvStore};
pub use network::{MemoryNetwork, NetworkConfig};
pub use transport::MemoryTransport;
