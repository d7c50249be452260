//! This node's leadership deadline, for resources that enforce it outside the daemon.
//!
//! A leader stops acting at its local deadline (`start of the last successful renewal +
//! T·(1−ε)`, see [`ElectionTiming`](crate::election::ElectionTiming)) unless it renews before.
//! The daemon itself enforces that deadline only while it runs: a hung, `SIGSTOP`ped or
//! deadlocked daemon keeps its backend and its VIP while the lease expires in the store and a
//! standby takes over. A resource that can hand the deadline to something outside the daemon
//! (a guard process that stops a backend or removes an address when the deadline passes
//! without a renewal) follows a [`DeadlineWatch`]: the runtime passes one to every resource of
//! a Singleton app through [`ActiveResource::follow_deadline`](crate::resource::ActiveResource::follow_deadline)
//! when the app's instance starts (and when a resource is added to a running instance).
//!
//! The deadline is a local monotonic [`Instant`]; a guard must be given the *remaining* time
//! ([`DeadlineWatch::remaining`], computed just before it is written), never a wall-clock time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::election::ElectionState;
use crate::epoch::Epoch;

/// Reports a guard that fired: `(category, epoch, fields)` (see
/// [`DeadlineWatch::report_guard_fired`]).
pub type GuardReporter = Arc<dyn Fn(&str, Epoch, &[(&str, &str)]) + Send + Sync>;

/// A watch of this node's leadership deadline for one Singleton app (see the module docs).
#[derive(Clone)]
pub struct DeadlineWatch {
    status: watch::Receiver<ElectionState>,
    margin: Duration,
    /// Audits a guard that fired (`None` outside a platform).
    reporter: Option<GuardReporter>,
}

impl fmt::Debug for DeadlineWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineWatch")
            .field("status", &self.status)
            .field("margin", &self.margin)
            .field("reports", &self.reporter.is_some())
            .finish()
    }
}

impl DeadlineWatch {
    /// Follows the election whose state `status` publishes. `margin` is the time between this
    /// node's deadline and the earliest moment the lease can expire elsewhere (`ε·T`): what a
    /// guard has to stop everything after the deadline.
    pub fn new(status: watch::Receiver<ElectionState>, margin: Duration) -> Self {
        Self {
            status,
            margin,
            reporter: None,
        }
    }

    /// The same watch, reporting fired guards through `reporter` (the runtime audits them as
    /// records of the app).
    pub fn with_reporter(mut self, reporter: GuardReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Reports that a guard acted because the deadline of term `epoch` passed without a
    /// renewal (called once the daemon runs again): the audit record `{category}.guard.fired`
    /// of the app with `epoch` and the string `fields`, when the watch comes from a platform.
    pub fn report_guard_fired(&self, category: &str, epoch: Epoch, fields: &[(&str, &str)]) {
        if let Some(report) = &self.reporter {
            report(category, epoch, fields);
        }
    }

    /// The safety margin `ε·T` after the deadline (see [`DeadlineWatch::new`]).
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// The deadline of term `epoch` while this node leads it (`None` otherwise).
    pub fn deadline(&self, epoch: Epoch) -> Option<Instant> {
        self.status
            .borrow()
            .leading
            .filter(|l| l.epoch == epoch)
            .map(|l| l.deadline)
    }

    /// The time left until the deadline of term `epoch`, on the local monotonic clock, now
    /// (zero once it passed; `None` when this node does not lead `epoch`).
    pub fn remaining(&self, epoch: Epoch) -> Option<Duration> {
        self.deadline(epoch)
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Waits until the election state changes (every renewal moves the deadline). Returns
    /// `false` when the election is gone (the instance stopped).
    pub async fn changed(&mut self) -> bool {
        self.status.changed().await.is_ok()
    }
}
