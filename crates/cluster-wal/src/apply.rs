//! Standby apply: assembles transaction chunks, verifies the checksum chain, writes pages
//! through `sqlite_dbpage` in one SQLite transaction per replicated transaction and records the
//! applied position durably.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;

use crate::error::{Result, WalError};
use crate::pagesum::{PageSums, page_hash};
use crate::position::{self, Position};
use crate::record::{EpochStart, TxnChunk};
use crate::sqlite::{check_dbpage, read_pages};

/// Standby options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StandbyOptions {
    /// `true`: every applied transaction is fsynced (`synchronous=FULL` on the apply
    /// connection) and so is the position sidecar. `false` (default): `synchronous=NORMAL` and
    /// no sidecar fsync; after a power loss the database is consistent but may be a few
    /// transactions behind its sidecar, and the position is found again by the checksum search
    /// over the retained log (the log is the durable copy).
    pub fsync_position: bool,
}

/// What applying one log entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A whole record was applied: one transaction, or a run of coalesced ones.
    Txn {
        /// The last txid applied (the new position).
        txid: u64,
        /// Number of transactions applied (`txid - first_txid + 1`).
        txns: u64,
        /// Leader commit time of the first transaction (µs since the Unix epoch).
        commit_ts_us: u64,
    },
    /// A chunk was buffered; the transaction is not complete yet.
    Buffered,
    /// An epoch start was recorded.
    Epoch(u64),
    /// The entry was already applied or belongs to a deposed epoch: skipped.
    Skipped,
}

struct Pending {
    epoch: u64,
    txid: u64,
    chunks: Vec<TxnChunk>,
}

/// A standby database being kept page-identical to the leader.
pub struct Standby {
    path: PathBuf,
    conn: Connection,
    sums: PageSums,
    pos: Position,
    pending: Option<Pending>,
    opts: StandbyOptions,
    /// The sidecar disagrees with the database checksum (crash between commit and sidecar
    /// write, or divergence): the position must be found again before applying.
    needs_recovery: bool,
    /// Schema cookie (page 1 bytes 40..44) last written; the apply connection is reopened when
    /// it changes.
    schema_cookie: Option<[u8; 4]>,
    /// When the sidecar was last written (non-durable mode writes it at most every 100 ms).
    last_store: Option<std::time::Instant>,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("path", &self.path)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

fn open_apply_conn(path: &Path, durable: bool) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    crate::sqlite::check_database(&conn, path)?;
    check_dbpage(&conn)?;
    conn.pragma_update(None, "writable_schema", "ON")?;
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
    Ok(conn)
}

/// Computes the rolling checksum of a database from a fresh connection.
pub fn database_checksum(path: &Path) -> Result<PageSums> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    check_dbpage(&conn)?;
    conn.execute_batch("BEGIN")?;
    let pages = read_pages(&conn)?;
    conn.execute_batch("COMMIT")?;
    Ok(PageSums::from_pages(
        pages.iter().map(|(p, d)| (*p, d.as_slice())),
    ))
}

impl Standby {
    /// Opens (or creates) a standby database and its position sidecar, and computes its
    /// checksum.
    pub fn open(path: &Path, opts: StandbyOptions) -> Result<Self> {
        let conn = open_apply_conn(path, opts.fsync_position)?;
        let sums = database_checksum(path)?;
        let (pos, needs_recovery) = match position::load(path) {
            Some(p) => (p, p.checksum != sums.total()),
            None if sums.page_count() == 0 => (Position::empty(), false),
            // A database without position: unknown history, must be restored.
            None => (
                Position {
                    checksum: sums.total(),
                    ..Position::empty()
                },
                true,
            ),
        };
        if needs_recovery {
            tracing::warn!(
                db = %path.display(),
                sidecar = pos.checksum,
                actual = sums.total(),
                "standby position does not match the database; recovery needed"
            );
        }
        Ok(Self {
            path: path.to_owned(),
            conn,
            sums,
            pos,
            pending: None,
            opts,
            needs_recovery,
            schema_cookie: None,
            last_store: None,
        })
    }

    /// The applied position.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database checksum maintained incrementally.
    pub fn checksum(&self) -> u64 {
        self.sums.total()
    }

    /// Whether the sidecar disagreed with the database at open (see [`Standby::recover_at`]).
    pub fn needs_recovery(&self) -> bool {
        self.needs_recovery
    }

    /// Whether the database holds no page.
    pub fn is_empty(&self) -> bool {
        self.sums.page_count() == 0
    }

    /// Adopts a position found by the checksum search: the database's checksum equals the
    /// post-checksum of `txid`, last chunk at `stream_seq`.
    pub fn recover_at(
        &mut self,
        lineage: uuid::Uuid,
        epoch: u64,
        txid: u64,
        stream_seq: u64,
    ) -> Result<()> {
        self.pos = Position {
            lineage: Some(lineage),
            epoch: epoch.max(self.pos.epoch),
            txid,
            checksum: self.sums.total(),
            stream_seq,
            ..Position::empty()
        };
        self.needs_recovery = false;
        position::store(&self.path, &self.pos, self.opts.fsync_position)
    }

    /// Notes that a log entry was processed without changing the database (skipped entry).
    pub fn advance_seq(&mut self, seq: u64) {
        if self.pending.is_none() && seq > self.pos.stream_seq {
            self.pos.stream_seq = seq;
        }
    }

    fn check_lineage(&mut self, lineage: uuid::Uuid, base_txid: u64) -> Result<()> {
        match self.pos.lineage {
            Some(l) if l == lineage => Ok(()),
            Some(l) => Err(WalError::LineageMismatch {
                local: l,
                remote: lineage,
            }),
            None if self.pos.txid == 0 && base_txid == 0 && self.sums.page_count() == 0 => {
                self.pos.lineage = Some(lineage);
                Ok(())
            }
            None => Err(WalError::LineageMismatch {
                local: uuid::Uuid::nil(),
                remote: lineage,
            }),
        }
    }

    /// Applies one transaction chunk read at stream sequence `seq`. The record's transactions
    /// (`first_txid..=txid`) are written in one SQLite transaction when the last chunk arrives,
    /// only if `first_txid` is the next txid and its `pre_checksum` and computed
    /// `post_checksum` match; otherwise nothing is written and an error says why.
    pub fn apply_chunk(&mut self, seq: u64, chunk: TxnChunk) -> Result<Applied> {
        if chunk.epoch < self.pos.epoch || chunk.txid <= self.pos.txid {
            if chunk.epoch < self.pos.epoch {
                tracing::warn!(
                    epoch = chunk.epoch,
                    current = self.pos.epoch,
                    "record of a deposed epoch skipped"
                );
            }
            self.advance_seq(seq);
            return Ok(Applied::Skipped);
        }
        self.check_lineage(chunk.lineage, chunk.first_txid - 1)?;
        if chunk.first_txid != self.pos.txid + 1 {
            // Also a record that starts before the position and ends after it: positions are
            // only ever taken at record boundaries, so this is not this log's history.
            return Err(WalError::Gap {
                expected: self.pos.txid + 1,
                got: chunk.first_txid,
            });
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.epoch != chunk.epoch || p.txid != chunk.txid)
        {
            tracing::warn!("incomplete transaction dropped (superseded)");
            self.pending = None;
        }
        let pending = self.pending.get_or_insert_with(|| Pending {
            epoch: chunk.epoch,
            txid: chunk.txid,
            chunks: Vec::new(),
        });
        if usize::from(chunk.chunk_idx) != pending.chunks.len() {
            let expected = pending.chunks.len();
            self.pending = None;
            return Err(WalError::CorruptRecord {
                seq,
                reason: format!(
                    "chunk {} of txid {} out of order (expected {expected})",
                    chunk.chunk_idx, chunk.txid
                ),
            });
        }
        let last = chunk.chunk_idx + 1 == chunk.chunk_cnt;
        pending.chunks.push(chunk);
        if !last {
            return Ok(Applied::Buffered);
        }
        let Some(p) = self.pending.take() else {
            return Ok(Applied::Buffered);
        };
        self.apply_txn(seq, p.chunks)
    }

    fn apply_txn(&mut self, seq: u64, chunks: Vec<TxnChunk>) -> Result<Applied> {
        let head = &chunks[0];
        let (first_txid, txid, epoch, commit_pages, pre, post, ts, lineage) = (
            head.first_txid,
            head.txid,
            head.epoch,
            head.commit_pages,
            head.pre_checksum,
            head.post_checksum,
            head.commit_ts_us,
            head.lineage,
        );
        let mut pages: Vec<(u32, Bytes)> = chunks.into_iter().flat_map(|c| c.pages).collect();
        pages.sort_by_key(|(p, _)| *p);
        if pre != self.sums.total() {
            return Err(WalError::ChecksumMismatch {
                txid,
                what: "pre",
                expected: pre,
                actual: self.sums.total(),
            });
        }
        let hashes: Vec<(u32, u64)> = pages.iter().map(|(p, d)| (*p, page_hash(*p, d))).collect();
        let computed = self.sums.preview(&hashes, commit_pages);
        if computed != post {
            return Err(WalError::ChecksumMismatch {
                txid,
                what: "post",
                expected: post,
                actual: computed,
            });
        }
        self.write_pages(&pages, commit_pages)?;
        self.sums.apply(&hashes, commit_pages);
        self.pos = Position {
            lineage: Some(lineage),
            epoch: epoch.max(self.pos.epoch),
            txid,
            checksum: post,
            stream_seq: seq,
            ..Position::empty()
        };
        self.store_position(false)?;
        Ok(Applied::Txn {
            txid,
            txns: txid - first_txid + 1,
            commit_ts_us: ts,
        })
    }

    /// Writes the sidecar: always in durable mode or when `force`, otherwise at most every
    /// 100 ms (a stale sidecar is corrected by the checksum search at the next start).
    fn store_position(&mut self, force: bool) -> Result<()> {
        let due = self
            .last_store
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if force || self.opts.fsync_position || due {
            position::store(&self.path, &self.pos, self.opts.fsync_position)?;
            self.last_store = Some(std::time::Instant::now());
        }
        Ok(())
    }

    fn write_pages(&mut self, pages: &[(u32, Bytes)], commit_pages: u32) -> Result<()> {
        // SQLite would write and read frames of a replaced `-wal` file at the offsets its
        // index records: refuse before writing anything.
        crate::foreign::check(&self.path)?;
        let current = self.sums.page_count();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)")?;
            for (pgno, data) in pages.iter().filter(|(p, _)| *p != 1) {
                stmt.execute(rusqlite::params![pgno, data.as_ref()])?;
            }
            if let Some((_, data)) = pages.iter().find(|(p, _)| *p == 1) {
                stmt.execute(rusqlite::params![1u32, data.as_ref()])?;
            }
            if current > commit_pages {
                tx.execute(
                    "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, NULL)",
                    [commit_pages + 1],
                )?;
            }
        }
        tx.commit()?;
        if let Some((_, p1)) = pages.first().filter(|(p, _)| *p == 1) {
            let cookie = [p1[40], p1[41], p1[42], p1[43]];
            if self.schema_cookie != Some(cookie) {
                // The schema changed under this connection: start afresh so that its cached
                // schema never interferes with later page writes.
                self.schema_cookie = Some(cookie);
                self.conn = open_apply_conn(&self.path, self.opts.fsync_position)?;
            }
        }
        Ok(())
    }

    /// Applies an `EpochStart` read at `seq`: the new leader's base must be exactly this
    /// standby's position (same txid and checksum).
    pub fn apply_epoch(&mut self, seq: u64, e: &EpochStart) -> Result<Applied> {
        if e.epoch < self.pos.epoch {
            self.advance_seq(seq);
            return Ok(Applied::Skipped);
        }
        let lineage_before = self.pos.lineage;
        self.check_lineage(e.lineage, e.base_txid)?;
        if self.pending.take().is_some() {
            tracing::warn!(
                epoch = e.epoch,
                "incomplete transaction of the previous epoch dropped"
            );
        }
        let refused = if e.base_txid > self.pos.txid {
            Some(WalError::Gap {
                expected: self.pos.txid + 1,
                got: e.base_txid,
            })
        } else if e.base_txid < self.pos.txid || e.base_checksum != self.sums.total() {
            Some(WalError::ChecksumMismatch {
                txid: e.base_txid,
                what: "epoch base",
                expected: e.base_checksum,
                actual: self.sums.total(),
            })
        } else {
            None
        };
        if let Some(err) = refused {
            // A fresh standby adopts the lineage only with an EpochStart it can apply.
            self.pos.lineage = lineage_before;
            return Err(err);
        }
        self.pos.epoch = e.epoch;
        self.pos.stream_seq = seq;
        self.pos.lineage = Some(e.lineage);
        position::store(&self.path, &self.pos, self.opts.fsync_position)?;
        Ok(Applied::Epoch(e.epoch))
    }

    /// Closes the apply connection (for promotion or restore), writes the sidecar and returns
    /// the path and position.
    pub fn close(self) -> (PathBuf, Position) {
        (self.path.clone(), self.pos)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Err(e) = self.store_position(true) {
            tracing::warn!(error = %e, "could not write the position sidecar");
        }
    }
}

impl Standby {
    /// Takes a snapshot at the applied position (call between transactions).
    pub fn snapshot(&self) -> Result<crate::snapshot::Snapshot> {
        if self.pending.is_some() {
            // Pages of a buffered transaction are not in the database yet; the position is
            // still the last applied one, so the snapshot is consistent.
            tracing::debug!("snapshot taken while a transaction is buffered");
        }
        let (page_size, pages) = crate::snapshot::read_database(&self.path)?;
        crate::snapshot::Snapshot::from_pages(self.pos, page_size, &pages)
    }
}
