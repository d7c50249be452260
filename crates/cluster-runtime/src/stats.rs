//! Counters of the platform that the daemon exports as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the platform (exported as metrics by the daemon).
#[derive(Debug, Default)]
pub struct Stats {
    malformed: AtomicU64,
    panics: AtomicU64,
    dropped: AtomicU64,
}

impl Stats {
    /// Counts a rejected message; `kind` names what it was (`rpc`, `admin`, `member`, `event`,
    /// `placement`, `audit`) in the `gc_malformed_messages_total` metric.
    pub(crate) fn count_malformed(&self, kind: &'static str) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::malformed(kind);
    }

    /// Messages on platform subjects or buckets that were rejected as malformed.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// Counts a panic of user code or a runtime task (`gc_hook_panics_total{hook}`).
    pub(crate) fn count_panic(&self, hook: &str) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        crate::metrics::hook_panic(hook);
    }

    /// Panics of hooks, resources, handlers and runtime tasks, each handled as an error.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Counts a record dropped by a full bounded queue (`gc_dropped_records_total{queue}`).
    pub(crate) fn count_dropped(&self, queue: &'static str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        crate::metrics::dropped(queue);
    }

    /// Records (audit records, notifications) dropped because their bounded queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
