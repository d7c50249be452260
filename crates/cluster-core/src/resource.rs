//! Resources a leader holds while it acts (a promoted database, a VIP, a backend service):
//! the [`ActiveResource`] trait and the [`RetryPolicy`] of its activation.
//!
//! The runtime (`cluster-runtime`) activates a Singleton app's resources in registration order
//! when the node becomes leader, each with the term's fencing token, and deactivates them in
//! reverse order when the term ends; Spread apps activate them at start and deactivate them at
//! stop. An activation that still fails after [`RetryPolicy::attempts`] makes the node step down.

use std::time::Duration;

use async_trait::async_trait;

use crate::deadline::DeadlineWatch;
use crate::epoch::Epoch;
use crate::error::Result;

/// Something held only while this instance is active.
///
/// # To ensure correctness
///
/// * `activate(epoch)` must be idempotent and must check `epoch` where its effect is applied
///   (e.g. reject a claim with an older epoch than one already seen); it returns only once the
///   resource is usable.
/// * `deactivate` must be idempotent, must succeed when the resource is already inactive, and
///   must leave nothing behind (processes, addresses, containers) when it returns `Ok`.
/// * While active for term `E`, `activate` with an older epoch is refused (preferably with
///   [`Error::Fenced`](crate::Error::Fenced)) or ignored: the effect stays held for `E`, and
///   nothing (a monitor, a guard) switches to the older term. After `deactivate`, `activate`
///   of a newer epoch makes the resource active again.
/// * Neither may block indefinitely: the runtime bounds them with timeouts.
/// * A resource that keeps something outside the daemon releases it through its own guard
///   once the deadline given by `follow_deadline` passes without a renewal.
///
/// Executable form: `cluster_testkit::conformance::resource`.
#[async_trait]
pub trait ActiveResource: Send + Sync + 'static {
    /// A short name for logs, metrics and audit (`vip`, `backend`, `wal`).
    fn name(&self) -> &str;

    /// Makes the resource active for the term `epoch`.
    async fn activate(&self, epoch: Epoch) -> Result<()>;

    /// Releases the resource.
    async fn deactivate(&self) -> Result<()>;

    /// Whether this node, while standby, could take over without a long catch-up (e.g. its
    /// database replica is close to the log tail). A Singleton migration hands leadership only
    /// to a standby whose resources are all ready; the move waits (within its timeout)
    /// otherwise. Called often (every membership refresh): must be cheap and never block.
    /// Default: ready.
    fn standby_ready(&self) -> bool {
        true
    }

    /// Receives this node's leadership deadline for the app (Singleton apps only): called
    /// when the app's instance starts campaigning, and when the resource is added to an
    /// instance that already runs; a later call replaces the earlier watch. A resource that
    /// keeps something outside the daemon (a backend process, an address) hands the deadline
    /// of the term it was activated for to a guard that releases it should the deadline pass
    /// without a renewal (the daemon hung or stopped), see [`DeadlineWatch`]. Must not block.
    /// Default: ignored.
    fn follow_deadline(&self, deadline: DeadlineWatch) {
        let _ = deadline;
    }

    /// `Some(reason)` while this node must not stand for the app's leadership: its last
    /// activation failed for a reason that would repeat (e.g. a database replica that does not
    /// match its log) and the cause has not changed since. The runtime withdraws the node's
    /// candidacy while any resource reports a reason and campaigns again once none does
    /// (checked about every half second). Must be cheap and never block. Default: `None`.
    fn leadership_blocked(&self) -> Option<String> {
        None
    }
}

/// Retries of a failing activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubled after each failure.
    pub backoff: Duration,
    /// Timeout of each activation and deactivation.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(60),
        }
    }
}
