//! The committed end of the WAL according to SQLite: `mxFrame` in the wal-index (`-shm`) header.
//!
//! A commit frame in the `-wal` file is not yet a commit: SQLite writes the frames (commit
//! frame last), then publishes the new end (`mxFrame`) in the wal-index header. A writer killed
//! between the two leaves a valid-looking commit frame that SQLite itself ignores — the next
//! writer overwrites it from `mxFrame + 1` and no reader ever sees it. Capture therefore never
//! reads past `mxFrame`.
//!
//! Header layout (<https://sqlite.org/walformat.html>, §2.2.1; native byte order), stored twice
//! (bytes 0..48 and 48..96) and read lock-free the way SQLite's readers do: both copies must be
//! equal and initialised, otherwise a writer is updating it right now.
//!
//! | offset | field |
//! |---|---|
//! | 0 | iVersion (3007000) |
//! | 12 | isInit |
//! | 16 | mxFrame: frames of the current generation that are committed |
//! | 32 | aSalt: the WAL header's salts (bytes as in the WAL header) |

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::header::WalHeader;

const INDEX_HEADER_LEN: usize = 48;
const INDEX_VERSION: u32 = 3_007_000;

/// What the wal-index says about the current WAL generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexBound {
    /// Frames `1..=n` of the generation of the given WAL header are committed.
    Frames(u64),
    /// The index is being updated, not initialised, or describes another generation (a writer
    /// is between resetting the index and writing the WAL header): read nothing now.
    Unsettled,
    /// There is no `-shm` file (no connection in shared-memory WAL mode is open).
    NoIndex,
}

/// Reads the wal-index header of `shm` for the WAL generation `wal`.
pub fn index_bound(shm: &Path, wal: &WalHeader) -> io::Result<IndexBound> {
    let mut f = match File::open(shm) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(IndexBound::NoIndex),
        Err(e) => return Err(e),
    };
    let mut b = [0u8; 2 * INDEX_HEADER_LEN];
    match f.read_exact(&mut b) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(IndexBound::Unsettled),
        Err(e) => return Err(e),
    }
    Ok(parse(&b, wal))
}

fn parse(b: &[u8; 2 * INDEX_HEADER_LEN], wal: &WalHeader) -> IndexBound {
    let (h0, h1) = b.split_at(INDEX_HEADER_LEN);
    let ne = |i: usize| u32::from_ne_bytes([h0[i], h0[i + 1], h0[i + 2], h0[i + 3]]);
    let be = |i: usize| u32::from_be_bytes([h0[i], h0[i + 1], h0[i + 2], h0[i + 3]]);
    if h0 != h1 || ne(0) != INDEX_VERSION || h0[12] == 0 {
        return IndexBound::Unsettled;
    }
    if be(32) != wal.salt1 || be(36) != wal.salt2 {
        return IndexBound::Unsettled;
    }
    IndexBound::Frames(u64::from(ne(16)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn wal() -> WalHeader {
        WalHeader {
            big_endian: false,
            page_size: 4096,
            checkpoint_seq: 0,
            salt1: 0x0102_0304,
            salt2: 0x0506_0708,
            checksum: (0, 0),
        }
    }

    fn index(mx: u32, salt1: u32) -> [u8; 96] {
        let mut h = [0u8; 48];
        h[0..4].copy_from_slice(&INDEX_VERSION.to_ne_bytes());
        h[12] = 1;
        h[16..20].copy_from_slice(&mx.to_ne_bytes());
        h[32..36].copy_from_slice(&salt1.to_be_bytes());
        h[36..40].copy_from_slice(&0x0506_0708u32.to_be_bytes());
        let mut b = [0u8; 96];
        b[..48].copy_from_slice(&h);
        b[48..].copy_from_slice(&h);
        b
    }

    #[test]
    fn reads_mx_frame_of_the_same_generation() {
        assert_eq!(parse(&index(7, 0x0102_0304), &wal()), IndexBound::Frames(7));
        // Another generation (salts), a torn update (copies differ), not initialised.
        assert_eq!(parse(&index(7, 9), &wal()), IndexBound::Unsettled);
        let mut torn = index(7, 0x0102_0304);
        torn[16] = 8;
        assert_eq!(parse(&torn, &wal()), IndexBound::Unsettled);
        let mut uninit = index(7, 0x0102_0304);
        uninit[12] = 0;
        uninit[60] = 0;
        assert_eq!(parse(&uninit, &wal()), IndexBound::Unsettled);
    }
}
