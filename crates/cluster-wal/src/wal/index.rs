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
//! | 14 | szPage: page size (u16; 1 means 65536) |
//! | 16 | mxFrame: frames of the current generation that are committed |
//! | 24 | aFrameCksum: the cumulative checksum of frame `mxFrame` |
//! | 32 | aSalt: the WAL header's salts (bytes as in the WAL header) |
//!
//! The index of a live database also tells whether the `-wal` file is the one SQLite indexed:
//! a writer resets the index (new salts, `mxFrame` 0) *before* it writes a new WAL header, so a
//! settled index with committed frames whose salts differ from the file's header means the file
//! was replaced — e.g. copied from another database ([`IndexBound::Foreign`]).

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
    /// The index is settled and has committed frames of another WAL generation than the
    /// file's header: the `-wal` file is not the one SQLite indexed (replaced, or copied from
    /// another database).
    Foreign(IndexHeader),
}

/// The fields of a settled wal-index header that tie it to one WAL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    /// Committed frames of the indexed generation.
    pub mx_frame: u32,
    /// Page size.
    pub page_size: u32,
    /// Salts of the indexed generation (as in its WAL header).
    pub salts: (u32, u32),
    /// Cumulative checksum of frame `mx_frame` (as stored in that frame's header).
    pub frame_checksum: (u32, u32),
}

/// Reads the settled wal-index header of `shm`: `Ok(None)` when there is no `-shm` file,
/// `Ok(Some(None))` while it is being updated or not initialised.
pub fn read_index(shm: &Path) -> io::Result<Option<Option<IndexHeader>>> {
    let mut f = match File::open(shm) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut b = [0u8; 2 * INDEX_HEADER_LEN];
    match f.read_exact(&mut b) {
        Ok(()) => Ok(Some(parse(&b))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(None)),
        Err(e) => Err(e),
    }
}

/// Reads the wal-index header of `shm` for the WAL generation `wal`.
pub fn index_bound(shm: &Path, wal: &WalHeader) -> io::Result<IndexBound> {
    Ok(match read_index(shm)? {
        None => IndexBound::NoIndex,
        Some(index) => bound(index, wal),
    })
}

fn bound(index: Option<IndexHeader>, wal: &WalHeader) -> IndexBound {
    match index {
        None => IndexBound::Unsettled,
        Some(h) if h.salts == (wal.salt1, wal.salt2) => IndexBound::Frames(u64::from(h.mx_frame)),
        // A writer reset the index and has not written the new WAL header yet.
        Some(h) if h.mx_frame == 0 => IndexBound::Unsettled,
        Some(h) => IndexBound::Foreign(h),
    }
}

fn parse(b: &[u8; 2 * INDEX_HEADER_LEN]) -> Option<IndexHeader> {
    let (h0, h1) = b.split_at(INDEX_HEADER_LEN);
    let ne = |i: usize| u32::from_ne_bytes([h0[i], h0[i + 1], h0[i + 2], h0[i + 3]]);
    let be = |i: usize| u32::from_be_bytes([h0[i], h0[i + 1], h0[i + 2], h0[i + 3]]);
    if h0 != h1 || ne(0) != INDEX_VERSION || h0[12] == 0 {
        return None;
    }
    let page_size = match u16::from_ne_bytes([h0[14], h0[15]]) {
        1 => 65536,
        n => u32::from(n),
    };
    Some(IndexHeader {
        mx_frame: ne(16),
        page_size,
        salts: (be(32), be(36)),
        frame_checksum: (ne(24), ne(28)),
    })
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

    fn bound_of(b: &[u8; 96]) -> IndexBound {
        bound(parse(b), &wal())
    }

    #[test]
    fn reads_mx_frame_of_the_same_generation() {
        assert_eq!(bound_of(&index(7, 0x0102_0304)), IndexBound::Frames(7));
        // A reset index of another generation whose header is not written yet, a torn update
        // (copies differ), not initialised.
        assert_eq!(bound_of(&index(0, 9)), IndexBound::Unsettled);
        let mut torn = index(7, 0x0102_0304);
        torn[16] = 8;
        assert_eq!(bound_of(&torn), IndexBound::Unsettled);
        let mut uninit = index(7, 0x0102_0304);
        uninit[12] = 0;
        uninit[60] = 0;
        assert_eq!(bound_of(&uninit), IndexBound::Unsettled);
    }

    #[test]
    fn committed_frames_of_another_generation_mean_a_foreign_file() {
        let IndexBound::Foreign(h) = bound_of(&index(7, 9)) else {
            panic!("not foreign")
        };
        assert_eq!((h.mx_frame, h.salts), (7, (9, 0x0506_0708)));
    }
}
