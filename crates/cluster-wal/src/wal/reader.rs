//! Groups valid WAL frames into committed transactions.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

use super::checksum::wal_checksum;
use super::frame::{FRAME_HEADER_LEN, FrameHeader};
use super::header::{WAL_HEADER_LEN, WalHeader};

/// A position inside one WAL generation: just after a commit frame (or the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCursor {
    /// The generation's header (salts, page size, byte order, checksum seed).
    pub header: WalHeader,
    /// Byte offset of the next frame to read.
    pub offset: u64,
    /// Cumulative checksum of the last frame before `offset` (the header's at the start).
    pub checksum: (u32, u32),
}

impl WalCursor {
    /// The start of a WAL generation.
    pub fn start(header: WalHeader) -> Self {
        Self {
            header,
            offset: WAL_HEADER_LEN as u64,
            checksum: header.checksum,
        }
    }

    /// Size of one frame (header + page) in bytes.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.header.page_size)
    }

    /// Number of frames before the cursor.
    pub fn frames(&self) -> u64 {
        (self.offset - WAL_HEADER_LEN as u64) / self.frame_len()
    }
}

/// One committed transaction read from the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalTxn {
    /// The final image of every page written, ascending by page number, without pages beyond
    /// `commit_pages` (those are dropped, as after a shrinking VACUUM).
    pub pages: Vec<(u32, Vec<u8>)>,
    /// Database size in pages after the commit.
    pub commit_pages: u32,
    /// The cursor just after the commit frame.
    pub end: WalCursor,
}

/// Reads every complete, valid transaction after `cursor`, stopping at the first frame that is
/// missing, torn, carries other salts or fails the cumulative checksum (that is where SQLite's
/// own recovery stops too), and returns them with the cursor after the last commit frame.
///
/// Frames after the last commit frame (a spilled in-progress or rolled-back transaction) are
/// never returned; the cursor stays before them.
pub fn read_committed<R: Read + Seek>(
    file: &mut R,
    cursor: WalCursor,
) -> io::Result<(Vec<WalTxn>, WalCursor)> {
    read_committed_upto(file, cursor, u64::MAX)
}

/// [`read_committed`] that never reads past frame `max_frames` of the generation (the
/// wal-index's `mxFrame`, see [`super::index`]): a commit frame beyond it was written by a
/// writer that did not finish its commit and is not part of the database.
pub fn read_committed_upto<R: Read + Seek>(
    file: &mut R,
    cursor: WalCursor,
    max_frames: u64,
) -> io::Result<(Vec<WalTxn>, WalCursor)> {
    let page_size = cursor.header.page_size as usize;
    let big_endian = cursor.header.big_endian;
    file.seek(SeekFrom::Start(cursor.offset))?;
    let mut reader = io::BufReader::with_capacity(256 * 1024, file);
    let mut frame = vec![0u8; FRAME_HEADER_LEN + page_size];
    let mut committed = cursor;
    let mut offset = cursor.offset;
    let mut sum = cursor.checksum;
    let mut pending: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut txns = Vec::new();
    let frame_len = cursor.frame_len();
    loop {
        if (offset - WAL_HEADER_LEN as u64) / frame_len >= max_frames {
            break;
        }
        if !read_full(&mut reader, &mut frame)? {
            break;
        }
        let mut hdr = [0u8; FRAME_HEADER_LEN];
        hdr.copy_from_slice(&frame[..FRAME_HEADER_LEN]);
        let fh = FrameHeader::parse(&hdr);
        if fh.salt1 != cursor.header.salt1 || fh.salt2 != cursor.header.salt2 || fh.pgno == 0 {
            break;
        }
        sum = wal_checksum(big_endian, &frame[..8], sum);
        sum = wal_checksum(big_endian, &frame[FRAME_HEADER_LEN..], sum);
        if sum != fh.checksum {
            break;
        }
        offset += frame.len() as u64;
        pending.insert(fh.pgno, frame[FRAME_HEADER_LEN..].to_vec());
        if fh.commit_size != 0 {
            let commit_pages = fh.commit_size;
            let pages = std::mem::take(&mut pending)
                .into_iter()
                .filter(|(p, _)| *p <= commit_pages)
                .collect();
            committed = WalCursor {
                header: cursor.header,
                offset,
                checksum: sum,
            };
            txns.push(WalTxn {
                pages,
                commit_pages,
                end: committed,
            });
        }
    }
    Ok((txns, committed))
}

/// Fills `buf` completely; `false` on a clean or partial end of file.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Cursor;

    use super::*;

    const PS: u32 = 512;

    struct Builder {
        hdr: WalHeader,
        bytes: Vec<u8>,
        sum: (u32, u32),
    }

    impl Builder {
        fn new(big_endian: bool) -> Self {
            let mut hdr = WalHeader {
                big_endian,
                page_size: PS,
                checkpoint_seq: 0,
                salt1: 7,
                salt2: 99,
                checksum: (0, 0),
            };
            let bytes = hdr.encode().to_vec();
            hdr = WalHeader::parse(&bytes).unwrap();
            Self {
                hdr,
                bytes,
                sum: hdr.checksum,
            }
        }

        fn frame(&mut self, pgno: u32, commit: u32, fill: u8) -> &mut Self {
            let page = vec![fill; PS as usize];
            let mut fh = FrameHeader {
                pgno,
                commit_size: commit,
                salt1: self.hdr.salt1,
                salt2: self.hdr.salt2,
                checksum: (0, 0),
            };
            let first8 = fh.encode();
            self.sum = wal_checksum(self.hdr.big_endian, &first8[..8], self.sum);
            self.sum = wal_checksum(self.hdr.big_endian, &page, self.sum);
            fh.checksum = self.sum;
            self.bytes.extend_from_slice(&fh.encode());
            self.bytes.extend_from_slice(&page);
            self
        }
    }

    fn read(bytes: &[u8]) -> (Vec<WalTxn>, WalCursor) {
        let hdr = WalHeader::parse(bytes).unwrap();
        read_committed(&mut Cursor::new(bytes), WalCursor::start(hdr)).unwrap()
    }

    #[test]
    fn groups_at_commit_frames_and_keeps_last_image() {
        for be in [false, true] {
            let mut b = Builder::new(be);
            b.frame(1, 0, 1).frame(2, 0, 2).frame(1, 2, 3); // txn 1: page 1 twice
            b.frame(3, 3, 4); // txn 2
            b.frame(4, 0, 5); // uncommitted tail
            let (txns, cur) = read(&b.bytes);
            assert_eq!(txns.len(), 2);
            assert_eq!(txns[0].pages.len(), 2);
            assert_eq!(txns[0].pages[0].1[0], 3, "last image of page 1 wins");
            assert_eq!(txns[1].commit_pages, 3);
            assert_eq!(cur.frames(), 4, "cursor stops before the uncommitted frame");
        }
    }

    #[test]
    fn drops_pages_beyond_commit_size() {
        let mut b = Builder::new(false);
        b.frame(5, 0, 1).frame(1, 2, 2);
        let (txns, _) = read(&b.bytes);
        assert_eq!(
            txns[0].pages.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn stops_at_bad_checksum_salt_or_torn_frame() {
        let mut b = Builder::new(false);
        b.frame(1, 1, 1).frame(2, 2, 2);
        let good = b.bytes.clone();
        let frame_len = 24 + PS as usize;
        // Flip a page byte in frame 2: its checksum fails.
        let mut bad = good.clone();
        bad[32 + frame_len + 30] ^= 0xFF;
        assert_eq!(read(&bad).0.len(), 1);
        // Wrong salt in frame 2.
        let mut bad = good.clone();
        bad[32 + frame_len + 8] ^= 1;
        assert_eq!(read(&bad).0.len(), 1);
        // Torn last frame.
        assert_eq!(read(&good[..good.len() - 10]).0.len(), 1);
        // Header checksum failure.
        let mut bad = good.clone();
        bad[12] ^= 1;
        assert!(WalHeader::parse(&bad).is_err());
    }

    #[test]
    fn resumes_from_cursor() {
        let mut b = Builder::new(false);
        b.frame(1, 1, 1);
        let (_, cur) = read(&b.bytes);
        b.frame(2, 2, 2);
        let (txns, cur2) = read_committed(&mut Cursor::new(&b.bytes), cur).unwrap();
        assert_eq!(txns.len(), 1);
        assert_eq!(txns[0].pages[0].0, 2);
        assert_eq!(cur2.frames(), 2);
    }
}
