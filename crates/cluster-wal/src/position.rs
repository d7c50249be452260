//! The replication position and its durable sidecar file (`<db>-replpos`, JSON, version 1).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, WalError};

/// Sidecar format version.
pub const POSITION_VERSION: u32 = 1;

/// Where a database stands in its replicated history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    /// Sidecar format version.
    pub version: u32,
    /// Database history; `None` for a database that never applied anything.
    pub lineage: Option<Uuid>,
    /// Newest epoch seen.
    pub epoch: u64,
    /// Last applied txid.
    pub txid: u64,
    /// Database checksum at `txid`.
    pub checksum: u64,
    /// Stream sequence of the last log entry fully processed.
    pub stream_seq: u64,
}

impl Position {
    /// The position of an empty database that never applied anything.
    pub fn empty() -> Self {
        Self {
            version: POSITION_VERSION,
            ..Self::default()
        }
    }
}

/// The sidecar file path of a database.
pub fn position_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-replpos");
    PathBuf::from(s)
}

/// Reads the sidecar; `None` when missing or unreadable (the caller then resyncs).
pub fn load(db: &Path) -> Option<Position> {
    let data = fs::read(position_path(db)).ok()?;
    let pos: Position = serde_json::from_slice(&data).ok()?;
    (pos.version == POSITION_VERSION).then_some(pos)
}

/// Writes the sidecar atomically (temp file, rename); with `fsync`, also syncs the file and
/// its directory so the position survives a power loss.
pub fn store(db: &Path, pos: &Position, fsync: bool) -> Result<()> {
    let path = position_path(db);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let data = serde_json::to_vec(pos).map_err(|e| WalError::io(&tmp, e.into()))?;
    let mut f = File::create(&tmp).map_err(|e| WalError::io(&tmp, e))?;
    f.write_all(&data).map_err(|e| WalError::io(&tmp, e))?;
    if fsync {
        f.sync_all().map_err(|e| WalError::io(&tmp, e))?;
    }
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| WalError::io(&path, e))?;
    if fsync && let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| WalError::io(dir, e))?;
    }
    Ok(())
}
