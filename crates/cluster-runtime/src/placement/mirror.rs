//! A watch-fed local copy of the placement bucket, so the placement loops (agent, controller,
//! auto-rebalance, ring) read it without a store request per round: an idle platform asks
//! the store nothing, least of all for keys that do not exist.
//!
//! [`MirroredBucket`] is a [`KvBucket`]: reads (`get`, `keys`) answer from the copy, writes go
//! to the store and are applied to the copy on success (a node reads its own writes). The copy
//! follows one watch of the whole bucket; it is loaded when the watch opens and reloaded every
//! [`RESYNC`] as a safety net. Watches of the mirror are fed from that one watch, each event
//! after the copy applied it (so a watcher that reads on an event reads at least that state);
//! a reload announces what it found changed. While no watch is open (the store is
//! unreachable) reads go to the store, as without the mirror.
//!
//! Staleness is the one the `KvBucket` contract already allows for `get` (a replication
//! delay): every decision is still taken by compare-and-set on the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::AbortHandle;
use tracing::debug;

use tokio::sync::broadcast;

use crate::sync::locked;
use cluster_core::error::Result;
use cluster_core::kv::{KvBucket, KvEntry, KvWatch, Revision, WatchEvent, WatchOp};

/// Full reload of the copy (a safety net; the watch keeps it current).
const RESYNC: Duration = Duration::from_secs(30);
/// First retry delay after the watch could not be opened or loaded; doubled up to
/// [`MAX_BACKOFF`], with jitter.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Changes buffered per watcher of the mirror; a watcher further behind skips changes (it
/// reads the copy on the next one).
const WATCH_BUFFER: usize = 1024;

#[derive(Default)]
struct Copy {
    /// Whether a watch is open and the copy was loaded since (else reads go to the store).
    live: bool,
    entries: BTreeMap<String, KvEntry>,
}

impl Copy {
    /// Applies a change unless the copy already holds a newer revision of the key.
    fn apply(&mut self, key: &str, op: WatchOp, value: Bytes, revision: Revision) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.revision >= revision)
        {
            return;
        }
        match op {
            WatchOp::Put => {
                self.entries.insert(
                    key.to_owned(),
                    KvEntry {
                        key: key.to_owned(),
                        value,
                        revision,
                    },
                );
            }
            WatchOp::Delete | WatchOp::Expired => {
                self.entries.remove(key);
            }
        }
    }
}

/// The placement bucket read through a watch-fed copy (see the module docs).
pub(crate) struct MirroredBucket {
    inner: Arc<dyn KvBucket>,
    copy: Arc<Mutex<Copy>>,
    changes: broadcast::Sender<WatchEvent>,
}

impl MirroredBucket {
    /// Wraps `inner` and starts the task keeping the copy; abort the handle to stop it.
    pub(crate) fn start(inner: Arc<dyn KvBucket>) -> (Arc<dyn KvBucket>, AbortHandle) {
        let copy = Arc::new(Mutex::new(Copy::default()));
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        let task = tokio::spawn(maintain(
            inner.clone(),
            Arc::downgrade(&copy),
            changes.clone(),
        ));
        let bucket: Arc<dyn KvBucket> = Arc::new(Self {
            inner,
            copy,
            changes,
        });
        (bucket, task.abort_handle())
    }

    /// The copy's answer, or `None` when it is not live.
    fn local<T>(&self, read: impl FnOnce(&Copy) -> T) -> Option<T> {
        let copy = locked(&self.copy);
        copy.live.then(|| read(&copy))
    }

    fn written(&self, key: &str, value: Bytes, revision: Revision) {
        locked(&self.copy).apply(key, WatchOp::Put, value, revision);
    }
}

#[async_trait]
impl KvBucket for MirroredBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        cluster_core::kv::validate_key(key)?;
        match self.local(|c| c.entries.get(key).cloned()) {
            Some(entry) => Ok(entry),
            None => self.inner.get(key).await,
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        let revision = self.inner.put(key, value.clone()).await?;
        self.written(key, value, revision);
        Ok(revision)
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision> {
        let revision = self.inner.create(key, value.clone(), ttl).await?;
        self.written(key, value, revision);
        Ok(revision)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        let revision = self.inner.update(key, value.clone(), expected, ttl).await?;
        self.written(key, value, revision);
        Ok(revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<()> {
        self.inner.delete(key, expected).await?;
        locked(&self.copy).entries.remove(key);
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        cluster_core::kv::validate_prefix(prefix)?;
        let local = self.local(|c| {
            c.entries
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        });
        match local {
            Some(keys) => Ok(keys),
            None => self.inner.keys(prefix).await,
        }
    }

    async fn watch(&self, prefix: &str) -> Result<KvWatch> {
        cluster_core::kv::validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        let rx = self.changes.subscribe();
        let stream = futures::stream::unfold(rx, move |mut rx| {
            let prefix = prefix.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(ev) if ev.key.starts_with(&prefix) => return Some((ev, rx)),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(KvWatch::new(Box::pin(stream)))
    }
}

/// Keeps the copy: open a watch, load, apply changes, reload every [`RESYNC`]; on failure
/// mark it not live and retry with backoff and jitter.
async fn maintain(
    inner: Arc<dyn KvBucket>,
    copy: Weak<Mutex<Copy>>,
    changes: broadcast::Sender<WatchEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let failed = match inner.watch("").await {
            Ok(watch) => follow(&*inner, &copy, &changes, watch, &mut backoff).await,
            Err(e) => Some(e),
        };
        let Some(copy) = copy.upgrade() else { return };
        locked(&copy).live = false;
        drop(copy);
        if let Some(e) = failed {
            debug!(bucket = inner.name(), error = %e, "placement mirror interrupted; retrying");
        }
        tokio::time::sleep(jittered(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Loads the copy and applies the watch's changes until it ends or a load fails.
async fn follow(
    inner: &dyn KvBucket,
    copy: &Weak<Mutex<Copy>>,
    changes: &broadcast::Sender<WatchEvent>,
    mut watch: KvWatch,
    backoff: &mut Duration,
) -> Option<cluster_core::error::Error> {
    loop {
        let loaded = match load(inner).await {
            Ok(entries) => entries,
            Err(e) => return Some(e),
        };
        let found = {
            let copy = copy.upgrade()?;
            let mut copy = locked(&copy);
            let found = differences(&copy.entries, &loaded);
            copy.entries = loaded;
            copy.live = true;
            found
        };
        for ev in found {
            let _ = changes.send(ev);
        }
        *backoff = MIN_BACKOFF;
        let resync = tokio::time::sleep(jittered(RESYNC));
        tokio::pin!(resync);
        loop {
            tokio::select! {
                ev = watch.next() => {
                    let ev = ev?;
                    let copy = copy.upgrade()?;
                    locked(&copy).apply(&ev.key, ev.op, ev.value.clone(), ev.revision);
                    // Every change of the store is announced, also the node's own writes the
                    // copy already holds.
                    let _ = changes.send(ev);
                }
                _ = &mut resync => break,
            }
        }
    }
}

/// The changes from `old` to `new`, as watch events (a vanished key is a `Delete` at its
/// last known revision).
fn differences(
    old: &BTreeMap<String, KvEntry>,
    new: &BTreeMap<String, KvEntry>,
) -> Vec<WatchEvent> {
    let written = new
        .values()
        .filter(|e| old.get(&e.key).is_none_or(|o| o.revision != e.revision))
        .map(|e| WatchEvent {
            key: e.key.clone(),
            op: WatchOp::Put,
            value: e.value.clone(),
            revision: e.revision,
        });
    let removed = old
        .values()
        .filter(|o| !new.contains_key(&o.key))
        .map(|o| WatchEvent {
            key: o.key.clone(),
            op: WatchOp::Delete,
            value: Bytes::new(),
            revision: o.revision,
        });
    let mut events: Vec<WatchEvent> = written.chain(removed).collect();
    events.sort_by_key(|e| e.revision);
    events
}

/// Every live entry of the bucket.
async fn load(inner: &dyn KvBucket) -> Result<BTreeMap<String, KvEntry>> {
    let mut entries = BTreeMap::new();
    for key in inner.keys("").await? {
        if let Some(entry) = inner.get(&key).await? {
            entries.insert(key, entry);
        }
    }
    Ok(entries)
}

/// `base` plus up to 25 % random jitter.
fn jittered(base: Duration) -> Duration {
    base + base.mul_f64(crate::jitter::fraction() / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &mut Copy, key: &str, rev: u64) {
        c.apply(
            key,
            WatchOp::Put,
            Bytes::from(rev.to_string()),
            Revision(rev),
        );
    }

    #[test]
    fn changes_apply_in_revision_order_only() {
        let mut c = Copy::default();
        put(&mut c, "a", 5);
        put(&mut c, "a", 3);
        assert_eq!(
            c.entries["a"].revision,
            Revision(5),
            "an older write is ignored"
        );
        c.apply("a", WatchOp::Delete, Bytes::new(), Revision(4));
        assert!(c.entries.contains_key("a"), "an older delete is ignored");
        c.apply("a", WatchOp::Expired, Bytes::new(), Revision(6));
        assert!(!c.entries.contains_key("a"));
        put(&mut c, "a", 7);
        assert_eq!(c.entries["a"].value, "7");
    }
}
