//! Bucket-scoped key/value storage with revisions, compare-and-set, TTL and watches.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The revision of a KV write. Revisions are bucket-wide, strictly increasing and never reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A live key's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The revision of the write that produced this value.
    pub revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchOp {
    /// The key was written.
    Put,
    /// The key was deleted or purged by a client.
    Delete,
    /// The key's TTL ran out and the store removed it.
    Expired,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The key.
    pub key: String,
    /// What happened.
    pub op: WatchOp,
    /// The new value (`Put`), empty otherwise.
    pub value: Bytes,
    /// The revision of the change.
    pub revision: Revision,
}

/// A stream of [`WatchEvent`]s. Dropping it stops the watch.
///
/// The stream ends (`None`) only when the store is closed; a transient disconnect is hidden by
/// the implementation, which resumes after the last delivered revision.
pub struct KvWatch {
    inner: BoxStream<'static, WatchEvent>,
}

impl KvWatch {
    /// Wraps an event stream; the stream must stop watching when dropped.
    pub fn new(inner: BoxStream<'static, WatchEvent>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for KvWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvWatch").finish_non_exhaustive()
    }
}

impl Stream for KvWatch {
    type Item = WatchEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// How a bucket is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// The bucket's name: `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Whether keys may carry a per-key TTL (and report `Expired` events when it runs out).
    pub per_key_ttl: bool,
    /// Number of replicas of the bucket (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
    /// Human-readable purpose of the bucket.
    pub description: String,
}

impl BucketConfig {
    /// A bucket with defaults: no per-key TTL, 1 replica, values up to 1 MiB.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            per_key_ttl: false,
            replicas: 1,
            max_value_size: 1024 * 1024,
            description: String::new(),
        }
    }

    /// Enables per-key TTLs.
    pub fn with_per_key_ttl(mut self) -> Self {
        self.per_key_ttl = true;
        self
    }

    /// Sets the description.
    pub fn described(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

/// Creates or opens buckets.
///
/// # To ensure correctness
///
/// * `bucket` is idempotent: opening an existing bucket returns a handle to the same data. A
///   bucket name outside `[A-Za-z0-9_-]+` is rejected with `InvalidArgument`.
/// * Handles returned for the same name share data and revisions.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// Creates the bucket if needed and returns a handle to it.
    async fn bucket(&self, config: BucketConfig) -> Result<Arc<dyn KvBucket>>;
}

/// One key/value bucket.
///
/// Keys are 1 to 1024 characters from `A-Z a-z 0-9 - _ / = .`, not starting or ending with `.`
/// (see [`validate_key`]).
///
/// # To ensure correctness
///
/// * **Revisions** are bucket-wide, strictly increasing and never reused, also after keys are
///   deleted or expire and after the store restarts. Every write returns its revision.
/// * **`create`** succeeds only if the key has no live value (never written, deleted or
///   expired); otherwise it returns `Error::Conflict` with `expected: None` and the current
///   revision. It must be atomic: of two concurrent `create`s exactly one succeeds.
/// * **`update`** is an atomic compare-and-set on the revision: it writes only if the key's
///   latest revision equals `expected`, otherwise returns `Error::Conflict` carrying the current
///   revision. It never overwrites a newer value.
/// * **`delete`** with `Some(expected)` is a compare-and-delete with the same rule; with `None`
///   it is unconditional. Deleting a missing key is not an error.
/// * **TTL**: with a `ttl`, `create` and `update` give the key a lifetime counted from the
///   write; when it runs out the key disappears and watchers see `WatchOp::Expired`. A write
///   without `ttl` removes any lifetime. TTLs need a bucket created with `per_key_ttl`;
///   otherwise `InvalidArgument`. Expiry is judged by the store alone, never by a client clock.
/// * **`get`** returns the latest live value; it may lag behind a write acknowledged on another
///   connection by a replication delay, so no leadership decision may rest on a `get` alone:
///   decide with `create`/`update`.
/// * **`watch(prefix)`** delivers changes to keys starting with `prefix` committed after
///   `watch` returned, in revision order, including `Expired`. While connected every change is
///   delivered; across a reconnect an implementation may skip intermediate revisions of a key
///   but always delivers its latest state. Callers that need the current state call `watch`
///   first and then `get`/`keys`, and drop events whose revision is not newer than what they
///   read.
/// * A deleted or expired key has no live value: `update` and `delete(Some(_))` on it fail with
///   `Conflict { current: None }` when the caller passes the revision of an earlier live value.
///   Callers must only pass revisions of values they read or wrote; the revision of a deletion
///   is not a valid `expected` (on NATS it would match the delete marker).
/// * Values larger than the bucket's `max_value_size` are rejected with `PayloadTooLarge`
///   before anything is written. Invalid keys are rejected with `InvalidArgument`.
/// * Errors: `Unavailable`/`Timeout` when the store cannot be reached; the write may or may not
///   have happened, so callers re-read before retrying a non-idempotent operation.
#[async_trait]
pub trait KvBucket: Send + Sync + 'static {
    /// The bucket's name.
    fn name(&self) -> &str;

    /// The latest live value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KvEntry>>;

    /// Writes `value` unconditionally (and without TTL).
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Writes `value` only if `key` has no live value.
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision>;

    /// Writes `value` only if the key's latest revision is `expected`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision>;

    /// Deletes `key`, optionally only if its latest revision is `expected`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<()>;

    /// Live keys starting with `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>>;

    /// Watches keys starting with `prefix` (empty: all keys).
    async fn watch(&self, prefix: &str) -> Result<KvWatch>;
}

/// Maximum key length.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a KV key against the rules shared by every implementation.
pub fn validate_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '=' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid key {key:?}: use 1 to {MAX_KEY_LEN} characters from A-Z a-z 0-9 - _ / = . \
             (no leading, trailing or double '.')"
        )))
    }
}

/// Checks a key prefix for `keys`/`watch` (empty allowed, trailing `.` or `/` allowed).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.trim_end_matches(['.', '/']);
    if trimmed.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "invalid key prefix {prefix:?}"
        )));
    }
    validate_key(trimmed)
}

/// Checks a bucket name.
pub fn validate_bucket_name(name: &str) -> Result<()> {
    if !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid bucket name {name:?}: use A-Z a-z 0-9 - _"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        for ok in ["a", "a/b", "users/123", "x.y", "k=v", "A-_"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "ü"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_key(&"a".repeat(1025)).is_err());
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("users/").is_ok());
        assert!(validate_prefix("lease.").is_ok());
        assert!(validate_prefix("*").is_err());
    }
}
