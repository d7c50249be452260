//! Time.
//!
//! All timing decisions (lease deadlines, renewals, cooldowns, hook timeouts) use the local
//! monotonic clock through [`Clock`]. Wall-clock time is only ever displayed, never compared
//! across machines.

use std::fmt::Debug;
use std::time::SystemTime;

use tokio::time::Instant;

/// A source of time.
///
/// # To ensure correctness
///
/// * [`Clock::now`] must be monotonic: it never goes backwards, including across wall-clock
///   adjustments.
/// * [`Clock::now`] must advance with `tokio::time` (so that `tokio::time::sleep_until` of an
///   instant derived from it wakes at that instant). This is what lets unit tests run the whole
///   runtime under tokio's paused time.
/// * [`Clock::wall`] is for display and audit records only.
///
/// Executable form: `cluster_testkit::conformance::clock`.
pub trait Clock: Send + Sync + Debug {
    /// The current monotonic instant.
    fn now(&self) -> Instant;
    /// The current wall-clock time (display only).
    fn wall(&self) -> SystemTime;
}

/// The production clock: `tokio::time::Instant` and `SystemTime::now()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}
