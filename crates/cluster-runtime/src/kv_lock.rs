//! [`Lock`] over a [`KvBucket`] with per-key TTL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use cluster_core::clock::Clock;
use cluster_core::error::{Error, Result};
use cluster_core::id::NodeId;
use cluster_core::kv::{KvBucket, Revision, WatchOp};
use cluster_core::lock::{Lock, LockHolder};

/// Version of the lock record format.
const LOCK_RECORD_VERSION: u32 = 1;

/// The JSON value of a lock key (see `docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LockRecord {
    v: u32,
    node: NodeId,
    owner: String,
    /// Revision of the acquisition; 0 in the acquiring write itself.
    acquired: u64,
}

/// Lock timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockOptions {
    /// Lifetime of the lock in the store after each renewal.
    pub ttl: Duration,
    /// Fraction of the TTL kept as safety margin: the holder stops reporting the lock as held
    /// `ttl·(1−margin)` after the start of its last successful renewal.
    pub safety_margin: f64,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(15),
            safety_margin: 0.1,
        }
    }
}

impl LockOptions {
    fn validate(&self) -> Result<()> {
        if self.ttl < Duration::from_secs(1)
            || !(self.safety_margin > 0.0 && self.safety_margin < 0.5)
        {
            return Err(Error::InvalidArgument(format!(
                "lock TTL {:?} must be at least 1s and safety margin {} between 0 and 0.5",
                self.ttl, self.safety_margin
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    acquired: Revision,
    current: Revision,
    deadline: Instant,
}

/// A distributed lock stored under one key of a bucket with per-key TTL.
pub struct KvLock {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: Arc<dyn KvBucket>,
    key: String,
    node: NodeId,
    owner: String,
    options: LockOptions,
    clock: Arc<dyn Clock>,
    held: Mutex<Option<Held>>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KvLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvLock")
            .field("key", &self.inner.key)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

impl KvLock {
    /// A lock handle for `key`. `owner` must be unique per handle (node, process instance and a
    /// per-handle id).
    pub fn new(
        bucket: Arc<dyn KvBucket>,
        key: impl Into<String>,
        node: NodeId,
        owner: impl Into<String>,
        options: LockOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        options.validate()?;
        let key = key.into();
        cluster_core::kv::validate_key(&key)?;
        Ok(Self {
            inner: Arc::new(Inner {
                bucket,
                key,
                node,
                owner: owner.into(),
                options,
                clock,
                held: Mutex::new(None),
                renewer: Mutex::new(None),
            }),
        })
    }
}

impl Inner {
    fn held(&self) -> Option<Held> {
        let held = *self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.filter(|h| self.clock.now() < h.deadline)
    }

    fn set_held(&self, value: Option<Held>) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = value;
    }

    fn act_window(&self) -> Duration {
        self.options.ttl.mul_f64(1.0 - self.options.safety_margin)
    }

    fn record(&self, acquired: Revision) -> Result<Bytes> {
        serde_json::to_vec(&LockRecord {
            v: LOCK_RECORD_VERSION,
            node: self.node.clone(),
            owner: self.owner.clone(),
            acquired: acquired.0,
        })
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("encode lock record: {e}")))
    }

    fn stop_renewer(&self) {
        if let Some(task) = self
            .renewer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }

    /// Renews until the lock is released, lost, or the deadline passes.
    async fn renew_loop(self: Arc<Self>) {
        let interval = self.options.ttl / 3;
        loop {
            let Some(held) = *self.held.lock().unwrap_or_else(|p| p.into_inner()) else {
                return;
            };
            let next = (self.clock.now() + interval).min(held.deadline);
            sleep_until(next).await;
            if self.clock.now() >= held.deadline {
                warn!(key = %self.key, "lock renewal deadline passed; lock lost");
                self.set_held(None);
                return;
            }
            let Ok(value) = self.record(held.acquired) else {
                return;
            };
            let started = self.clock.now();
            let write = self
                .bucket
                .update(&self.key, value, held.current, Some(self.options.ttl));
            let result = tokio::select! {
                r = write => Some(r),
                _ = sleep_until(held.deadline) => None,
            };
            match result {
                Some(Ok(rev)) => self.set_held(Some(Held {
                    current: rev,
                    deadline: started + self.act_window(),
                    ..held
                })),
                Some(Err(Error::Conflict { .. })) | None => {
                    warn!(key = %self.key, "lock lost (taken over or not renewed in time)");
                    self.set_held(None);
                    return;
                }
                Some(Err(e)) => {
                    debug!(key = %self.key, error = %e, "lock renewal failed; retrying")
                }
            }
        }
    }
}

#[async_trait]
impl Lock for KvLock {
    async fn try_lock(&self) -> Result<bool> {
        let inner = &self.inner;
        if inner.held().is_some() {
            return Ok(true);
        }
        let started = inner.clock.now();
        match inner
            .bucket
            .create(
                &inner.key,
                inner.record(Revision(0))?,
                Some(inner.options.ttl),
            )
            .await
        {
            Ok(rev) => {
                inner.set_held(Some(Held {
                    acquired: rev,
                    current: rev,
                    deadline: started + inner.act_window(),
                }));
                inner.stop_renewer();
                let task = tokio::spawn(inner.clone().renew_loop());
                *inner.renewer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
                Ok(true)
            }
            Err(Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn lock(&self, timeout: Duration) -> Result<()> {
        let deadline = self.inner.clock.now() + timeout;
        let mut watch = self.inner.bucket.watch(&self.inner.key).await?;
        loop {
            if self.try_lock().await? {
                return Ok(());
            }
            // Wait for a release or expiry; re-try at least every TTL in case an event was missed.
            let wake = (self.inner.clock.now() + self.inner.options.ttl).min(deadline);
            loop {
                tokio::select! {
                    ev = watch.next() => match ev {
                        Some(ev) if ev.key == self.inner.key && ev.op != WatchOp::Put => break,
                        Some(_) => continue,
                        None => {
                            watch = self.inner.bucket.watch(&self.inner.key).await?;
                            break;
                        }
                    },
                    _ = sleep_until(wake) => break,
                }
            }
            if self.inner.clock.now() >= deadline {
                // One last attempt at the deadline.
                if self.try_lock().await? {
                    return Ok(());
                }
                return Err(Error::Timeout(format!(
                    "lock {} not acquired within {timeout:?}",
                    self.inner.key
                )));
            }
        }
    }

    async fn unlock(&self) -> Result<()> {
        let inner = &self.inner;
        let held = *inner.held.lock().unwrap_or_else(|p| p.into_inner());
        inner.stop_renewer();
        inner.set_held(None);
        let Some(held) = held else {
            return Err(Error::LockNotHeld);
        };
        match inner.bucket.delete(&inner.key, Some(held.current)).await {
            Ok(()) => Ok(()),
            Err(Error::Conflict { .. }) => Err(Error::LockNotHeld),
            Err(e) => Err(e),
        }
    }

    async fn holder(&self) -> Result<Option<LockHolder>> {
        let Some(entry) = self.inner.bucket.get(&self.inner.key).await? else {
            return Ok(None);
        };
        let record: LockRecord = serde_json::from_slice(&entry.value)
            .map_err(|e| Error::Malformed(format!("lock record {}: {e}", self.inner.key)))?;
        if record.v != LOCK_RECORD_VERSION {
            return Err(Error::Malformed(format!(
                "lock record {} has version {} (this node understands {LOCK_RECORD_VERSION})",
                self.inner.key, record.v
            )));
        }
        let acquired_revision = match record.acquired {
            0 => entry.revision,
            r => Revision(r),
        };
        Ok(Some(LockHolder {
            node: record.node,
            owner: record.owner,
            acquired_revision,
        }))
    }

    fn is_held(&self) -> bool {
        self.inner.held().is_some()
    }

    fn fencing_token(&self) -> Option<Revision> {
        self.inner.held().map(|h| h.acquired)
    }
}

impl Drop for KvLock {
    fn drop(&mut self) {
        // The renewal task holds its own reference; stop it so an abandoned lock expires.
        self.inner.stop_renewer();
    }
}
