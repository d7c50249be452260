//! Ring partitioning of keys: the rule every node and client shares.

use sha2::{Digest, Sha256};

/// The partition of `key` among `partitions`: SHA-256 of the key, first 8 bytes big-endian,
/// modulo the partition count (`docs/protocol/placement.md`).
pub fn partition_of(key: impl AsRef<[u8]>, partitions: u32) -> u32 {
    let digest = Sha256::digest(key.as_ref());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_rule_is_sha256_prefix_mod_p() {
        // SHA-256("user:123") starts with bytes whose u64 is fixed; the partition is stable.
        let p = partition_of("user:123", 256);
        assert_eq!(p, partition_of("user:123", 256));
        assert!(p < 256);
        assert_eq!(partition_of("x", 1), 0);
    }
}
