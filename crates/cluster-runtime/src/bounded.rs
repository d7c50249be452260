//! Bounded queues: capacities, and counting what a full queue drops (with a rate-limited
//! warning, so a flood cannot flood the log too).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::stats::Stats;
use crate::sync::locked;

/// Capacity of the platform's audit queue (records waiting for the sink).
pub(crate) const AUDIT_CAPACITY: usize = 4096;
/// Capacity of each app's notification queue (waiting for its hooks).
pub(crate) const NOTIFY_CAPACITY: usize = 1024;
/// At most one warning per queue in this interval; it says how many were dropped since.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts the records a full queue drops and warns at most once per [`WARN_EVERY`].
#[derive(Debug)]
pub(crate) struct Drops {
    queue: &'static str,
    since_warn: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
}

impl Drops {
    /// A counter for `queue` (`audit`, `notify`): its label in `gc_dropped_records_total`.
    pub(crate) fn new(queue: &'static str) -> Self {
        Self {
            queue,
            since_warn: AtomicU64::new(0),
            last_warn: Mutex::new(None),
        }
    }

    /// Counts one dropped record (in `stats` when known, always in the metric).
    pub(crate) fn dropped(&self, stats: Option<&Stats>, what: &str) {
        match stats {
            Some(stats) => stats.count_dropped(self.queue),
            None => crate::metrics::dropped(self.queue),
        }
        let pending = self.since_warn.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = locked(&self.last_warn);
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.since_warn.store(0, Ordering::Relaxed);
        warn!(
            queue = self.queue,
            dropped = pending,
            what,
            "queue full; dropping records (warned at most every 10 s)"
        );
    }
}
