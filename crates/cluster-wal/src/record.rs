//! Records shipped through the log: `Txn` chunks and `EpochStart`, with their versioned binary
//! encoding (see `docs/protocol/wal.md`) and their log headers.
//!
//! Encoding v2 (all integers little-endian):
//!
//! ```text
//! magic "GCWL" | version u8 = 2 | kind u8 (1 = Txn, 2 = EpochStart) | flags u16 = 0
//! Txn:        lineage [16] | epoch u64 | first_txid u64 | txid u64 | chunk_idx u16
//!             | chunk_cnt u16 | page_size u32
//!             | commit_pages u32 | pre_checksum u64 | post_checksum u64 | commit_ts_us u64
//!             | node_len u8 | node [node_len] | page_count u32 | page_count × (pgno u32 | page)
//! EpochStart: lineage [16] | epoch u64 | base_txid u64 | base_checksum u64 | ts_us u64
//!             | node_len u8 | node [node_len]
//! trailer:    crc32c u32 over every preceding byte
//! ```
//!
//! A `Txn` record carries the transactions `first_txid..=txid`: one transaction, or several
//! consecutive ones coalesced by the leader while an append was in flight (group commit; pages
//! deduplicated, newest image wins). Version 1 (the same without `first_txid`, one transaction
//! per record) is still decoded; every other version is refused.

use bytes::{BufMut, Bytes, BytesMut};
use cluster_core::Headers;
use cluster_core::stream::MSG_ID_HEADER;
use uuid::Uuid;

use crate::crc::crc32c;

/// Record magic.
pub const MAGIC: &[u8; 4] = b"GCWL";
/// The encoding version written by this build.
pub const VERSION: u8 = 2;
/// The oldest encoding version this build still decodes (one transaction per `Txn` record).
pub const MIN_VERSION: u8 = 1;
const KIND_TXN: u8 = 1;
const KIND_EPOCH: u8 = 2;

/// Header: record kind, `txn` or `epoch`.
pub const H_KIND: &str = "Gc-Repl-Kind";
/// Header: leader epoch (decimal).
pub const H_EPOCH: &str = "Gc-Repl-Epoch";
/// Header: txid (decimal; the last txid of a `Txn` record, the base txid for `EpochStart`).
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
    /// The first transaction id carried (equal to `txid` unless transactions were coalesced).
    pub first_txid: u64,
    /// The last transaction id carried (txids are +1 per committed SQLite transaction, never
    /// reset); the standby's position after applying the record.
    pub txid: u64,
    /// Index of this chunk, `0..chunk_cnt`.
    pub chunk_idx: u16,
    /// Number of chunks of the transaction (≥ 1).
    pub chunk_cnt: u16,
    /// Database page size.
    pub page_size: u32,
    /// Database size in pages after the commit.
    pub commit_pages: u32,
    /// Database checksum before the first transaction.
    pub pre_checksum: u64,
    /// Database checksum after the last transaction.
    pub post_checksum: u64,
    /// Leader commit time of the first transaction, microseconds since the Unix epoch (lag
    /// metrics only).
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

/// A whole committed transaction (or a run of consecutive ones, see [`TxnData::coalesce`])
/// before chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnData {
    /// Database history.
    pub lineage: Uuid,
    /// Leader epoch.
    pub epoch: u64,
    /// First transaction id (equal to `txid` for one transaction).
    pub first_txid: u64,
    /// Last transaction id.
    pub txid: u64,
    /// Page size.
    pub page_size: u32,
    /// Database size in pages after the commit.
    pub commit_pages: u32,
    /// Checksum before the first transaction.
    pub pre_checksum: u64,
    /// Checksum after the last transaction.
    pub post_checksum: u64,
    /// Leader commit time of the first transaction (µs since the Unix epoch).
    pub commit_ts_us: u64,
    /// Shipping node.
    pub node_id: String,
    /// Pages, ascending.
    pub pages: Vec<(u32, Bytes)>,
}

const TXN_FIXED: usize = 8 + 16 + 8 + 8 + 8 + 2 + 2 + 4 + 4 + 8 + 8 + 8 + 1 + 4 + 4;

impl TxnData {
    /// Number of transactions carried.
    pub fn txn_count(&self) -> u64 {
        self.txid - self.first_txid + 1
    }

    /// Size of the record encoding this as one chunk.
    pub fn encoded_len(&self) -> usize {
        TXN_FIXED + self.node_id.len().min(255) + self.pages.len() * (4 + self.page_size as usize)
    }

    /// Appends the next transaction(s) to this run (group commit): afterwards `self` carries
    /// `self.first_txid..=next.txid`, each page's newest image, no page beyond the final size,
    /// `pre_checksum` of the first and `post_checksum`/`commit_pages` of the last transaction.
    ///
    /// Applying the result equals applying both in order: a page dropped by a shrink and needed
    /// again after a later growth is rewritten by that growth (every page in (old size, new
    /// size] is part of a growing transaction).
    ///
    /// Returns `next` unchanged when it does not continue this run (another lineage, epoch or
    /// page size, a txid gap or a checksum break).
    #[allow(clippy::result_large_err)]
    pub fn coalesce(&mut self, next: TxnData) -> Result<(), TxnData> {
        if next.lineage != self.lineage
            || next.epoch != self.epoch
            || next.page_size != self.page_size
            || next.first_txid != self.txid + 1
            || next.pre_checksum != self.post_checksum
        {
            return Err(next);
        }
        let limit = next.commit_pages;
        let old = std::mem::take(&mut self.pages);
        let mut merged = Vec::with_capacity(old.len() + next.pages.len());
        let mut a = old.into_iter().peekable();
        let mut b = next.pages.into_iter().peekable();
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some((pa, _)), Some((pb, _))) if pa == pb => {
                    a.next();
                    false
                }
                (Some((pa, _)), Some((pb, _))) => pa < pb,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let item = if take_a { a.next() } else { b.next() };
            if let Some(item) = item.filter(|(p, _)| *p <= limit) {
                merged.push(item);
            }
        }
        self.pages = merged;
        self.txid = next.txid;
        self.commit_pages = next.commit_pages;
        self.post_checksum = next.post_checksum;
        Ok(())
    }

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
                first_txid: self.first_txid,
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

impl TxnChunk {
    /// The transaction(s) of a record that has a single chunk (`Err(self)` for a chunk of a
    /// larger record).
    #[allow(clippy::result_large_err)]
    pub fn into_whole(self) -> Result<TxnData, TxnChunk> {
        if self.chunk_cnt != 1 {
            return Err(self);
        }
        Ok(TxnData {
            lineage: self.lineage,
            epoch: self.epoch,
            first_txid: self.first_txid,
            txid: self.txid,
            page_size: self.page_size,
            commit_pages: self.commit_pages,
            pre_checksum: self.pre_checksum,
            post_checksum: self.post_checksum,
            commit_ts_us: self.commit_ts_us,
            node_id: self.node_id,
            pages: self.pages,
        })
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

    /// The record's epoch.
    pub fn epoch(&self) -> u64 {
        match self {
            Record::Txn(t) => t.epoch,
            Record::EpochStart(e) => e.epoch,
        }
    }

    /// The message id used for deduplication: `<lineage>/<epoch>/<txid>/<chunk>` (the last txid
    /// carried: the txid ranges of one epoch's records are disjoint) for a chunk,
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

    /// Encodes the record (format v2).
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
                b.put_u64_le(t.first_txid);
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
        let version = body[4];
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(format!(
                "unsupported record version {version} (this build reads {MIN_VERSION} to {VERSION})"
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
                let first = r.u64()?;
                let (first_txid, txid) = if version == 1 {
                    (first, first)
                } else {
                    (first, r.u64()?)
                };
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
                if first_txid == 0 || first_txid > txid {
                    return Err(format!("bad txid range {first_txid}..={txid}"));
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
                    first_txid,
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
            first_txid: 42,
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

    fn page(p: u32, v: u8) -> (u32, Bytes) {
        (p, Bytes::from(vec![v; 1024]))
    }

    fn step(
        first: &TxnData,
        txid: u64,
        pre: u64,
        commit_pages: u32,
        pages: Vec<(u32, Bytes)>,
    ) -> TxnData {
        TxnData {
            first_txid: txid,
            txid,
            pre_checksum: pre,
            post_checksum: pre + 1,
            commit_pages,
            commit_ts_us: txid,
            pages,
            ..first.clone()
        }
    }

    #[test]
    fn coalescing_keeps_the_newest_image_and_the_final_size() {
        let a = step(
            &txn(0),
            10,
            100,
            5,
            vec![page(1, 1), page(4, 1), page(5, 1)],
        );
        let b = step(&a, 11, 101, 3, vec![page(1, 2), page(2, 2)]);
        let c = step(&a, 12, 102, 4, vec![page(3, 3), page(4, 3)]);
        let mut run = a.clone();
        run.coalesce(b).unwrap();
        // The shrink to 3 pages dropped pages 4 and 5.
        assert_eq!(
            run.pages,
            vec![page(1, 2), page(2, 2)],
            "newest image wins, pages beyond the size are dropped"
        );
        run.coalesce(c).unwrap();
        assert_eq!((run.first_txid, run.txid, run.txn_count()), (10, 12, 3));
        assert_eq!(
            (run.pre_checksum, run.post_checksum, run.commit_pages),
            (100, 103, 4)
        );
        assert_eq!(run.commit_ts_us, 10, "the oldest commit time is kept");
        assert_eq!(
            run.pages,
            vec![page(1, 2), page(2, 2), page(3, 3), page(4, 3)]
        );
        let chunk = run.clone().into_chunks(1 << 20).remove(0);
        assert_eq!((chunk.first_txid, chunk.txid), (10, 12));
        let rec = Record::Txn(chunk);
        assert_eq!(rec.encode().len(), run.encoded_len());
        assert_eq!(Record::decode(&rec.encode()).unwrap(), rec);
        assert_eq!(rec.headers().get(H_TXID), Some("12"));
    }

    #[test]
    fn coalescing_refuses_what_does_not_continue_the_run() {
        let a = step(&txn(0), 10, 100, 5, vec![page(1, 1)]);
        let gap = step(&a, 12, 101, 5, vec![page(1, 2)]);
        let broken = step(&a, 11, 7, 5, vec![page(1, 2)]);
        let other_epoch = TxnData {
            epoch: 4,
            ..step(&a, 11, 101, 5, vec![page(1, 2)])
        };
        for next in [gap, broken, other_epoch] {
            let mut run = a.clone();
            assert_eq!(run.coalesce(next.clone()), Err(next));
            assert_eq!(run, a);
        }
    }

    #[test]
    fn version_1_is_read_and_unknown_versions_are_refused() {
        // A version-1 record: the v2 layout without `first_txid`.
        let t = txn(2).into_chunks(1 << 20).remove(0);
        let mut b = BytesMut::new();
        b.put_slice(MAGIC);
        b.put_u8(1);
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
        let crc = crc32c(&b);
        b.put_u32_le(crc);
        assert_eq!(Record::decode(&b.freeze()).unwrap(), Record::Txn(t.clone()));

        for version in [0u8, 3, 200] {
            let mut enc = Record::Txn(t.clone()).encode().to_vec();
            enc[4] = version;
            let n = enc.len() - 4;
            let crc = crc32c(&enc[..n]);
            enc[n..].copy_from_slice(&crc.to_le_bytes());
            let err = Record::decode(&Bytes::from(enc)).unwrap_err();
            assert!(
                err.contains(&format!("unsupported record version {version}")),
                "{err}"
            );
        }
        // A range whose first txid is after its last is refused.
        let mut bad = t;
        bad.first_txid = bad.txid + 1;
        let err = Record::decode(&Record::Txn(bad).encode()).unwrap_err();
        assert!(err.contains("bad txid range"), "{err}");
    }
}
