//! Resources a leader holds while it acts (a promoted database, a VIP, a backend service).
//!
//! A Singleton app's resources are activated in registration order when the node becomes
//! leader, before `on_active`, each with the term's fencing token; they are deactivated in
//! reverse order after `on_passive` when the term ends. Spread apps activate them at start and
//! deactivate them at stop.
//!
//! Failure policy: an activation that fails is retried up to [`RetryPolicy::attempts`] times
//! with exponential backoff; if it still fails, the resources activated so far are deactivated
//! in reverse order and the node steps down (cooldown), so another node can take over. A leader
//! never keeps leadership while serving nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

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
/// * Neither may block indefinitely: the runtime bounds them with timeouts.
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

    /// `Some(reason)` while this node must not stand for the app's leadership: its last
    /// activation failed for a reason that would repeat (e.g. a database replica that does not
    /// match its log) and the cause has not changed since. The runtime withdraws the node's
    /// candidacy while any resource reports a reason and campaigns again once none does
    /// (checked about every half second). Must be cheap and never block. Default: `None`.
    fn leadership_blocked(&self) -> Option<String> {
        None
    }
}

/// The first reason a resource of `resources` gives for not standing for leadership.
pub(crate) fn leadership_blocked(resources: &[Registered]) -> Option<String> {
    resources.iter().find_map(|r| {
        r.resource
            .leadership_blocked()
            .map(|why| format!("{}: {why}", r.resource.name()))
    })
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

/// A resource with its retry policy.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) resource: Arc<dyn ActiveResource>,
    pub(crate) policy: RetryPolicy,
}

/// Activates `resources` in order; on failure deactivates the activated ones in reverse and
/// returns the error.
pub(crate) async fn activate_all(resources: &[Registered], epoch: Epoch) -> Result<()> {
    for (i, r) in resources.iter().enumerate() {
        if let Err(e) = activate_one(r, epoch).await {
            tracing::warn!(resource = r.resource.name(), error = %e,
                "resource activation failed after retries; releasing what was activated");
            deactivate_all(&resources[..i]).await;
            return Err(e);
        }
    }
    Ok(())
}

async fn activate_one(r: &Registered, epoch: Epoch) -> Result<()> {
    let mut backoff = r.policy.backoff;
    let attempts = r.policy.attempts.max(1);
    let mut last = None;
    for attempt in 1..=attempts {
        match tokio::time::timeout(r.policy.timeout, r.resource.activate(epoch)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(crate::error::Error::Timeout(format!(
                    "activating {} took longer than {:?}",
                    r.resource.name(),
                    r.policy.timeout
                )))
            }
        }
        if attempt < attempts {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(last.unwrap_or_else(|| crate::error::Error::Internal("no activation attempt".into())))
}

/// Deactivates `resources` in reverse order; failures are logged (deactivation is retried by
/// the next transition).
pub(crate) async fn deactivate_all(resources: &[Registered]) {
    for r in resources.iter().rev() {
        match tokio::time::timeout(r.policy.timeout, r.resource.deactivate()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(resource = r.resource.name(), error = %e, "deactivation failed")
            }
            Err(_) => tracing::error!(resource = r.resource.name(), "deactivation timed out"),
        }
    }
}
