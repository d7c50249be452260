//! A `-wal` file that is not the database's own: copied from another database (other salts and
//! checksums, or another page size) or replaced under a live connection. SQLite does not tie a
//! WAL file to its database; it keeps reading frames at the offsets its wal-index (`-shm`)
//! records, so such a file would be captured as the leader's transactions or mixed into a
//! standby's pages. The live wal-index tells: its salts, page size and the checksum of its last
//! committed frame must match the file (`wal::index`). Checked by the standby before every
//! apply and by capture on every read (the salts); a mismatch is refused with
//! [`WalError::ForeignWal`] naming the file: nothing is captured, shipped or applied.
//!
//! Only a *live* index (a connection of this process holds the database open) is authoritative:
//! a stale `-shm` left after a crash may predate the WAL on disk, so opening a database does not
//! use this check. A foreign WAL present before a standby opens its database is caught by the
//! checksum against its position (recovery: the snapshot restore replaces it), and before a
//! promotion by the checksum check before the `EpochStart` (the promotion fails and blocks).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Result, WalError};
use crate::sqlite::{shm_path, wal_path};
use crate::wal::{
    FRAME_HEADER_LEN, IndexHeader, WAL_HEADER_LEN, WalHeader, read_header, read_index,
};

/// Fails with [`WalError::ForeignWal`] when the `-wal` file of `db` is not the one its live
/// wal-index describes (call while a connection of this process holds `db` open).
pub(crate) fn check(db: &Path) -> Result<()> {
    let wal = wal_path(db);
    let Some(header) = read_header(&wal).map_err(|e| WalError::io(&wal, e))? else {
        return Ok(());
    };
    let shm = shm_path(db);
    let Some(Some(index)) = read_index(&shm).map_err(|e| WalError::io(&shm, e))? else {
        return Ok(());
    };
    if index.mx_frame == 0 {
        // Nothing committed in the indexed generation: SQLite reads no frame of the file.
        return Ok(());
    }
    if index.salts != (header.salt1, header.salt2) {
        return Err(salts_differ(&wal, &header, &index));
    }
    if index.page_size != header.page_size {
        return Err(foreign(
            &wal,
            format!(
                "page size {} in its header, {} in the database's wal-index",
                header.page_size, index.page_size
            ),
        ));
    }
    let offset = WAL_HEADER_LEN as u64
        + u64::from(index.mx_frame - 1) * (FRAME_HEADER_LEN as u64 + u64::from(header.page_size));
    let mut frame = [0u8; FRAME_HEADER_LEN];
    let f = File::open(&wal).map_err(|e| WalError::io(&wal, e))?;
    if f.read_exact_at(&mut frame, offset).is_err() {
        return Err(foreign(
            &wal,
            format!(
                "the database's wal-index has {} committed frames, the file fewer",
                index.mx_frame
            ),
        ));
    }
    let be = |i: usize| u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    if (be(8), be(12)) != index.salts || (be(16), be(20)) != index.frame_checksum {
        return Err(foreign(
            &wal,
            format!(
                "its frame {} is not the committed frame the database's wal-index records \
                 (checksum {:08x}/{:08x}, expected {:08x}/{:08x})",
                index.mx_frame,
                be(16),
                be(20),
                index.frame_checksum.0,
                index.frame_checksum.1
            ),
        ));
    }
    Ok(())
}

/// The error for a WAL file whose header salts (and page size) differ from the live index's.
pub(crate) fn salts_differ(wal: &Path, header: &WalHeader, index: &IndexHeader) -> WalError {
    let mut reason = format!(
        "salts {:08x}/{:08x} in its header, {:08x}/{:08x} with {} committed frames in the \
         database's wal-index",
        header.salt1, header.salt2, index.salts.0, index.salts.1, index.mx_frame
    );
    if header.page_size != index.page_size {
        reason.push_str(&format!(
            "; page size {} in its header, {} in the wal-index",
            header.page_size, index.page_size
        ));
    }
    foreign(wal, reason)
}

fn foreign(wal: &Path, reason: String) -> WalError {
    tracing::error!(wal = %wal.display(), %reason, "foreign WAL file refused");
    WalError::ForeignWal {
        path: wal.display().to_string(),
        reason,
    }
}
