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

use super::app::App;
use super::isolate;
use cluster_core::epoch::Epoch;
use cluster_core::error::{Error, Result};
use cluster_core::{ActiveResource, RetryPolicy};

/// The first reason a resource of `resources` gives for not standing for leadership.
pub(crate) fn leadership_blocked(resources: &[Registered]) -> Option<String> {
    resources.iter().find_map(|r| {
        r.resource
            .leadership_blocked()
            .map(|why| format!("{}: {why}", r.resource.name()))
    })
}

/// A resource with its retry policy.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) resource: Arc<dyn ActiveResource>,
    pub(crate) policy: RetryPolicy,
}

/// Activates the resources of `app` in order; on failure deactivates the activated ones in
/// reverse and returns the error.
///
/// Each call runs in its own task: a panic is reported and handled like an error.
pub(crate) async fn activate_all(app: &App, resources: &[Registered], epoch: Epoch) -> Result<()> {
    for (i, r) in resources.iter().enumerate() {
        if let Err(e) = activate_one(app, r, epoch).await {
            tracing::warn!(resource = r.resource.name(), error = %e,
                "resource activation failed after retries; releasing what was activated");
            deactivate_all(app, &resources[..i]).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Runs one call of a resource in its own task; a panic is reported and becomes an error.
async fn isolated(
    app: &App,
    r: &Registered,
    what: &'static str,
    call: impl FnOnce(Arc<dyn ActiveResource>) -> futures::future::BoxFuture<'static, Result<()>>,
) -> Result<()> {
    match isolate::run(call(r.resource.clone())).await {
        Ok(outcome) => outcome,
        Err(panicked) => {
            isolate::report(
                app.shared().ok().as_deref().map(|s| &*s.ctx),
                Some(app.name()),
                what,
                &panicked,
            );
            Err(Error::Internal(format!(
                "resource {}: {what} {panicked}",
                r.resource.name()
            )))
        }
    }
}

async fn activate_one(app: &App, r: &Registered, epoch: Epoch) -> Result<()> {
    let mut backoff = r.policy.backoff;
    let attempts = r.policy.attempts.max(1);
    let mut last = None;
    for attempt in 1..=attempts {
        let activation = isolated(app, r, "resource.activate", |res| {
            Box::pin(async move { res.activate(epoch).await })
        });
        match tokio::time::timeout(r.policy.timeout, activation).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(Error::Timeout(format!(
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
    Err(last.unwrap_or_else(|| Error::Internal("no activation attempt".into())))
}

/// Deactivates `resources` of `app` in reverse order, each in its own task; failures and
/// panics are logged (deactivation is retried by the next transition).
pub(crate) async fn deactivate_all(app: &App, resources: &[Registered]) {
    for r in resources.iter().rev() {
        let deactivation = isolated(app, r, "resource.deactivate", |res| {
            Box::pin(async move { res.deactivate().await })
        });
        match tokio::time::timeout(r.policy.timeout, deactivation).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(resource = r.resource.name(), error = %e, "deactivation failed")
            }
            Err(_) => tracing::error!(resource = r.resource.name(), "deactivation timed out"),
        }
    }
}
