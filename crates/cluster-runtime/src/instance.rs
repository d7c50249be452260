//! Starting and stopping the instance of one app on this node.
//!
//! Without a placement controller every registered app's instance starts with the platform.
//! With one, the node agent starts and stops instances as the assignment places them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::app::App;
use super::hooks::run_hook;
use super::leadership::{self, LeaderCommand};
use super::options::HookKind;
use super::platform::Shared;
use super::resource;
use super::rpc;
use crate::sync::{locked, read};
use cluster_core::election::Election;
use cluster_core::epoch::Epoch;
use cluster_core::error::Result;
use cluster_core::mode::Role;

/// Starts the app's instance: RPC subscriptions, `on_start`, then campaigning (Singleton) or
/// its resources (other modes). Idempotent. On failure everything started is undone.
pub(crate) async fn start(app: &App, shared: &Arc<Shared>) -> Result<()> {
    if app.inner.running.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let result = start_inner(app, shared).await;
    if result.is_err() {
        stop(app, shared).await;
    }
    shared.refresh_presence();
    result
}

async fn start_inner(app: &App, shared: &Arc<Shared>) -> Result<()> {
    for handle in rpc::serve(app, shared).await? {
        locked(&app.inner.instance_tasks).push(handle);
    }
    let on_start = read(&app.inner.hooks).on_start.clone();
    if let Some(hook) = on_start {
        let ctx = app.context(None);
        run_hook(app, HookKind::OnStart, &ctx.cancel, hook(ctx.clone())).await?;
    }
    if app.mode().is_singleton() {
        let started = shared.started().await?;
        let e: Arc<dyn Election> = Arc::new(super::election::start(
            &shared.ctx,
            started.election.clone(),
            shared.names.lease_key(app.name()),
            Some(app.name()),
        )?);
        *locked(&app.inner.election) = Some(e.clone());
        app.follow_deadline_all();
        let observer = leadership::spawn_leader_observer(app, &e).abort_handle();
        let machine = leadership::spawn(app, e.clone()).abort_handle();
        let candidacy = super::candidacy::spawn(app, e.clone()).abort_handle();
        locked(&app.inner.instance_tasks).extend([observer, machine, candidacy]);
        e.set_candidate(true).await?;
    } else {
        resource::activate_all(app, &app.resources(), Epoch::ZERO).await?;
        app.set_role(Role::Active, None);
    }
    Ok(())
}

/// Stops the app's instance: a leader runs `on_passive` and releases its lease, then `on_stop`
/// runs, resources are released and the subscriptions end. Idempotent.
pub(crate) async fn stop(app: &App, shared: &Arc<Shared>) {
    if !app.inner.running.load(Ordering::SeqCst) {
        return;
    }
    let sender = locked(&app.inner.leadership).take();
    if let Some(sender) = sender {
        let (tx, rx) = oneshot::channel();
        if sender.send(LeaderCommand::Shutdown { reply: tx }).is_ok() {
            let _ = rx.await;
        }
    }
    let was_started = app.role() != Role::Stopped || app.mode().is_singleton();
    if was_started {
        let on_stop = read(&app.inner.hooks).on_stop.clone();
        if let Some(hook) = on_stop {
            let ctx = app.context(None);
            let _ = run_hook(app, HookKind::OnStop, &ctx.cancel, hook(ctx.clone())).await;
        }
    }
    if !app.mode().is_singleton() {
        resource::deactivate_all(app, &app.resources()).await;
    }
    for handle in locked(&app.inner.instance_tasks).drain(..) {
        handle.abort();
    }
    let election = locked(&app.inner.election).take();
    if let Some(e) = election {
        e.close().await;
    }
    app.set_role(Role::Stopped, None);
    app.inner.running.store(false, Ordering::SeqCst);
    shared.refresh_presence();
}
