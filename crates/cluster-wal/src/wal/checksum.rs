//! The WAL's cumulative Fletcher-like checksum.

/// Continues the WAL checksum `(s0, s1)` over `data` (whose length is a multiple of 8), reading
/// 32-bit words big-endian when `big_endian` (magic `0x377f0683`) and little-endian otherwise.
pub fn wal_checksum(big_endian: bool, data: &[u8], seed: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    for pair in data.chunks_exact(8) {
        let (a, b) = pair.split_at(4);
        let (x0, x1) = if big_endian {
            (word_be(a), word_be(b))
        } else {
            (word_le(a), word_le(b))
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

fn word_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn word_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
