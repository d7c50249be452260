//! The error type of the WAL replication engine.

/// Result alias of this crate.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// What the caller should do about an error (see [`WalError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retry the same operation later (busy database, unavailable log).
    Retryable,
    /// The standby's state cannot be continued from: restore a snapshot and replay.
    Resync,
    /// Another leader took over: stop writing and become a standby.
    Fenced,
    /// A bug, misconfiguration or local I/O failure: stop and alert.
    Fatal,
}

/// Everything that can go wrong while capturing, shipping, applying or restoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An SQLite call failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A local file operation failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The log or object store failed.
    #[error("log: {0}")]
    Log(#[from] cluster_core::Error),
    /// The bundled SQLite lacks the `sqlite_dbpage` virtual table.
    #[error(
        "the linked SQLite lacks sqlite_dbpage (SQLITE_ENABLE_DBPAGE_VTAB): cluster-wal's build \
         script compiles it into the bundled SQLite; this happens only when libsqlite3-sys is not \
         `bundled` or another SQLite library is linked first"
    )]
    DbpageUnavailable,
    /// The database file is not an SQLite database (refused before SQLite opens it, so the
    /// file is left untouched and nothing is shipped).
    #[error("{path} is not an SQLite database: {reason}")]
    NotADatabase {
        /// The database file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A WAL file is not what SQLite writes (bad magic, version, page size or header checksum).
    #[error("invalid WAL file {path}: {reason}")]
    InvalidWal {
        /// The WAL file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The `-wal` file next to the database is not the one SQLite's live wal-index describes
    /// (copied from another database, or replaced): refused before anything is captured or
    /// applied (see `foreign.rs`).
    #[error(
        "{path} is not this database's WAL ({reason}): refused, nothing was captured or \
         applied; move the file away and re-sync this replica (`cluster wal resync`)"
    )]
    ForeignWal {
        /// The `-wal` file.
        path: String,
        /// What differs from the wal-index.
        reason: String,
    },
    /// The WAL no longer continues from the shipped position (a checkpoint or reset that the
    /// replicator did not run): the standby must be re-seeded from a snapshot.
    #[error("WAL continuity break: {0}")]
    ContinuityBreak(String),
    /// A record failed to decode or its CRC-32C did not match: it was not applied.
    #[error("corrupt record at stream seq {seq}: {reason}")]
    CorruptRecord {
        /// Stream sequence of the record (0 when unknown).
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record's checksum chain does not match the local database: nothing was applied.
    #[error(
        "checksum mismatch at txid {txid} ({what}): expected {expected:016x}, local {actual:016x}; \
         the standby diverged or the record is wrong, nothing was applied"
    )]
    ChecksumMismatch {
        /// The transaction.
        txid: u64,
        /// Which checksum (`pre` or `post`, or `snapshot`).
        what: &'static str,
        /// The value carried by the record or snapshot.
        expected: u64,
        /// The value computed locally.
        actual: u64,
    },
    /// A record skips transactions (its txid is not the next one).
    #[error("gap in the log: expected txid {expected}, got {got}")]
    Gap {
        /// The txid the standby needs next.
        expected: u64,
        /// The txid received.
        got: u64,
    },
    /// A record or snapshot belongs to another lineage (database history).
    #[error("lineage mismatch: local {local}, remote {remote}")]
    LineageMismatch {
        /// Local lineage.
        local: uuid::Uuid,
        /// Lineage of the record or snapshot.
        remote: uuid::Uuid,
    },
    /// The standby needs entries that were trimmed from the log and no snapshot covers them.
    #[error("standby is behind the log's first sequence {first_seq} and {reason}")]
    BehindTrim {
        /// The log's first retained sequence.
        first_seq: u64,
        /// Why no snapshot could be used.
        reason: String,
    },
    /// This leader was fenced: the log accepted another writer's append.
    #[error("fenced: the log moved on (expected last seq {expected}, current {current})")]
    Fenced {
        /// The last sequence this leader expected.
        expected: u64,
        /// The log's last sequence.
        current: u64,
    },
    /// Writes are refused (not the leader, lease lapsed, fenced or shut down).
    #[error("writes refused: {0}")]
    NotWritable(String),
    /// This node is a standby: writes go to the leader (the message says how).
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// A query of the app's sqlx pool ([`crate::pool::WalPool`]) failed.
    #[error("sql: {0}")]
    Sqlx(sqlx::Error),
    /// `PRAGMA quick_check` / `integrity_check` did not return `ok`.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The replication thread or task is gone.
    #[error("replication stopped: {0}")]
    Stopped(String),
}

impl WalError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// What to do about the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ErrorKind::Retryable
            }
            WalError::Log(e) if e.is_transient() => ErrorKind::Retryable,
            WalError::Log(cluster_core::Error::Conflict { .. }) | WalError::Fenced { .. } => {
                ErrorKind::Fenced
            }
            WalError::NotWritable(_) | WalError::NotLeader(_) => ErrorKind::Fenced,
            WalError::Sqlx(e) if crate::pool::is_retryable(e) => ErrorKind::Retryable,
            WalError::ContinuityBreak(_)
            | WalError::CorruptRecord { .. }
            | WalError::ChecksumMismatch { .. }
            | WalError::Gap { .. }
            | WalError::LineageMismatch { .. }
            | WalError::BehindTrim { .. } => ErrorKind::Resync,
            _ => ErrorKind::Fatal,
        }
    }
}
