//! The 24-byte WAL frame header.

/// Length of a frame header in bytes (the page follows).
pub const FRAME_HEADER_LEN: usize = 24;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Page number.
    pub pgno: u32,
    /// For a commit frame, the database size in pages after the commit; 0 otherwise.
    pub commit_size: u32,
    /// Salt-1 copied from the WAL header.
    pub salt1: u32,
    /// Salt-2 copied from the WAL header.
    pub salt2: u32,
    /// Cumulative checksum up to and including this frame.
    pub checksum: (u32, u32),
}

impl FrameHeader {
    /// Parses the first 24 bytes of `b`.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            pgno: w(0),
            commit_size: w(4),
            salt1: w(8),
            salt2: w(12),
            checksum: (w(16), w(20)),
        }
    }

    /// Encodes the header (used by tests to build WAL files).
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        for (i, v) in [
            self.pgno,
            self.commit_size,
            self.salt1,
            self.salt2,
            self.checksum.0,
            self.checksum.1,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}
