//! The handler subscriptions of one node by full subject, so that
//! [`Events::unsubscribe`](super::Events::unsubscribe) can stop them by pattern (spec 03's
//! `Events.Unsubscribe(subject)`), whichever `Events` handle created them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::sync::locked;

/// One running handler subscription: how to stop it and how to learn that it stopped.
struct Entry {
    id: u64,
    stop: CancellationToken,
    /// Closed when the handler task has ended (its sender is dropped with the task).
    done: oneshot::Receiver<()>,
}

/// The registry: subscriptions by full subject.
#[derive(Default)]
pub(crate) struct EventRegistry {
    next: AtomicU64,
    subs: Mutex<HashMap<String, Vec<Entry>>>,
}

/// What a handler task keeps: the stop signal it obeys and the sender it drops when it ends.
pub(crate) struct Registration {
    pub(crate) id: u64,
    pub(crate) stop: CancellationToken,
    pub(crate) done: oneshot::Sender<()>,
}

impl EventRegistry {
    /// Registers a new handler subscription on `subject`.
    pub(crate) fn register(&self, subject: &str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stop = CancellationToken::new();
        let (done, done_rx) = oneshot::channel();
        locked(&self.subs)
            .entry(subject.to_string())
            .or_default()
            .push(Entry {
                id,
                stop: stop.clone(),
                done: done_rx,
            });
        Registration { id, stop, done }
    }

    /// Forgets subscription `id` on `subject` (its handle was dropped).
    pub(crate) fn forget(&self, subject: &str, id: u64) {
        let mut subs = locked(&self.subs);
        if let Some(list) = subs.get_mut(subject) {
            list.retain(|e| e.id != id);
            if list.is_empty() {
                subs.remove(subject);
            }
        }
    }

    /// Stops every handler subscription on `subject` and waits until none of their handlers
    /// runs any more; returns how many were stopped.
    pub(crate) async fn stop_all(&self, subject: &str) -> usize {
        let entries = locked(&self.subs).remove(subject).unwrap_or_default();
        let n = entries.len();
        for e in &entries {
            e.stop.cancel();
        }
        for e in entries {
            // An error only means the task is gone, which is what we wait for.
            let _ = e.done.await;
        }
        n
    }
}
