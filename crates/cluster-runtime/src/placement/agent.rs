//! The node agent: makes this node match the assignment (start/stop instances, campaign only
//! where placed), applies this node's label overrides, executes Singleton moves and the Ring
//! ownership handshake.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::ring;
use crate::app::App;
use crate::hooks::run_hook;
use crate::instance;
use crate::notify::Notification;
use crate::options::HookKind;
use crate::platform::Shared;
use crate::sync::read;
use cluster_core::id::{AppName, NodeId};
use cluster_core::kv::KvBucket;
use cluster_core::mode::Role;
use cluster_core::wire::placement::{
    ASSIGNMENT_KEY, AssignmentRecord, LabelsRecord, MoveRecord, decode, labels_key, move_key,
};

/// Re-check interval without any event (a safety net).
const RESYNC: Duration = Duration::from_secs(1);

/// Starts the agent of this node.
pub(crate) fn spawn(shared: &Arc<Shared>, bucket: Arc<dyn KvBucket>) -> AbortHandle {
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut events = bucket.watch("").await.ok();
        let mut agent = Agent::default();
        // One receiver for the whole loop, so `changed` reports only new changes.
        let mut members = match weak.upgrade() {
            Some(s) => s.started().await.ok().map(|st| st.membership.clone()),
            None => return,
        };
        loop {
            {
                let Some(shared) = weak.upgrade() else { return };
                if let Some(m) = members.as_mut() {
                    m.borrow_and_update();
                }
                agent.round(&shared, &*bucket).await;
            }
            tokio::select! {
                ev = async {
                    match events.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                } => if ev.is_none() { events = bucket.watch("").await.ok(); },
                _ = async {
                    match members.as_mut() {
                        Some(m) => { let _ = m.changed().await; }
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    })
    .abort_handle()
}

#[derive(Default)]
struct Agent {
    highest_epoch: u64,
    notified_pending: BTreeMap<AppName, String>,
}

impl Agent {
    async fn round(&mut self, shared: &Arc<Shared>, bucket: &dyn KvBucket) {
        self.apply_labels(shared, bucket).await;
        let record = match bucket.get(ASSIGNMENT_KEY).await {
            Ok(Some(e)) => match decode::<AssignmentRecord>("assignment", &e.value) {
                Ok(r) => r,
                Err(err) => {
                    shared.stats.count_malformed("placement");
                    warn!(error = %err, "ignoring malformed assignment");
                    return;
                }
            },
            Ok(None) => return,
            Err(_) => return,
        };
        if record.epoch < self.highest_epoch {
            warn!(
                epoch = record.epoch,
                highest = self.highest_epoch,
                "ignoring an assignment from a deposed controller"
            );
            return;
        }
        self.highest_epoch = record.epoch;
        let record = Arc::new(record);
        shared.assignment.send_replace(Some(record.clone()));
        let apps: Vec<App> = read(&shared.apps).values().cloned().collect();
        if let Some(started) = shared.started.borrow().clone() {
            let members = started.membership.borrow().clone();
            let mut modes: BTreeMap<AppName, cluster_core::mode::Mode> = members
                .values()
                .flat_map(|m| m.apps.iter().map(|a| (a.name.clone(), a.mode)))
                .collect();
            modes.extend(apps.iter().map(|a| (a.name().clone(), a.mode())));
            super::observe::gauges(&record, &members, &modes);
        }
        for app in &apps {
            let placed = record.assignment.places(app.name(), &shared.node);
            if placed && let Err(e) = instance::start(app, shared).await {
                warn!(app = %app.name(), error = %e, "cannot start instance; retrying");
            }
            if let cluster_core::mode::Mode::Ring { .. } = app.mode() {
                // Release before stopping, own after starting.
                ring::reconcile(shared, bucket, app, &record, placed).await;
            }
            if !placed && app.is_running() {
                info!(app = %app.name(), "not placed here any more; stopping the instance");
                instance::stop(app, shared).await;
            }
            match record.pending.get(app.name()) {
                Some(reason) if self.notified_pending.get(app.name()) != Some(reason) => {
                    self.notified_pending
                        .insert(app.name().clone(), reason.clone());
                    app.notify(Notification::PlacementInvalid(reason.clone()));
                }
                Some(_) => {}
                None => {
                    self.notified_pending.remove(app.name());
                }
            }
            if app.mode().is_singleton() {
                self.singleton_move(shared, bucket, app, &record).await;
            }
        }
    }

    /// Applies this node's label overrides to its member record.
    async fn apply_labels(&self, shared: &Arc<Shared>, bucket: &dyn KvBucket) {
        let overrides = match bucket.get(&labels_key(&shared.node)).await {
            Ok(Some(e)) => match decode::<LabelsRecord>("labels", &e.value) {
                Ok(r) => Some(r),
                Err(_) => {
                    shared.stats.count_malformed("placement");
                    None
                }
            },
            _ => None,
        };
        let changed = {
            let mut current = shared
                .label_overrides
                .write()
                .unwrap_or_else(|p| p.into_inner());
            let changed = *current != overrides;
            *current = overrides;
            changed
        };
        if changed {
            info!(node = %shared.node, "label overrides changed");
            shared.refresh_presence();
        }
    }

    /// Executes a move request of a Singleton app when this node leads it.
    async fn singleton_move(
        &self,
        shared: &Arc<Shared>,
        bucket: &dyn KvBucket,
        app: &App,
        record: &AssignmentRecord,
    ) {
        let key = move_key(app.name());
        let Ok(Some(entry)) = bucket.get(&key).await else {
            return;
        };
        let Ok(mv) = decode::<MoveRecord>("move", &entry.value) else {
            return;
        };
        if !app.is_leader() {
            return;
        }
        let started = shared.started.borrow().clone();
        let Some(started) = started else { return };
        match super::lock::move_is_current(shared, &started, app.name(), mv.lock).await {
            Ok(true) => {}
            Ok(false) => {
                // Its requester's migration lock expired: nobody drives this move any more.
                warn!(app = %app.name(), from = %mv.from, "dropping a move whose migration lock expired");
                let _ = bucket.delete(&key, Some(entry.revision)).await;
                return;
            }
            Err(_) => return,
        }
        let me = &shared.node;
        let target = match &mv.to {
            Some(to) if to == me => {
                // The move reached us: report and clean up.
                let hook = read(&app.inner.hooks).on_migration_complete.clone();
                if let Some(hook) = hook {
                    let ctx = app.context(app.fencing_token());
                    let _ = run_hook(
                        app,
                        HookKind::OnMigrationComplete,
                        &ctx.cancel,
                        hook(ctx.clone(), (mv.from.clone(), me.clone())),
                    )
                    .await;
                }
                let _ = bucket.delete(&key, Some(entry.revision)).await;
                info!(app = %app.name(), from = %mv.from, "migration complete");
                return;
            }
            Some(to) => to.clone(),
            None if mv.from == *me => match self.any_standby(shared, app, record) {
                Some(n) => n,
                None => return,
            },
            None => return,
        };
        if !standby_ready(shared, app.name(), &target) {
            return;
        }
        let hook = read(&app.inner.hooks).on_migration_start.clone();
        if let Some(hook) = hook {
            let ctx = app.context(app.fencing_token());
            if let Err(e) = run_hook(
                app,
                HookKind::OnMigrationStart,
                &ctx.cancel,
                hook(ctx.clone(), (me.clone(), target.clone())),
            )
            .await
            {
                warn!(app = %app.name(), error = %e, "migration rejected by on_migration_start");
                migration_failed(shared, app, &mv, &target, &format!("rejected: {e}"));
                let _ = bucket.delete(&key, Some(entry.revision)).await;
                return;
            }
        }
        info!(app = %app.name(), to = %target, "handing leadership over for a migration");
        if let Err(e) = app.hand_off(&target).await {
            warn!(app = %app.name(), error = %e, "hand-off failed");
            migration_failed(shared, app, &mv, &target, &format!("hand-off failed: {e}"));
        }
    }

    fn any_standby(&self, shared: &Shared, app: &App, record: &AssignmentRecord) -> Option<NodeId> {
        record
            .assignment
            .apps
            .get(app.name())?
            .nodes
            .iter()
            .find(|n| **n != shared.node && standby_ready(shared, app.name(), n))
            .cloned()
    }
}

/// Whether `node` runs a standby of `app` whose resources are ready to take over (so a
/// hand-off to it can complete without a long catch-up).
fn standby_ready(shared: &Shared, app: &AppName, node: &NodeId) -> bool {
    let Some(started) = shared.started.borrow().clone() else {
        return false;
    };
    let members = started.membership.borrow();
    members.get(node).is_some_and(|m| {
        m.apps
            .iter()
            .any(|a| &a.name == app && a.running && a.role == Role::Standby && a.ready)
    })
}

/// Audits a Singleton migration that failed on the leader (deduplicated with the requester's
/// report by the move id).
fn migration_failed(shared: &Shared, app: &App, mv: &MoveRecord, to: &NodeId, why: &str) {
    crate::metrics::migration(app.name().as_str(), "manual", "failed");
    shared.audit_record(
        cluster_core::audit::AuditRecord::new(
            cluster_core::audit::category::PLACEMENT,
            "migration.failed",
            Some(app.name()),
            &shared.node,
            serde_json::json!({"from_node": mv.from, "to_node": to, "reason": "manual",
                "trigger": "manual", "error": why}),
        )
        .with_id(format!("migration.failed.{}", mv.id)),
    );
}
