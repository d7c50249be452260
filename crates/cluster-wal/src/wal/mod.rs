//! Parsing of SQLite's `-wal` file: header, frames, cumulative checksums and the grouping of
//! frames into committed transactions, bounded by the wal-index's committed end (`index`).
//! No SQLite library calls.
//!
//! Format reference: <https://sqlite.org/fileformat2.html#walformat>.

mod checksum;
mod frame;
mod header;
pub mod index;
mod reader;

pub use checksum::wal_checksum;
pub use frame::{FRAME_HEADER_LEN, FrameHeader};
pub use header::{WAL_HEADER_LEN, WAL_MAGIC_BE, WAL_MAGIC_LE, WalHeader, read_header};
pub use index::{IndexBound, IndexHeader, index_bound, read_index};
pub use reader::{WalCursor, WalTxn, read_committed, read_committed_upto};
