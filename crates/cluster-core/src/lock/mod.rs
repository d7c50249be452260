//! Distributed locks: the trait and the implementation over any [`KvBucket`].
//!
//! [`KvBucket`]: crate::kv::KvBucket

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::NodeId;
use crate::kv::Revision;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holder's node.
    pub node: NodeId,
    /// The holder's owner token (node, process instance and lock handle).
    pub owner: String,
    /// The revision at which the holder acquired the lock: its fencing token.
    pub acquired_revision: Revision,
}

/// A named distributed lock handle.
///
/// # To ensure correctness
///
/// * **Mutual exclusion:** at most one handle holds a lock at a time; acquisition is an atomic
///   create in the store.
/// * **Owner-only release:** `unlock` deletes the lock only by compare-and-delete on the
///   holder's own revision, never unconditionally; a handle that does not hold the lock gets
///   `LockNotHeld` and changes nothing.
/// * **TTL and renewal:** a held lock has a TTL in the store and is renewed automatically while
///   held. A holder that cannot renew stops reporting [`Lock::is_held`] before its TTL can run
///   out in the store (the same self-demotion rule as elections).
/// * **Fencing:** [`Lock::fencing_token`] is the revision of the acquisition; it strictly
///   increases across successive holders.
/// * `lock` waits for a release or expiry event (no busy polling) until its timeout, then
///   returns `Timeout`.
#[async_trait]
pub trait Lock: Send + Sync + 'static {
    /// Acquires the lock if free; `Ok(false)` if someone else holds it. Re-entrant calls by the
    /// holder return `Ok(true)`.
    async fn try_lock(&self) -> Result<bool>;

    /// Acquires the lock, waiting up to `timeout`.
    async fn lock(&self, timeout: Duration) -> Result<()>;

    /// Releases the lock; `LockNotHeld` if this handle does not hold it.
    async fn unlock(&self) -> Result<()>;

    /// The current holder, if any.
    async fn holder(&self) -> Result<Option<LockHolder>>;

    /// Whether this handle holds the lock (and is within its renewal deadline).
    fn is_held(&self) -> bool;

    /// The acquisition revision while held.
    fn fencing_token(&self) -> Option<Revision>;
}
