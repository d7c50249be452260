//! Notifications to an app (member join/leave, leader change, health), delivered to its hooks
//! one at a time, in order, each under its timeout.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::app::{App, HealthStatus, locked, read};
use super::hooks::run_hook;
use super::options::HookKind;
use crate::id::NodeId;
use crate::member::Member;

/// Something an app's hooks should hear about.
#[derive(Debug, Clone)]
pub(crate) enum Notification {
    MemberJoin(Member),
    MemberLeave(Member),
    LeaderChange(Option<NodeId>),
    Health(HealthStatus),
    PlacementInvalid(String),
}

/// Starts the app's notification dispatcher.
pub(crate) fn spawn_dispatcher(app: &App) -> JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    *locked(&app.inner.notify) = Some(tx);
    let app = app.clone();
    tokio::spawn(async move {
        while let Some(n) = rx.recv().await {
            let ctx = app.context(app.fencing_token());
            let (kind, fut) = {
                let hooks = read(&app.inner.hooks);
                match n {
                    Notification::MemberJoin(m) => (
                        HookKind::OnMemberJoin,
                        hooks.on_member_join.as_ref().map(|h| h(ctx.clone(), m)),
                    ),
                    Notification::MemberLeave(m) => (
                        HookKind::OnMemberLeave,
                        hooks.on_member_leave.as_ref().map(|h| h(ctx.clone(), m)),
                    ),
                    Notification::LeaderChange(l) => (
                        HookKind::OnLeaderChange,
                        hooks.on_leader_change.as_ref().map(|h| h(ctx.clone(), l)),
                    ),
                    Notification::Health(s) => (
                        HookKind::OnHealthChange,
                        hooks.on_health_change.as_ref().map(|h| h(ctx.clone(), s)),
                    ),
                    Notification::PlacementInvalid(reason) => (
                        HookKind::OnPlacementInvalid,
                        hooks
                            .on_placement_invalid
                            .as_ref()
                            .map(|h| h(ctx.clone(), reason)),
                    ),
                }
            };
            if let Some(fut) = fut {
                let _ = run_hook(kind, app.timeout(kind), &ctx.cancel, fut).await;
            }
        }
    })
}
