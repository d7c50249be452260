//! Leader-side capture: tails the `-wal` file under a held read transaction (the *pin*), turns
//! committed frames into [`TxnData`] with txids and checksums, and owns checkpointing behind a
//! write barrier so that no frame leaves the WAL before it was shipped and acknowledged.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use uuid::Uuid;

use crate::error::{Result, WalError};
use crate::pagesum::{PageSums, page_hash};
use crate::record::TxnData;
use crate::sqlite::{check_dbpage, now_us, persist_wal, read_pages, shm_path, wal_path};
use crate::wal::{IndexBound, WalCursor, WalHeader, index_bound, read_committed_upto};

/// Where a leader starts: the replicated state its database is known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStart {
    /// Database history.
    pub lineage: Uuid,
    /// This leader's epoch.
    pub epoch: u64,
    /// The last txid contained in the database.
    pub base_txid: u64,
    /// The expected database checksum at `base_txid` (`None`: accept what is found, for a
    /// brand-new lineage).
    pub base_checksum: Option<u64>,
    /// This node's id (carried in records).
    pub node_id: String,
}

/// Result of a barrier checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointOutcome {
    /// SQLite's busy flag (1 when an app reader prevented a complete checkpoint).
    pub busy: i64,
    /// Frames in the WAL.
    pub log_frames: i64,
    /// Frames checkpointed.
    pub checkpointed: i64,
}

/// The capture state of one leader database. Runs on one thread (connections are not `Sync`).
pub struct Capture {
    db_path: PathBuf,
    wal_path: PathBuf,
    pin: Connection,
    barrier: Connection,
    cursor: Option<WalCursor>,
    /// A WAL reset (new salts at offset 0) is acceptable: set after our own complete
    /// checkpoint, cleared once frames are appended to the old generation.
    expect_reset: bool,
    sums: PageSums,
    page_size: u32,
    commit_pages: u32,
    txid: u64,
    start: LeaderStart,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("db", &self.db_path)
            .field("txid", &self.txid)
            .field("checksum", &self.sums.total())
            .finish_non_exhaustive()
    }
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    crate::sqlite::check_database(&conn, path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(WalError::NotWritable(format!(
            "{} is not in WAL mode",
            path.display()
        )));
    }
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

impl Capture {
    /// Opens capture on `db_path`: under the barrier, runs a PASSIVE checkpoint, takes the pin,
    /// computes the database checksum and positions the cursor at the end of the WAL.
    ///
    /// Fails with [`WalError::ChecksumMismatch`] when `start.base_checksum` is given and the
    /// database does not match it.
    pub fn open(db_path: &Path, start: LeaderStart) -> Result<Self> {
        let pin = open_conn(db_path)?;
        persist_wal(&pin)?;
        check_dbpage(&pin)?;
        let barrier = open_conn(db_path)?;
        barrier.execute_batch("BEGIN IMMEDIATE")?;
        let res = Self::open_under_barrier(db_path, pin, &barrier, start);
        barrier.execute_batch("ROLLBACK")?;
        let (pin, cursor, expect_reset, sums, page_size, start) = res?;
        Ok(Self {
            db_path: db_path.to_owned(),
            wal_path: wal_path(db_path),
            pin,
            barrier,
            cursor,
            expect_reset,
            commit_pages: sums.page_count(),
            sums,
            page_size,
            txid: start.base_txid,
            start,
        })
    }

    #[allow(clippy::type_complexity)]
    fn open_under_barrier(
        db_path: &Path,
        pin: Connection,
        _barrier: &Connection,
        start: LeaderStart,
    ) -> Result<(
        Connection,
        Option<WalCursor>,
        bool,
        PageSums,
        u32,
        LeaderStart,
    )> {
        let (busy, log, ckpt): (i64, i64, i64) =
            pin.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let complete = busy == 0 && log == ckpt;
        pin.execute_batch("BEGIN")?;
        let pages = read_pages(&pin)?;
        let sums = PageSums::from_pages(pages.iter().map(|(p, d)| (*p, d.as_slice())));
        let page_size: u32 = pin.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        if let Some(expected) = start.base_checksum
            && expected != sums.total()
        {
            return Err(WalError::ChecksumMismatch {
                txid: start.base_txid,
                what: "base",
                expected,
                actual: sums.total(),
            });
        }
        let wal = wal_path(db_path);
        let header = read_header(&wal)?;
        let bound = match &header {
            Some(h) => committed_frames(db_path, h)?,
            None => None,
        };
        // No header, or an index already reset for a generation whose header is not written
        // yet (nothing committed in it): start at the next generation's first frame.
        let cursor = match (header, bound) {
            (Some(h), Some(max)) => {
                let mut f = File::open(&wal).map_err(|e| WalError::io(&wal, e))?;
                let (_, end) = read_committed_upto(&mut f, WalCursor::start(h), max)
                    .map_err(|e| WalError::io(&wal, e))?;
                Some(end)
            }
            _ => None,
        };
        Ok((
            pin,
            cursor,
            complete || cursor.is_none(),
            sums,
            page_size,
            start,
        ))
    }

    /// The last captured txid.
    pub fn txid(&self) -> u64 {
        self.txid
    }

    /// The database checksum at the last captured txid.
    pub fn checksum(&self) -> u64 {
        self.sums.total()
    }

    /// Frames in the current WAL generation before the cursor.
    pub fn wal_frames(&self) -> u64 {
        self.cursor.map_or(0, |c| c.frames())
    }

    /// The database path.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Reads every transaction committed since the last call, in commit order.
    ///
    /// Fails with [`WalError::ContinuityBreak`] when the WAL was reset or truncated by someone
    /// else (a foreign checkpoint): frames may have been lost and standbys must resync.
    pub fn poll(&mut self) -> Result<Vec<TxnData>> {
        let Some(header) = read_header(&self.wal_path)? else {
            if self.cursor.is_some() && !self.expect_reset {
                return Err(WalError::ContinuityBreak(format!(
                    "{} vanished or was truncated by a checkpoint the replicator did not run",
                    self.wal_path.display()
                )));
            }
            return Ok(Vec::new());
        };
        // Never past SQLite's committed end: a commit frame beyond it is not a commit.
        let Some(max_frames) = committed_frames(&self.db_path, &header)? else {
            return Ok(Vec::new());
        };
        if header.page_size != self.page_size && self.commit_pages > 0 {
            return Err(WalError::ContinuityBreak(format!(
                "page size changed from {} to {}",
                self.page_size, header.page_size
            )));
        }
        let same_generation = self
            .cursor
            .is_some_and(|c| c.header.salt1 == header.salt1 && c.header.salt2 == header.salt2);
        let (cursor, follows_reset) = if same_generation {
            (
                self.cursor.unwrap_or_else(|| WalCursor::start(header)),
                false,
            )
        } else if self.expect_reset {
            (WalCursor::start(header), true)
        } else {
            return Err(WalError::ContinuityBreak(format!(
                "WAL salts changed ({:?} -> {}/{}) without a replicator checkpoint",
                self.cursor.map(|c| (c.header.salt1, c.header.salt2)),
                header.salt1,
                header.salt2
            )));
        };
        // State changes only once the read succeeded: a `-wal` file replaced or removed between
        // the header read and this open (a writer's connection coming and going) is retried at
        // the next poll with the same state.
        let mut f = match File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(WalError::io(&self.wal_path, e)),
        };
        let (wal_txns, end) = read_committed_upto(&mut f, cursor, max_frames)
            .map_err(|e| WalError::io(&self.wal_path, e))?;
        self.page_size = header.page_size;
        if follows_reset {
            tracing::debug!(salt1 = header.salt1, "following WAL reset");
            self.expect_reset = false;
        }
        self.cursor = Some(end);
        if !wal_txns.is_empty() && same_generation {
            self.expect_reset = false;
        }
        let mut out = Vec::with_capacity(wal_txns.len());
        for t in wal_txns {
            let mut pages: Vec<(u32, Bytes)> = t
                .pages
                .into_iter()
                .map(|(p, d)| (p, Bytes::from(d)))
                .collect();
            self.fill_growth_pages(&mut pages, t.commit_pages)?;
            let hashes: Vec<(u32, u64)> =
                pages.iter().map(|(p, d)| (*p, page_hash(*p, d))).collect();
            let pre = self.sums.total();
            self.sums.apply(&hashes, t.commit_pages);
            self.commit_pages = t.commit_pages;
            self.txid += 1;
            out.push(TxnData {
                lineage: self.start.lineage,
                epoch: self.start.epoch,
                first_txid: self.txid,
                txid: self.txid,
                page_size: self.page_size,
                commit_pages: t.commit_pages,
                pre_checksum: pre,
                post_checksum: self.sums.total(),
                commit_ts_us: now_us(),
                node_id: self.start.node_id.clone(),
                pages,
            });
        }
        Ok(out)
    }

    /// Every page in (previous size, new size] must be shipped; SQLite writes them all, but if
    /// one is missing, read it from the database file (Litestream's defensive fill).
    fn fill_growth_pages(&self, pages: &mut Vec<(u32, Bytes)>, commit_pages: u32) -> Result<()> {
        if commit_pages <= self.commit_pages {
            return Ok(());
        }
        let missing: Vec<u32> = (self.commit_pages + 1..=commit_pages)
            .filter(|p| pages.binary_search_by_key(p, |(q, _)| *q).is_err())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let f = File::open(&self.db_path).map_err(|e| WalError::io(&self.db_path, e))?;
        for p in missing {
            tracing::warn!(
                pgno = p,
                "growth page missing from the WAL; reading the database file"
            );
            let mut buf = vec![0u8; self.page_size as usize];
            let off = u64::from(p - 1) * u64::from(self.page_size);
            let _ = f
                .read_at(&mut buf, off)
                .map_err(|e| WalError::io(&self.db_path, e))?;
            pages.push((p, Bytes::from(buf)));
        }
        pages.sort_by_key(|(p, _)| *p);
        Ok(())
    }

    /// Checkpoints behind the write barrier: takes the write lock (`BEGIN IMMEDIATE` on the
    /// barrier connection), captures the sealed tail and hands it to `seal`, which must return
    /// only after the log acknowledged everything captured so far; then releases the pin, runs
    /// `wal_checkpoint(PASSIVE)`, re-pins and releases the barrier.
    ///
    /// Must not be called while the calling thread holds an open write transaction.
    pub fn checkpoint(
        &mut self,
        seal: &mut dyn FnMut(Vec<TxnData>) -> Result<()>,
    ) -> Result<CheckpointOutcome> {
        self.barrier.execute_batch("BEGIN IMMEDIATE")?;
        let res = self.checkpoint_under_barrier(seal);
        let rb = self.barrier.execute_batch("ROLLBACK");
        let out = res?;
        rb?;
        Ok(out)
    }

    fn checkpoint_under_barrier(
        &mut self,
        seal: &mut dyn FnMut(Vec<TxnData>) -> Result<()>,
    ) -> Result<CheckpointOutcome> {
        let tail = self.poll()?;
        seal(tail)?;
        self.pin.execute_batch("COMMIT")?;
        let (busy, log_frames, checkpointed): (i64, i64, i64) =
            self.pin
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
        self.pin.execute_batch("BEGIN")?;
        let _: i64 = self
            .pin
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if busy == 0 && log_frames == checkpointed {
            self.expect_reset = true;
        }
        tracing::debug!(busy, log_frames, checkpointed, "barrier checkpoint");
        Ok(CheckpointOutcome {
            busy,
            log_frames,
            checkpointed,
        })
    }

    /// Reads every page at the current captured state behind the barrier (after sealing the
    /// tail through `seal`), verifies them against the rolling checksum and returns
    /// `(txid, checksum, page_size, pages)`.
    #[allow(clippy::type_complexity)]
    pub fn read_snapshot(
        &mut self,
        seal: &mut dyn FnMut(Vec<TxnData>) -> Result<()>,
    ) -> Result<(u64, u64, u32, Vec<(u32, Vec<u8>)>)> {
        self.barrier.execute_batch("BEGIN IMMEDIATE")?;
        let res = (|| {
            let tail = self.poll()?;
            seal(tail)?;
            let pages = read_pages(&self.barrier)?;
            let sums = PageSums::from_pages(pages.iter().map(|(p, d)| (*p, d.as_slice())));
            if sums.total() != self.sums.total() {
                return Err(WalError::ChecksumMismatch {
                    txid: self.txid,
                    what: "snapshot",
                    expected: self.sums.total(),
                    actual: sums.total(),
                });
            }
            Ok((self.txid, self.sums.total(), self.page_size, pages))
        })();
        let rb = self.barrier.execute_batch("ROLLBACK");
        let out = res?;
        rb?;
        Ok(out)
    }
}

/// The frames of the WAL generation `header` that SQLite committed (the wal-index's `mxFrame`);
/// `None` while the index is being updated or describes a generation whose header is not written
/// yet; no bound without a `-shm` file.
fn committed_frames(db: &Path, header: &WalHeader) -> Result<Option<u64>> {
    let shm = shm_path(db);
    match index_bound(&shm, header).map_err(|e| WalError::io(&shm, e))? {
        IndexBound::Frames(n) => Ok(Some(n)),
        IndexBound::Unsettled => Ok(None),
        IndexBound::NoIndex => Ok(Some(u64::MAX)),
        IndexBound::Foreign(index) => {
            Err(crate::foreign::salts_differ(&wal_path(db), header, &index))
        }
    }
}

/// Reads and verifies the WAL header (see [`crate::wal::read_header`]).
fn read_header(wal: &Path) -> Result<Option<WalHeader>> {
    crate::wal::read_header(wal).map_err(|e| WalError::io(wal, e))
}
