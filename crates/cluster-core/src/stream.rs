//! An append-only replicated log with compare-and-append fencing, and an object store.
//!
//! Both are shaped after JetStream (a stream with `Nats-Msg-Id` deduplication and
//! `Nats-Expected-Last-Sequence`, and the JetStream object store), so a NATS binding is a thin
//! adapter. The SQLite WAL replication (`cluster-wal`) is written only against these traits.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use crate::error::Result;
use crate::transport::Headers;

/// Header carrying the message id used for deduplication (the JetStream name).
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// One entry of a [`ReplicatedLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The entry's sequence number: 1 for the first entry ever appended, +1 per entry.
    pub seq: u64,
    /// The headers given to `append` (including [`MSG_ID_HEADER`] when set).
    pub headers: Headers,
    /// The payload given to `append`.
    pub payload: Bytes,
}

/// What `append` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// The sequence of the stored entry (of the original entry for a duplicate).
    pub seq: u64,
    /// True when the message id was already stored within the dedup window: nothing was appended.
    pub duplicate: bool,
}

/// First and last sequence of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogState {
    /// Sequence of the oldest retained entry; `last_seq + 1` when the log holds no entry.
    pub first_seq: u64,
    /// Sequence of the newest entry ever appended; 0 when nothing was ever appended.
    pub last_seq: u64,
}

/// An ordered stream of [`LogEntry`]s from [`ReplicatedLog::read_from`]. Dropping it stops it.
///
/// The stream yields `Err` for a failure it cannot hide (the caller re-opens from the last
/// sequence it processed) and ends (`None`) only when the log is closed.
pub struct LogStream {
    inner: BoxStream<'static, Result<LogEntry>>,
}

impl LogStream {
    /// Wraps an entry stream; the stream must stop reading when dropped.
    pub fn new(inner: BoxStream<'static, Result<LogEntry>>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStream").finish_non_exhaustive()
    }
}

impl Stream for LogStream {
    type Item = Result<LogEntry>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// An append-only, replicated, totally ordered log (one JetStream stream).
///
/// # To ensure correctness
///
/// * **Order and numbering.** Entries get consecutive sequences starting at 1, in the order
///   `append` calls take effect; a sequence is never reused, also after `purge_below` and restarts.
/// * **Compare-and-append.** With `expected_last_seq = Some(s)`, the append takes effect only if
///   the log's `last_seq` equals `s` at that moment (atomically); otherwise nothing is stored and
///   the call returns `Error::Conflict` with `expected: Some(Revision(s))` and `current:
///   Some(Revision(last_seq))`. This is the fencing point of every single-writer protocol built on
///   the log: of two writers presenting the same expected sequence, at most one succeeds.
/// * **Deduplication.** When the headers carry [`MSG_ID_HEADER`] and an entry with the same id
///   was stored within the implementation's dedup window, nothing is appended and the ack carries
///   the original sequence with `duplicate = true`. The dedup check happens before the
///   expected-sequence check, so a retry after a lost ack is acknowledged, not rejected.
/// * **Acknowledgement.** `append` returns only after the entry is stored as durably as the
///   implementation promises; an `Ok` is never lost by a later failure of the same log instance.
/// * **Reading.** `read_from(s)` yields, in sequence order and without duplicates, every retained
///   entry with `seq >= s`, then follows new appends live. Entries below `first_seq` are skipped
///   silently: a reader detects a trimmed range by comparing the first sequence it receives
///   with the one it asked for.
/// * **Trimming.** `purge_below(s)` removes every entry with `seq < s` (never an entry `>= s`)
///   and returns how many were removed; `first_seq` becomes at least `s`.
/// * **Errors.** `Unavailable`/`Timeout` are transient (retry with the same expected sequence and
///   message id); `PayloadTooLarge` is returned before anything is stored.
#[async_trait]
pub trait ReplicatedLog: Send + Sync + 'static {
    /// Appends one entry, optionally conditional on the current last sequence.
    async fn append(
        &self,
        headers: Headers,
        payload: Bytes,
        expected_last_seq: Option<u64>,
    ) -> Result<AppendAck>;

    /// Streams entries from `seq` on (inclusive), then follows new appends.
    async fn read_from(&self, seq: u64) -> Result<LogStream>;

    /// Fetches one entry by sequence (`None` when purged or never written).
    async fn get(&self, seq: u64) -> Result<Option<LogEntry>>;

    /// First and last sequence.
    async fn state(&self) -> Result<LogState>;

    /// The sequence of the newest entry (0 for a log that never had one).
    async fn last_sequence(&self) -> Result<u64> {
        Ok(self.state().await?.last_seq)
    }

    /// Removes every entry with a sequence below `seq`; returns how many were removed.
    async fn purge_below(&self, seq: u64) -> Result<u64>;

    /// Largest payload accepted by `append`, in bytes.
    fn max_payload(&self) -> usize;
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Free-form metadata given to `put`.
    pub metadata: BTreeMap<String, String>,
}

/// A store of named blobs (the JetStream object store).
///
/// # To ensure correctness
///
/// * `put` replaces the object atomically: a concurrent or later `get` sees either the complete
///   previous object or the complete new one, never a mix; it returns only after the object is
///   stored.
/// * `get` returns the exact bytes and metadata of the last completed `put`, or `None` if the
///   object does not exist (never written or deleted).
/// * `list` returns every existing object's info (order unspecified). It may be O(objects): keep
///   an index elsewhere for hot paths.
/// * `delete` of a missing object is not an error.
/// * Names are non-empty and may contain `/`; implementations reject other invalid names with
///   `InvalidArgument`.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores (or replaces) an object.
    async fn put(
        &self,
        name: &str,
        data: Bytes,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectInfo>;

    /// Reads an object.
    async fn get(&self, name: &str) -> Result<Option<(ObjectInfo, Bytes)>>;

    /// Lists all objects.
    async fn list(&self) -> Result<Vec<ObjectInfo>>;

    /// Deletes an object.
    async fn delete(&self, name: &str) -> Result<()>;
}
