//! The monitor task of one run, and the start-until-healthy step it shares with activation.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::HealthStatus;
use cluster_core::{Epoch, Error, Result};
use cluster_runtime::WeakApp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{BackendFailure, Core};

/// One check: the backend runs and its health check passes.
enum Check {
    Healthy,
    /// It runs but the check failed.
    Unhealthy(String),
    /// It no longer runs (crashed, exited, unit failed).
    Down(String),
}

async fn check_once(core: &Core) -> Check {
    let timeout = core.options.health_timeout;
    match tokio::time::timeout(timeout, core.backend.status()).await {
        Err(_) => return Check::Unhealthy(format!("status query timed out after {timeout:?}")),
        Ok(Err(e)) => return Check::Unhealthy(format!("status query failed: {e}")),
        Ok(Ok(status)) if !status.state.is_up() => {
            return Check::Down(format!("backend is {}", status.state));
        }
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout(timeout, core.backend.health()).await {
        Ok(Ok(())) => Check::Healthy,
        Ok(Err(e)) => Check::Unhealthy(e.to_string()),
        Err(_) => Check::Unhealthy(format!("health check timed out after {timeout:?}")),
    }
}

/// Starts the backend and checks it at once, then with a short doubling backoff, until it is
/// healthy or `start_timeout` has passed.
pub(super) async fn start_until_healthy(core: &Core, epoch: Epoch) -> Result<()> {
    let o = &core.options;
    let what = core.backend.describe();
    let started = Instant::now();
    let deadline = started + o.start_timeout;
    match tokio::time::timeout_at(deadline, core.backend.start(epoch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::Timeout(format!(
                "starting {what} took longer than {:?}",
                o.start_timeout
            )));
        }
    }
    let mut delay = o.startup_backoff.max(Duration::from_millis(1));
    loop {
        let reason = match check_once(core).await {
            Check::Healthy if started.elapsed() >= o.min_uptime => return Ok(()),
            Check::Healthy => {
                tokio::time::sleep_until(started + o.min_uptime).await;
                match check_once(core).await {
                    Check::Healthy => return Ok(()),
                    Check::Down(reason) => down(core, &what, &reason).await?,
                    Check::Unhealthy(reason) => reason,
                }
            }
            Check::Down(reason) => down(core, &what, &reason).await?,
            Check::Unhealthy(reason) => reason,
        };
        core.stats.update(|s| s.health_failures += 1);
        if Instant::now() + delay >= deadline {
            let logs = core.backend.logs_tail(10).await;
            return Err(Error::Unavailable(format!(
                "{what} not healthy within {:?}: {reason}{}",
                o.start_timeout,
                format_logs(&logs)
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(o.health_interval);
    }
}

/// The error of a backend that stopped while starting, with its last output.
async fn down(core: &Core, what: &str, reason: &str) -> Result<String> {
    let logs = core.backend.logs_tail(10).await;
    Err(Error::Unavailable(format!(
        "{what} stopped right after starting: {reason}{}",
        format_logs(&logs)
    )))
}

fn format_logs(logs: &[String]) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("; last output: {}", logs.join(" | "))
    }
}

/// Whether the run may still act: the app (when bound and Singleton) still grants `epoch`.
fn entitled(core: &Core, epoch: Epoch) -> bool {
    match &core.app {
        None => true,
        Some(weak) => match weak.upgrade() {
            None => false,
            Some(app) if app.mode().is_singleton() => app.fencing_token() == Some(epoch),
            Some(_) => true,
        },
    }
}

/// The monitor of one run; ends when `cancel` fires or after giving up.
pub(super) async fn run(core: Arc<Core>, epoch: Epoch, cancel: CancellationToken) {
    core.stats.update(|s| s.monitors += 1);
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = watch(&core, epoch) => {}
    }
    core.stats.update(|s| s.monitors -= 1);
}

enum Recovery {
    Healthy,
    GaveUp(String),
    NotEntitled,
}

async fn watch(core: &Arc<Core>, epoch: Epoch) {
    let o = core.options;
    let what = core.backend.describe();
    let mut failures = 0u32;
    let mut restarts = 0u32;
    let mut healthy_since = Instant::now();
    loop {
        tokio::time::sleep(o.health_interval).await;
        let reason = match check_once(core).await {
            Check::Healthy => {
                failures = 0;
                if restarts > 0 && healthy_since.elapsed() >= o.restart.cooldown {
                    info!(backend = %what, restarts, "backend healthy for the cooldown; restart count reset");
                    restarts = 0;
                }
                continue;
            }
            Check::Unhealthy(reason) => {
                failures += 1;
                core.stats.update(|s| {
                    s.health_failures += 1;
                    s.last_error = Some(reason.clone());
                });
                warn!(backend = %what, failures, threshold = o.failure_threshold, %reason,
                    "backend health check failed");
                if failures < o.failure_threshold.max(1) {
                    continue;
                }
                reason
            }
            Check::Down(reason) => {
                core.stats.update(|s| s.last_error = Some(reason.clone()));
                warn!(target: "cluster::audit", event = "backend.down", backend = %what, %reason,
                    "backend is not running");
                reason
            }
        };
        match recover(core, epoch, reason, &mut restarts).await {
            Recovery::Healthy => {
                failures = 0;
                healthy_since = Instant::now();
                core.stats.update(|s| s.state = "running");
            }
            Recovery::NotEntitled => {
                info!(backend = %what, %epoch, "term ended; the monitor stops without restarting");
                return;
            }
            Recovery::GaveUp(reason) => {
                give_up(core, epoch, reason).await;
                return;
            }
        }
    }
}

/// Restarts by policy until the backend is healthy, the restarts are exhausted or the term
/// ended.
async fn recover(core: &Core, epoch: Epoch, mut reason: String, restarts: &mut u32) -> Recovery {
    let policy = core.options.restart;
    let what = core.backend.describe();
    loop {
        if !entitled(core, epoch) {
            return Recovery::NotEntitled;
        }
        if *restarts >= policy.max_restarts {
            return Recovery::GaveUp(format!("{reason} (after {} restarts)", *restarts));
        }
        *restarts += 1;
        let delay = policy.delay(*restarts);
        core.stats.update(|s| {
            s.restarts += 1;
            s.state = "restarting";
        });
        warn!(target: "cluster::audit", event = "backend.restart", backend = %what, %epoch,
            restart = *restarts, max = policy.max_restarts, ?delay, %reason, "restarting backend");
        tokio::time::sleep(delay).await;
        if !entitled(core, epoch) {
            return Recovery::NotEntitled;
        }
        if let Err(e) = core.backend.stop(core.options.stop_timeout).await {
            warn!(backend = %what, error = %e, "stopping the failed backend failed");
        }
        match start_until_healthy(core, epoch).await {
            Ok(()) => return Recovery::Healthy,
            Err(e) => reason = e.to_string(),
        }
    }
}

/// Stops the backend, then (in a task of its own, since stepping down deactivates this
/// resource and joins this monitor) reports the app unhealthy, steps the node down and calls
/// the failure handler.
async fn give_up(core: &Arc<Core>, epoch: Epoch, reason: String) {
    let what = core.backend.describe();
    let logs = core.backend.logs_tail(20).await;
    error!(target: "cluster::audit", event = "backend.give_up", backend = %what, %epoch,
        %reason, "backend cannot be kept healthy; stopping it and stepping down");
    core.stats.update(|s| {
        s.give_ups += 1;
        s.state = "failed";
        s.last_error = Some(reason.clone());
    });
    if let Err(e) = core.backend.stop(core.options.stop_timeout).await {
        warn!(backend = %what, error = %e, "stopping the failed backend failed");
    }
    let failure = BackendFailure {
        backend: what,
        epoch,
        reason,
        logs,
    };
    let app = core.app.clone();
    let handler = core.on_failure.clone();
    tokio::spawn(async move {
        if let Some(app) = app {
            step_down(&app, &failure).await;
        }
        if let Some(h) = handler {
            h(failure).await;
        }
    });
}

/// Reports the app unhealthy and, for a Singleton still leading under `epoch`, steps down.
async fn step_down(app: &WeakApp, failure: &BackendFailure) {
    let Some(app) = app.upgrade() else {
        return;
    };
    app.report_health(HealthStatus::Unhealthy(format!(
        "backend {} failed: {}",
        failure.backend, failure.reason
    )));
    if !app.mode().is_singleton() {
        return;
    }
    // The leadership machine may still be running `on_active` for this term; it handles the
    // step-down once it is done (`NotLeader` until then).
    for _ in 0..600 {
        if app.fencing_token() != Some(failure.epoch) {
            return;
        }
        match app.step_down().await {
            Ok(()) => {
                info!(target: "cluster::audit", event = "backend.step_down", app = %app.name(),
                    epoch = %failure.epoch, "stepped down because the backend failed");
                return;
            }
            Err(Error::NotLeader { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                warn!(app = %app.name(), error = %e, "step-down after backend failure failed");
                return;
            }
        }
    }
}
