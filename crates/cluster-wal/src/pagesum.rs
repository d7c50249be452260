//! The rolling database checksum: XOR over all pages of CRC-64(pgno ‖ page), kept per page so
//! that a transaction updates it in O(pages written).
//!
//! Page 1 is normalised before hashing: the header fields that SQLite's pager stamps on every
//! commit that writes page 1 — bytes 24..28 (file change counter), 92..96 (version-valid-for
//! number) and 96..100 (`SQLITE_VERSION_NUMBER` of the library that last wrote the file) — are
//! treated as zero. They differ legitimately between the writer (any SQLite 3.x, any process)
//! and a standby whose own pager rewrites them when it applies page 1; every other header byte
//! is database content and is hashed (the rule and the field review are in
//! docs/protocol/wal.md, "Page-1 normalisation"). The lock-byte page (the page holding byte
//! offset 2^30) is never hashed.

use crate::crc::Crc64;

/// Byte ranges of page 1 that are zeroed before hashing and comparing: the file change counter,
/// the version-valid-for number and the SQLite version number of the last writer.
pub const PAGE1_VOLATILE: [std::ops::Range<usize>; 2] = [24..28, 92..100];

/// Page number of the lock-byte page for a page size.
pub fn lock_page(page_size: u32) -> u32 {
    (0x4000_0000 / page_size) + 1
}

/// Hash of one page, normalised (0 for the lock-byte page).
pub fn page_hash(pgno: u32, data: &[u8]) -> u64 {
    if data.is_empty() || pgno == lock_page(data.len() as u32) {
        return 0;
    }
    let mut h = Crc64::new();
    h.update(&pgno.to_be_bytes());
    if pgno == 1 && data.len() >= 100 {
        h.update(&normalise_page1(data));
    } else {
        h.update(data);
    }
    h.finish()
}

/// Copies page 1 with the normalised bytes zeroed (for page comparisons in tests and tools).
pub fn normalise_page1(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.len() >= 100 {
        for r in PAGE1_VOLATILE {
            d[r].fill(0);
        }
    }
    d
}

/// Per-page hashes and their XOR (the database checksum).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageSums {
    sums: Vec<u64>,
    total: u64,
}

impl PageSums {
    /// The checksum of an empty database (0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the sums from every page of a database, in any order.
    pub fn from_pages<'a>(pages: impl IntoIterator<Item = (u32, &'a [u8])>) -> Self {
        let mut s = Self::new();
        for (pgno, data) in pages {
            s.set(pgno, page_hash(pgno, data));
        }
        s
    }

    /// The database checksum.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of pages covered.
    pub fn page_count(&self) -> u32 {
        self.sums.len() as u32
    }

    fn set(&mut self, pgno: u32, hash: u64) {
        let i = pgno as usize - 1;
        if self.sums.len() <= i {
            self.sums.resize(i + 1, 0);
        }
        self.total ^= self.sums[i] ^ hash;
        self.sums[i] = hash;
    }

    /// The checksum after writing `pages` (already hashed) and resizing to `commit_pages`,
    /// without changing `self`.
    pub fn preview(&self, pages: &[(u32, u64)], commit_pages: u32) -> u64 {
        let mut total = self.total;
        for &(pgno, h) in pages {
            total ^= self.sums.get(pgno as usize - 1).copied().unwrap_or(0) ^ h;
        }
        for i in commit_pages as usize..self.sums.len() {
            total ^= self.sums[i];
        }
        total
    }

    /// Writes `pages` (already hashed) and resizes to `commit_pages`.
    pub fn apply(&mut self, pages: &[(u32, u64)], commit_pages: u32) {
        for &(pgno, h) in pages {
            self.set(pgno, h);
        }
        while self.sums.len() > commit_pages as usize {
            if let Some(h) = self.sums.pop() {
                self.total ^= h;
            }
        }
        if self.sums.len() < commit_pages as usize {
            self.sums.resize(commit_pages as usize, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_equals_full() {
        let a = vec![1u8; 512];
        let b = vec![2u8; 512];
        let c = vec![3u8; 512];
        let mut s = PageSums::from_pages([(1, a.as_slice()), (2, b.as_slice())]);
        let upd = [(2, page_hash(2, &c)), (3, page_hash(3, &a))];
        let post = s.preview(&upd, 3);
        s.apply(&upd, 3);
        assert_eq!(post, s.total());
        let full = PageSums::from_pages([(1, &a[..]), (2, &c[..]), (3, &a[..])]);
        assert_eq!(full.total(), s.total());
        // Truncation XORs the removed pages out.
        let post = s.preview(&[], 1);
        s.apply(&[], 1);
        assert_eq!(post, PageSums::from_pages([(1, &a[..])]).total());
    }

    #[test]
    fn page1_counters_are_normalised() {
        let mut a = vec![7u8; 512];
        let h = page_hash(1, &a);
        a[25] = 0;
        a[93] = 1;
        // SQLITE_VERSION_NUMBER of the last writer: 3040001 (Debian 3.40.1) vs 3051003.
        a[96..100].copy_from_slice(&3_040_001u32.to_be_bytes());
        assert_eq!(page_hash(1, &a), h);
        a[96..100].copy_from_slice(&3_051_003u32.to_be_bytes());
        assert_eq!(page_hash(1, &a), h);
        // Every other header byte is content: the in-header database size, the schema cookie,
        // the user version, the reserved bytes.
        for i in [28, 40, 60, 72, 91, 100] {
            let mut b = a.clone();
            b[i] ^= 1;
            assert_ne!(page_hash(1, &b), h, "byte {i} must be hashed");
        }
        a[30] = 0;
        assert_ne!(page_hash(1, &a), h);
    }
}
