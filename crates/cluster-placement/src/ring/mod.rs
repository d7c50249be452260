//! `Ring(P)`: key → partition → node.

mod balance;
mod compare;
mod hash;
mod view;

pub use balance::{assign_partitions, moved};
pub use compare::{VnodeRing, assign_rendezvous};
pub use hash::{fill_order, hrw_score, mix64, node_hash, partition_of, sha256_u64};
pub use view::{HashRing, RingError};
