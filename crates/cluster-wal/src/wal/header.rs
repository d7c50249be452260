//! The 32-byte WAL header.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::checksum::wal_checksum;

/// Length of the WAL header in bytes.
pub const WAL_HEADER_LEN: usize = 32;
/// Magic for checksums computed over little-endian words.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// Magic for checksums computed over big-endian words.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
const WAL_FORMAT_VERSION: u32 = 3_007_000;

/// A parsed and verified WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// Whether checksums read words big-endian.
    pub big_endian: bool,
    /// Database page size.
    pub page_size: u32,
    /// Checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Salt-1 (incremented at each WAL reset).
    pub salt1: u32,
    /// Salt-2 (re-randomised at each WAL reset).
    pub salt2: u32,
    /// The header checksum, the seed of the frame checksum chain.
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Parses and verifies a header; `Err` names what is wrong.
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < WAL_HEADER_LEN {
            return Err(format!(
                "header is {} bytes, need {WAL_HEADER_LEN}",
                b.len()
            ));
        }
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let big_endian = match w(0) {
            WAL_MAGIC_LE => false,
            WAL_MAGIC_BE => true,
            m => return Err(format!("bad magic {m:#010x}")),
        };
        if w(4) != WAL_FORMAT_VERSION {
            return Err(format!("unsupported WAL format version {}", w(4)));
        }
        let page_size = w(8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!("invalid page size {page_size}"));
        }
        let checksum = (w(24), w(28));
        if wal_checksum(big_endian, &b[..24], (0, 0)) != checksum {
            return Err("header checksum mismatch".to_owned());
        }
        Ok(Self {
            big_endian,
            page_size,
            checkpoint_seq: w(12),
            salt1: w(16),
            salt2: w(20),
            checksum,
        })
    }

    /// Encodes the header (used by tests to build WAL files).
    pub fn encode(&self) -> [u8; WAL_HEADER_LEN] {
        let mut b = [0u8; WAL_HEADER_LEN];
        let magic = if self.big_endian {
            WAL_MAGIC_BE
        } else {
            WAL_MAGIC_LE
        };
        b[0..4].copy_from_slice(&magic.to_be_bytes());
        b[4..8].copy_from_slice(&WAL_FORMAT_VERSION.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.checkpoint_seq.to_be_bytes());
        b[16..20].copy_from_slice(&self.salt1.to_be_bytes());
        b[20..24].copy_from_slice(&self.salt2.to_be_bytes());
        let (c0, c1) = wal_checksum(self.big_endian, &b[..24], (0, 0));
        b[24..28].copy_from_slice(&c0.to_be_bytes());
        b[28..32].copy_from_slice(&c1.to_be_bytes());
        b
    }
}

/// Reads and verifies the header of the WAL file `wal`; `None` when the file is missing,
/// shorter than a header or its header does not verify (an empty or freshly truncated WAL,
/// which SQLite ignores too).
pub fn read_header(wal: &Path) -> io::Result<Option<WalHeader>> {
    let mut f = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut b = [0u8; WAL_HEADER_LEN];
    match f.read_exact(&mut b) {
        Ok(()) => Ok(WalHeader::parse(&b).ok()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
