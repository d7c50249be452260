//! Records shipped through the log: `Txn` chunks and `EpochStart`, with their versioned binary
//! encoding (see `docs/protocol/wal.md`) and their log headers.
//!
//! Encoding v1 (all integers little-endian):
//!
//! ```text
//! magic "GCWL" | version u8 = 1 | kind u8 (1 = Txn, 2 = EpochStart) | flags u16 = 0
//! Txn:        lineage [16] | epoch u64 | txid u64 | chunk_idx u16 | chunk_cnt u16 | page_size u32
//!             | commit_pages u32 | pre_checksum u64 | post_checksum u64 | commit_ts_us u64
//!             | node_len u8 | node [node_len] | page_count u32 | page_count × (pgno u32 | page)
//! EpochStart: lineage [16] | epoch u64 | base_txid u64 | base_checksum u64 | ts_us u64
//!             | node_len u8 | node [node_len]
//! trailer:    crc32c u32 over every preceding byte
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use cluster_core::Headers;
use cluster_core::stream::MSG_ID_HEADER;
use uuid::Uuid;

use crate::crc::crc32c;

/// Record magic.
pub const MAGIC: &[u8; 4] = b"GCWL";
/// The encoding version written by this build (the only one it reads).
pub const VERSION: u8 = 1;
const KIND_TXN: u8 = 1;
const KIND_EPOCH: u8 = 2;

/// Header: record kind, `txn` or `epoch`.
pub const H_KIND: &str = "Gc-Repl-Kind";
/// Header: leader epoch (decimal).
pub const H_EPOCH: &str = "Gc-Repl-Epoch";
/// Header: txid (decimal; the base txid for `EpochStart`).
pub const H_TXID: &str = "Gc-Repl-Txid";
/// Header: `<chunk_idx>/<chunk_cnt>`.
pub const H_CHUNK: &str = "Gc-Repl-Chunk";
/// Header: post-apply database checksum, 16 lowercase hex digits.
pub const H_POST: &str = "Gc-Repl-Post";

/// One chunk of a committed transaction (a transaction with `chunk_cnt` chunks is applied only
/// when all of them arrived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnChunk {
    /// Database history this transaction belongs to.
    pub lineage: Uuid,
    /// Leader epoch that shipped it.
    pub epoch: u64,
    /// Transaction id: +1 per committed SQLite transaction, never reset.
    pub txid: u64,
    /// Index of this chunk, `0..chunk_cnt`.
    pub chunk_idx: u16,
    /// Number of chunks of the transaction (≥ 1).
    pub chunk_cnt: u16,
    /// Database page size.
    pub page_size: u32,
    /// Database size in pages after the commit.
    pub commit_pages: u32,
    /// Database checksum before the transaction.
    pub pre_checksum: u64,
    /// Database checksum after the transaction.
    pub post_checksum: u64,
    /// Leader commit time, microseconds since the Unix epoch (lag metrics only).
    pub commit_ts_us: u64,
    /// Node that shipped it.
    pub node_id: String,
    /// `(pgno, page)` in ascending page order; every page is `page_size` bytes.
    pub pages: Vec<(u32, Bytes)>,
}

/// Published by a new leader before its first transaction: fences the previous epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochStart {
    /// Database history.
    pub lineage: Uuid,
    /// The new epoch.
    pub epoch: u64,
    /// The last txid contained in the database the new leader starts from.
    pub base_txid: u64,
    /// The database checksum at `base_txid`.
    pub base_checksum: u64,
    /// Wall time of the promotion, microseconds since the Unix epoch.
    pub ts_us: u64,
    /// The new leader.
    pub node_id: String,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A transaction chunk.
    Txn(TxnChunk),
    /// An epoch start.
    EpochStart(EpochStart),
}

/// A whole committed transaction before chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnData {
    /// Database history.
    pub lineage: Uuid,
    /// Leader epoch.
    pub epoch: u64,
    /// Transaction id.
    pub txid: u64,
    /// Page size.
    pub page_size: u32,
    /// Database size in pages after the commit.
    pub commit_pages: u32,
    /// Checksum before.
    pub pre_checksum: u64,
    /// Checksum after.
    pub post_checksum: u64,
    /// Leader commit time (µs since the Unix epoch).
    pub commit_ts_us: u64,
    /// Shipping node.
    pub node_id: String,
    /// Pages, ascending.
    pub pages: Vec<(u32, Bytes)>,
}

const TXN_FIXED: usize = 8 + 16 + 8 + 8 + 2 + 2 + 4 + 4 + 8 + 8 + 8 + 1 + 4 + 4;

impl TxnData {
    /// Splits the transaction into chunks whose encoding fits in `max_payload` bytes.
    pub fn into_chunks(self, max_payload: usize) -> Vec<TxnChunk> {
        let per_page = 4 + self.page_size as usize;
        let room = max_payload.saturating_sub(TXN_FIXED + self.node_id.len());
        let per_chunk = (room / per_page).max(1);
        let groups: Vec<Vec<(u32, Bytes)>> = if self.pages.is_empty() {
            vec![Vec::new()]
        } else {
            self.pages.chunks(per_chunk).map(<[_]>::to_vec).collect()
        };
        let cnt = groups.len() as u16;
        groups
            .into_iter()
            .enumerate()
            .map(|(i, pages)| TxnChunk {
                lineage: self.lineage,
                epoch: self.epoch,
                txid: self.txid,
                chunk_idx: i as u16,
                chunk_cnt: cnt,
                page_size: self.page_size,
                commit_pages: self.commit_pages,
                pre_checksum: self.pre_checksum,
                post_checksum: self.post_checksum,
                commit_ts_us: self.commit_ts_us,
                node_id: self.node_id.clone(),
                pages,
            })
            .collect()
    }
}

impl Record {
    /// The record's lineage.
    pub fn lineage(&self) -> Uuid {
        match self {
            Record::Txn(t) => t.lineage,
            Record::EpochStart(e) => e.lineage,
        }
    }

    /// The message id used for deduplication: `<lineage>/<epoch>/<txid>/<chunk>` for a chunk,
    /// `<lineage>/<epoch>/start` for an epoch start.
    pub fn msg_id(&self) -> String {
        match self {
            Record::Txn(t) => format!("{}/{}/{}/{}", t.lineage, t.epoch, t.txid, t.chunk_idx),
            Record::EpochStart(e) => format!("{}/{}/start", e.lineage, e.epoch),
        }
    }

    /// The log headers of the record (message id and locating headers).
    pub fn headers(&self) -> Headers {
        let h = Headers::new().with(MSG_ID_HEADER, self.msg_id());
        match self {
            Record::Txn(t) => h
                .with(H_KIND, "txn")
                .with(H_EPOCH, t.epoch.to_string())
                .with(H_TXID, t.txid.to_string())
                .with(H_CHUNK, format!("{}/{}", t.chunk_idx, t.chunk_cnt))
                .with(H_POST, format!("{:016x}", t.post_checksum)),
            Record::EpochStart(e) => h
                .with(H_KIND, "epoch")
                .with(H_EPOCH, e.epoch.to_string())
                .with(H_TXID, e.base_txid.to_string())
                .with(H_POST, format!("{:016x}", e.base_checksum)),
        }
    }

    /// Encodes the record (format v1).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_slice(MAGIC);
        b.put_u8(VERSION);
        match self {
            Record::Txn(t) => {
                b.reserve(TXN_FIXED + t.pages.len() * (4 + t.page_size as usize));
                b.put_u8(KIND_TXN);
                b.put_u16_le(0);
                b.put_slice(t.lineage.as_bytes());
                b.put_u64_le(t.epoch);
                b.put_u64_le(t.txid);
                b.put_u16_le(t.chunk_idx);
                b.put_u16_le(t.chunk_cnt);
                b.put_u32_le(t.page_size);
                b.put_u32_le(t.commit_pages);
                b.put_u64_le(t.pre_checksum);
                b.put_u64_le(t.post_checksum);
                b.put_u64_le(t.commit_ts_us);
                put_node(&mut b, &t.node_id);
                b.put_u32_le(t.pages.len() as u32);
                for (pgno, data) in &t.pages {
                    b.put_u32_le(*pgno);
                    b.put_slice(data);
                }
            }
            Record::EpochStart(e) => {
                b.put_u8(KIND_EPOCH);
                b.put_u16_le(0);
                b.put_slice(e.lineage.as_bytes());
                b.put_u64_le(e.epoch);
                b.put_u64_le(e.base_txid);
                b.put_u64_le(e.base_checksum);
                b.put_u64_le(e.ts_us);
                put_node(&mut b, &e.node_id);
            }
        }
        let crc = crc32c(&b);
        b.put_u32_le(crc);
        b.freeze()
    }

    /// Decodes and verifies a record; `Err` says what is wrong.
    pub fn decode(data: &Bytes) -> Result<Record, String> {
        if data.len() < 12 {
            return Err(format!("record of {} bytes is too short", data.len()));
        }
        let (body, trailer) = data.split_at(data.len() - 4);
        let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let actual = crc32c(body);
        if stored != actual {
            return Err(format!(
                "CRC-32C mismatch: stored {stored:08x}, computed {actual:08x}"
            ));
        }
        if &body[..4] != MAGIC {
            return Err("bad magic".to_owned());
        }
        if body[4] != VERSION {
            return Err(format!(
                "unsupported record version {} (this build reads {VERSION})",
                body[4]
            ));
        }
        let mut r = Cur {
            b: data,
            pos: 8,
            end: body.len(),
        };
        match body[5] {
            KIND_TXN => {
                let lineage = r.uuid()?;
                let epoch = r.u64()?;
                let txid = r.u64()?;
                let chunk_idx = r.u16()?;
                let chunk_cnt = r.u16()?;
                let page_size = r.u32()?;
                let commit_pages = r.u32()?;
                let pre_checksum = r.u64()?;
                let post_checksum = r.u64()?;
                let commit_ts_us = r.u64()?;
                let node_id = r.node()?;
                let n = r.u32()? as usize;
                if chunk_cnt == 0 || chunk_idx >= chunk_cnt {
                    return Err(format!("bad chunk {chunk_idx}/{chunk_cnt}"));
                }
                if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
                    return Err(format!("bad page size {page_size}"));
                }
                let mut pages = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let pgno = r.u32()?;
                    let page = r.bytes(page_size as usize)?;
                    if pgno == 0 || pgno > commit_pages {
                        return Err(format!("page {pgno} outside 1..={commit_pages}"));
                    }
                    pages.push((pgno, page));
                }
                r.done()?;
                Ok(Record::Txn(TxnChunk {
                    lineage,
                    epoch,
                    txid,
                    chunk_idx,
                    chunk_cnt,
                    page_size,
                    commit_pages,
                    pre_checksum,
                    post_checksum,
                    commit_ts_us,
                    node_id,
                    pages,
                }))
            }
            KIND_EPOCH => {
                let e = EpochStart {
                    lineage: r.uuid()?,
                    epoch: r.u64()?,
                    base_txid: r.u64()?,
                    base_checksum: r.u64()?,
                    ts_us: r.u64()?,
                    node_id: r.node()?,
                };
                r.done()?;
                Ok(Record::EpochStart(e))
            }
            k => Err(format!("unknown record kind {k}")),
        }
    }
}

fn put_node(b: &mut BytesMut, node: &str) {
    let n = &node.as_bytes()[..node.len().min(255)];
    b.put_u8(n.len() as u8);
    b.put_slice(n);
}

struct Cur<'a> {
    b: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.end - self.pos < n {
            return Err("record truncated".to_owned());
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, String> {
        self.take(n)?;
        Ok(self.b.slice(self.pos - n..self.pos))
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn uuid(&mut self) -> Result<Uuid, String> {
        let s = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(s);
        Ok(Uuid::from_bytes(a))
    }
    fn node(&mut self) -> Result<String, String> {
        let n = self.take(1)?[0] as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| "node id is not UTF-8".to_owned())
    }
    fn done(&self) -> Result<(), String> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.end - self.pos))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn txn(pages: usize) -> TxnData {
        TxnData {
            lineage: Uuid::new_v4(),
            epoch: 3,
            txid: 42,
            page_size: 1024,
            commit_pages: pages as u32 + 1,
            pre_checksum: 1,
            post_checksum: 2,
            commit_ts_us: 5,
            node_id: "n1".into(),
            pages: (1..=pages as u32)
                .map(|p| (p, Bytes::from(vec![p as u8; 1024])))
                .collect(),
        }
    }

    #[test]
    fn roundtrip_and_chunking() {
        let chunks = txn(10).into_chunks(4096);
        assert!(chunks.len() > 1);
        let mut seen = 0;
        for c in &chunks {
            let rec = Record::Txn(c.clone());
            let enc = rec.encode();
            assert!(enc.len() <= 4096, "chunk of {} bytes", enc.len());
            assert_eq!(Record::decode(&enc).unwrap(), rec);
            seen += c.pages.len();
        }
        assert_eq!(seen, 10);
        let e = Record::EpochStart(EpochStart {
            lineage: Uuid::new_v4(),
            epoch: 9,
            base_txid: 100,
            base_checksum: 7,
            ts_us: 1,
            node_id: "n2".into(),
        });
        assert_eq!(Record::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn corruption_is_refused() {
        let enc = Record::Txn(txn(2).into_chunks(1 << 20).remove(0)).encode();
        for i in [0, 5, 40, enc.len() / 2, enc.len() - 1] {
            let mut bad = enc.to_vec();
            bad[i] ^= 0x40;
            let err = Record::decode(&Bytes::from(bad)).unwrap_err();
            assert!(err.contains("CRC"), "{err}");
        }
        assert!(Record::decode(&enc.slice(..enc.len() - 9)).is_err());
    }
}
