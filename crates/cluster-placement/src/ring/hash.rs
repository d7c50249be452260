//! The hash functions every node must compute identically.
//!
//! - key → partition: `SHA-256(key)`, first 8 bytes as a big-endian `u64`, modulo P (the layout
//!   the Go implementation used, so routing stays compatible).
//! - rendezvous score of (node, partition): `mix(node_hash(node) ^ mix(partition ^ SALT))`,
//!   where `node_hash` is the first 8 bytes (big-endian) of `SHA-256(node id)` and `mix` is the
//!   SplitMix64 finaliser. Higher score = stronger preference.

use cluster_core::NodeId;
use sha2::{Digest, Sha256};

const SALT: u64 = 0x5eed_0fc1;

/// First 8 bytes of `SHA-256(bytes)`, big-endian.
pub fn sha256_u64(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The partition of `key` among `partitions` (which must be > 0).
///
/// The rule is part of the wire protocol; its single definition lives in `cluster-core`
/// (which the runtime's `RingView` and `ForKey` routing use), so both always agree.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    cluster_core::partition_of(key, partitions)
}

/// SplitMix64 finaliser: a bijective 64-bit mixer.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The per-node part of the rendezvous score.
pub fn node_hash(node: &NodeId) -> u64 {
    sha256_u64(node.as_str().as_bytes())
}

/// Rendezvous (highest random weight) score of a node (given its [`node_hash`]) for a partition.
pub fn hrw_score(node_hash: u64, partition: u32) -> u64 {
    mix64(node_hash ^ mix64(u64::from(partition) ^ SALT))
}

/// The fixed order in which partitions are filled (ascending by this value).
pub fn fill_order(partition: u32) -> u64 {
    mix64(u64::from(partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_the_documented_formula() {
        let digest = Sha256::digest(b"user:123");
        let v = u64::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        assert_eq!(partition_of(b"user:123", 256), (v % 256) as u32);
        // Known vector: SHA-256("") starts with e3b0c44298fc1c14.
        assert_eq!(sha256_u64(b""), 0xe3b0_c442_98fc_1c14);
        assert_eq!(partition_of(b"", 256), 0x14);
        assert_eq!(partition_of(b"anything", 1), 0);
    }
}
