//! Notifications to an app (member join/leave, leader change, health), delivered to its hooks
//! one at a time, in order, each under its timeout.
//!
//! The queue is bounded ([`NOTIFY_CAPACITY`]): when hooks fall that far behind, new
//! notifications are dropped and counted (`gc_dropped_records_total{queue="notify"}`).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::app::App;
use super::bounded::NOTIFY_CAPACITY;
use super::hooks::run_hook;
use super::options::HookKind;
use crate::sync::{locked, read};
use cluster_core::health::HealthStatus;
use cluster_core::id::NodeId;
use cluster_core::member::Member;

/// Something an app's hooks should hear about.
#[derive(Debug, Clone)]
pub(crate) enum Notification {
    MemberJoin(Member),
    MemberLeave(Member),
    LeaderChange(Option<NodeId>),
    Health(HealthStatus),
    PlacementInvalid(String),
}

impl Notification {
    /// A short name for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Notification::MemberJoin(_) => "member_join",
            Notification::MemberLeave(_) => "member_leave",
            Notification::LeaderChange(_) => "leader_change",
            Notification::Health(_) => "health",
            Notification::PlacementInvalid(_) => "placement_invalid",
        }
    }
}

/// Starts the app's notification dispatcher.
pub(crate) fn spawn_dispatcher(app: &App) -> JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel(NOTIFY_CAPACITY);
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
                let _ = run_hook(&app, kind, &ctx.cancel, fut).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_notifications_is_bounded_and_the_rest_delivered() {
        let app = App::spread("web").unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (c, g) = (calls.clone(), gate.clone());
        app.on_leader_change(move |_, _| {
            let (c, g) = (c.clone(), g.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                // Hooks are stuck until the flood is over.
                let _ = g.acquire().await?;
                Ok(())
            }
        });
        let _dispatcher = spawn_dispatcher(&app);
        app.notify(Notification::LeaderChange(None));
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        const FLOOD: usize = 3 * NOTIFY_CAPACITY;
        for _ in 0..FLOOD {
            app.notify(Notification::LeaderChange(None));
        }
        gate.add_permits(FLOOD + 1);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        // The one being handled, then exactly a full queue; the rest was dropped.
        assert_eq!(calls.load(Ordering::SeqCst), 1 + NOTIFY_CAPACITY);
        // The queue works again after the flood.
        app.notify(Notification::LeaderChange(None));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2 + NOTIFY_CAPACITY);
    }
}
