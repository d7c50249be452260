//! Snapshots: a raw page image of a database at an exact txid, with metadata (lineage, epoch,
//! txid, stream sequence, checksum, page size and count, CRC-32C); stored in an
//! [`ObjectStore`], restored by writing the file raw.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use cluster_core::stream::{ObjectStore, ReplicatedLog};
use rusqlite::Connection;
use uuid::Uuid;

use crate::crc::crc32c;
use crate::error::{Result, WalError};
use crate::pagesum::PageSums;
use crate::position::{self, Position};
use crate::sqlite::{check_integrity, shm_path, wal_path};

/// Snapshot metadata format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Object-name prefix of snapshots.
pub const SNAPSHOT_PREFIX: &str = "snap/";

/// What a snapshot contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Database history.
    pub lineage: Uuid,
    /// Epoch at the snapshot.
    pub epoch: u64,
    /// Last txid contained.
    pub txid: u64,
    /// Stream sequence of the last log entry contained (replay continues after it).
    pub stream_seq: u64,
    /// Database checksum.
    pub checksum: u64,
    /// Page size.
    pub page_size: u32,
    /// Number of pages.
    pub page_count: u32,
    /// CRC-32C of the image.
    pub crc32c: u32,
    /// When the snapshot was taken: the producer's wall clock, µs since the Unix epoch (0 when
    /// unknown). Used for age-based retention and the snapshot-age metric only.
    pub created_us: u64,
}

/// A snapshot image with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Metadata.
    pub meta: SnapshotMeta,
    /// `page_count × page_size` bytes, page 1 first.
    pub image: Bytes,
}

impl SnapshotMeta {
    /// The object name: `snap/<lineage>/<txid, 20 digits>-<epoch>.img`.
    pub fn object_name(&self) -> String {
        format!(
            "{SNAPSHOT_PREFIX}{}/{:020}-{}.img",
            self.lineage, self.txid, self.epoch
        )
    }

    /// The snapshot's short id for operators: `<first 8 hex digits of the lineage>-<txid>-<epoch>`.
    pub fn id(&self) -> String {
        let l = self.lineage.simple().to_string();
        format!("{}-{}-{}", &l[..8], self.txid, self.epoch)
    }

    /// Object metadata (all decimal except the lineage and hex checksums).
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("version".into(), SNAPSHOT_VERSION.to_string()),
            ("lineage".into(), self.lineage.to_string()),
            ("epoch".into(), self.epoch.to_string()),
            ("txid".into(), self.txid.to_string()),
            ("stream_seq".into(), self.stream_seq.to_string()),
            ("checksum".into(), format!("{:016x}", self.checksum)),
            ("page_size".into(), self.page_size.to_string()),
            ("page_count".into(), self.page_count.to_string()),
            ("crc32c".into(), format!("{:08x}", self.crc32c)),
            ("created_us".into(), self.created_us.to_string()),
        ])
    }

    /// Parses object metadata written by [`SnapshotMeta::to_metadata`].
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| m.get(k).map(String::as_str);
        if get("version")? != SNAPSHOT_VERSION.to_string() {
            return None;
        }
        Some(Self {
            lineage: get("lineage")?.parse().ok()?,
            epoch: get("epoch")?.parse().ok()?,
            txid: get("txid")?.parse().ok()?,
            stream_seq: get("stream_seq")?.parse().ok()?,
            checksum: u64::from_str_radix(get("checksum")?, 16).ok()?,
            page_size: get("page_size")?.parse().ok()?,
            page_count: get("page_count")?.parse().ok()?,
            crc32c: u32::from_str_radix(get("crc32c")?, 16).ok()?,
            created_us: get("created_us").and_then(|v| v.parse().ok()).unwrap_or(0),
        })
    }
}

impl Snapshot {
    /// Builds a snapshot from pages read at position `pos`, verifying them against
    /// `pos.checksum`.
    pub fn from_pages(pos: Position, page_size: u32, pages: &[(u32, Vec<u8>)]) -> Result<Self> {
        let lineage = pos.lineage.ok_or_else(|| {
            WalError::NotWritable("cannot snapshot a database without lineage".into())
        })?;
        let sums = PageSums::from_pages(pages.iter().map(|(p, d)| (*p, d.as_slice())));
        if sums.total() != pos.checksum {
            return Err(WalError::ChecksumMismatch {
                txid: pos.txid,
                what: "snapshot",
                expected: pos.checksum,
                actual: sums.total(),
            });
        }
        let mut image = BytesMut::with_capacity(pages.len() * page_size as usize);
        for (i, (pgno, data)) in pages.iter().enumerate() {
            if *pgno as usize != i + 1 || data.len() != page_size as usize {
                return Err(WalError::Integrity(format!(
                    "page {pgno} out of order or short"
                )));
            }
            image.extend_from_slice(data);
        }
        let image = image.freeze();
        Ok(Self {
            meta: SnapshotMeta {
                lineage,
                epoch: pos.epoch,
                txid: pos.txid,
                stream_seq: pos.stream_seq,
                checksum: pos.checksum,
                page_size,
                page_count: pages.len() as u32,
                crc32c: crc32c(&image),
                created_us: crate::sqlite::now_us(),
            },
            image,
        })
    }

    /// Verifies the image against the metadata (CRC-32C, size, rolling checksum).
    pub fn verify(&self) -> Result<()> {
        let m = &self.meta;
        if self.image.len() != m.page_count as usize * m.page_size as usize {
            return Err(WalError::Integrity(format!(
                "snapshot image is {} bytes, expected {} pages of {}",
                self.image.len(),
                m.page_count,
                m.page_size
            )));
        }
        let crc = crc32c(&self.image);
        if crc != m.crc32c {
            return Err(WalError::Integrity(format!(
                "snapshot CRC-32C {crc:08x} != {:08x}",
                m.crc32c
            )));
        }
        let sums = PageSums::from_pages(
            self.image
                .chunks(m.page_size as usize)
                .enumerate()
                .map(|(i, d)| (i as u32 + 1, d)),
        );
        if sums.total() != m.checksum {
            return Err(WalError::ChecksumMismatch {
                txid: m.txid,
                what: "snapshot",
                expected: m.checksum,
                actual: sums.total(),
            });
        }
        Ok(())
    }

    /// Restores the snapshot into `db` (which no connection may have open): verifies it,
    /// writes the image raw, removes `-wal`/`-shm`, runs `quick_check` on a fresh connection
    /// and writes the position sidecar.
    pub fn restore(&self, db: &Path, fsync_position: bool) -> Result<Position> {
        self.verify()?;
        tracing::info!(db = %db.display(), txid = self.meta.txid, seq = self.meta.stream_seq, "restoring snapshot");
        for p in [wal_path(db), shm_path(db)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(WalError::io(&p, e)),
            }
        }
        let mut f = File::create(db).map_err(|e| WalError::io(db, e))?;
        f.write_all(&self.image).map_err(|e| WalError::io(db, e))?;
        f.sync_all().map_err(|e| WalError::io(db, e))?;
        drop(f);
        let conn = Connection::open(db)?;
        check_integrity(&conn, false)?;
        drop(conn);
        let pos = Position {
            lineage: Some(self.meta.lineage),
            epoch: self.meta.epoch,
            txid: self.meta.txid,
            checksum: self.meta.checksum,
            stream_seq: self.meta.stream_seq,
            ..Position::empty()
        };
        position::store(db, &pos, fsync_position)?;
        Ok(pos)
    }
}

/// Which snapshots to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many snapshots of the lineage (at least 1).
    pub count: usize,
    /// Delete snapshots older than this (the newest is always kept).
    pub max_age: Option<std::time::Duration>,
}

impl Default for Retention {
    /// Three snapshots, no age limit.
    fn default() -> Self {
        Self {
            count: 3,
            max_age: None,
        }
    }
}

/// Stores a snapshot, keeps the newest `retain` snapshots of its lineage (deleting older
/// ones), then trims the log below the oldest retained snapshot's sequence + 1. The order
/// (put, then delete, then purge) keeps the invariant `first_seq ≤ oldest retained
/// snapshot's stream_seq + 1`.
pub async fn publish(
    store: &dyn ObjectStore,
    log: &dyn ReplicatedLog,
    snap: &Snapshot,
    retain: usize,
) -> Result<()> {
    publish_with_retention(
        store,
        log,
        snap,
        Retention {
            count: retain,
            max_age: None,
        },
    )
    .await
    .map(|_| ())
}

/// [`publish`] with retention by count and age; returns the metadata of the snapshots kept
/// (newest first).
pub async fn publish_with_retention(
    store: &dyn ObjectStore,
    log: &dyn ReplicatedLog,
    snap: &Snapshot,
    retention: Retention,
) -> Result<Vec<SnapshotMeta>> {
    store
        .put(
            &snap.meta.object_name(),
            snap.image.clone(),
            snap.meta.to_metadata(),
        )
        .await?;
    apply_retention(store, log, snap.meta.lineage, retention).await
}

/// Deletes the snapshots of `lineage` that `retention` does not keep (the newest is always
/// kept), then trims the log below the oldest kept snapshot's sequence + 1.
pub async fn apply_retention(
    store: &dyn ObjectStore,
    log: &dyn ReplicatedLog,
    lineage: Uuid,
    retention: Retention,
) -> Result<Vec<SnapshotMeta>> {
    let mut all: Vec<SnapshotMeta> = list(store)
        .await?
        .into_iter()
        .filter(|m| m.lineage == lineage)
        .collect();
    all.sort_by_key(|m| std::cmp::Reverse(m.stream_seq));
    let now = crate::sqlite::now_us();
    let too_old = |m: &SnapshotMeta| {
        retention.max_age.is_some_and(|age| {
            m.created_us > 0 && now.saturating_sub(m.created_us) > age.as_micros() as u64
        })
    };
    let (mut keep, mut drop) = (Vec::new(), Vec::new());
    for (i, m) in all.into_iter().enumerate() {
        if i == 0 || (i < retention.count.max(1) && !too_old(&m)) {
            keep.push(m);
        } else {
            drop.push(m);
        }
    }
    for old in &drop {
        store.delete(&old.object_name()).await?;
    }
    if let Some(oldest) = keep.iter().map(|m| m.stream_seq).min() {
        let purged = log.purge_below(oldest + 1).await?;
        tracing::info!(
            below = oldest + 1,
            purged,
            deleted = drop.len(),
            "log trimmed behind snapshots"
        );
    }
    Ok(keep)
}

/// Lists every snapshot's metadata.
pub async fn list(store: &dyn ObjectStore) -> Result<Vec<SnapshotMeta>> {
    Ok(store
        .list()
        .await?
        .into_iter()
        .filter(|o| o.name.starts_with(SNAPSHOT_PREFIX))
        .filter_map(|o| SnapshotMeta::from_metadata(&o.metadata))
        .collect())
}

/// Downloads the newest snapshot (highest stream sequence).
pub async fn fetch_latest(store: &dyn ObjectStore) -> Result<Option<Snapshot>> {
    let Some(meta) = list(store).await?.into_iter().max_by_key(|m| m.stream_seq) else {
        return Ok(None);
    };
    let Some((_, image)) = store.get(&meta.object_name()).await? else {
        return Ok(None);
    };
    Ok(Some(Snapshot { meta, image }))
}

/// Every page of a database: `(pgno, data)` ascending.
pub type Pages = Vec<(u32, Vec<u8>)>;

/// Reads every page of a database at one consistent read snapshot; returns the page size too.
pub fn read_database(db: &Path) -> Result<(u32, Pages)> {
    let conn = Connection::open(db)?;
    conn.execute_batch("BEGIN")?;
    let pages = crate::sqlite::read_pages(&conn)?;
    let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.execute_batch("COMMIT")?;
    Ok((page_size, pages))
}
