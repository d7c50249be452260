//! The shared state of one in-memory KV bucket: entries, revisions, TTL timers, watchers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvEntry, Result, Revision, WatchEvent, WatchOp};
use tokio::task::AbortHandle;

use crate::delivery::{Sender, Stamped};
use crate::faults::Faults;
use crate::lock::lock;

/// The precondition of a write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// Unconditional.
    Any,
    /// The key must have no live value.
    Absent,
    /// The key's live revision must be this one.
    Revision(Revision),
}

struct Entry {
    value: Bytes,
    revision: u64,
    /// The TTL timer of this revision, aborted when the key changes.
    timer: Option<AbortHandle>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

struct Watcher {
    prefix: String,
    node: String,
    tx: Sender<WatchEvent>,
}

#[derive(Default)]
struct Data {
    /// The last revision handed out; revisions start at 1 and are never reused.
    last: u64,
    entries: BTreeMap<String, Entry>,
    watchers: BTreeMap<u64, Watcher>,
    next_watcher: u64,
}

impl Data {
    fn next_revision(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    fn notify(&mut self, faults: &Faults, event: WatchEvent) {
        self.watchers.retain(|_, w| {
            if !event.key.starts_with(&w.prefix) {
                return true;
            }
            let delay = faults.delay(&w.node);
            w.tx.send(Stamped::after(delay, event.clone())).is_ok()
        });
    }

    fn conflict(&self, key: &str, expected: Option<Revision>) -> Error {
        Error::Conflict {
            key: key.to_owned(),
            expected,
            current: self.entries.get(key).map(|e| Revision(e.revision)),
        }
    }
}

/// One bucket, shared by the handles of every node.
pub(crate) struct BucketShared {
    pub(crate) config: BucketConfig,
    faults: Arc<Faults>,
    data: Mutex<Data>,
}

impl BucketShared {
    pub(crate) fn new(config: BucketConfig, faults: Arc<Faults>) -> Self {
        Self {
            config,
            faults,
            data: Mutex::new(Data::default()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<KvEntry> {
        lock(&self.data).entries.get(key).map(|e| KvEntry {
            key: key.to_owned(),
            value: e.value.clone(),
            revision: Revision(e.revision),
        })
    }

    /// Writes `value` if `expect` holds; a `ttl` arms an expiry timer (needs a tokio runtime).
    pub(crate) fn write(
        self: &Arc<Self>,
        key: &str,
        value: Bytes,
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        let mut data = lock(&self.data);
        let current = data.entries.get(key).map(|e| e.revision);
        match (expect, current) {
            (Expect::Any, _) | (Expect::Absent, None) => {}
            (Expect::Revision(r), Some(c)) if r.0 == c => {}
            (Expect::Absent, Some(_)) => return Err(data.conflict(key, None)),
            (Expect::Revision(r), _) => return Err(data.conflict(key, Some(r))),
        }
        let revision = data.next_revision();
        let timer = ttl.map(|ttl| self.arm_timer(key, revision, ttl));
        data.entries.insert(
            key.to_owned(),
            Entry {
                value: value.clone(),
                revision,
                timer,
            },
        );
        data.notify(
            &self.faults,
            WatchEvent {
                key: key.to_owned(),
                op: WatchOp::Put,
                value,
                revision: Revision(revision),
            },
        );
        Ok(Revision(revision))
    }

    fn arm_timer(self: &Arc<Self>, key: &str, revision: u64, ttl: Duration) -> AbortHandle {
        let deadline = tokio::time::Instant::now() + ttl;
        let bucket = Arc::downgrade(self);
        let key = key.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if let Some(bucket) = bucket.upgrade() {
                bucket.expire(&key, Some(revision));
            }
        })
        .abort_handle()
    }

    /// Deletes `key`, only if its live revision is `expected` when given.
    pub(crate) fn delete(&self, key: &str, expected: Option<Revision>) -> Result<()> {
        let mut data = lock(&self.data);
        let current = data.entries.get(key).map(|e| e.revision);
        match (expected, current) {
            (None, None) => return Ok(()),
            (None, Some(_)) => {}
            (Some(r), Some(c)) if r.0 == c => {}
            (Some(r), _) => return Err(data.conflict(key, Some(r))),
        }
        self.remove(&mut data, key, WatchOp::Delete);
        Ok(())
    }

    /// Expires the live `key` (only if its revision is `revision`, when given).
    pub(crate) fn expire(&self, key: &str, revision: Option<u64>) -> bool {
        let mut data = lock(&self.data);
        match data.entries.get(key) {
            Some(e) if revision.is_none_or(|r| r == e.revision) => {}
            _ => return false,
        }
        self.remove(&mut data, key, WatchOp::Expired);
        true
    }

    fn remove(&self, data: &mut Data, key: &str, op: WatchOp) {
        data.entries.remove(key);
        let revision = data.next_revision();
        data.notify(
            &self.faults,
            WatchEvent {
                key: key.to_owned(),
                op,
                value: Bytes::new(),
                revision: Revision(revision),
            },
        );
    }

    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        // BTreeMap iteration is sorted.
        lock(&self.data)
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Registers a watcher; events committed from now on are sent to `tx`.
    pub(crate) fn add_watcher(&self, id: u64, prefix: &str, node: &str, tx: Sender<WatchEvent>) {
        lock(&self.data).watchers.insert(
            id,
            Watcher {
                prefix: prefix.to_owned(),
                node: node.to_owned(),
                tx,
            },
        );
    }

    /// A fresh watcher id.
    pub(crate) fn reserve_watcher(&self) -> u64 {
        let mut data = lock(&self.data);
        data.next_watcher += 1;
        data.next_watcher
    }

    pub(crate) fn remove_watcher(&self, id: u64) {
        lock(&self.data).watchers.remove(&id);
    }

    pub(crate) fn watch_count(&self) -> usize {
        lock(&self.data).watchers.len()
    }
}
