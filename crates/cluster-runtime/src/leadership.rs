//! The leadership state machine of a Singleton app on one node.
//!
//! One task per app owns the role, so transitions never overlap:
//!
//! ```text
//!             lease acquired (epoch e)                 on_active Ok
//!   Standby ─────────────────────────▶ Promoting(e) ─────────────────▶ Leader(e)
//!      ▲                                  │ lease lost / newer epoch       │ lease lost, deadline,
//!      │                                  │ (hook cancelled)               │ step-down, hand-off
//!      │          on_passive done         ▼                                ▼
//!      └──────────────────────────── Demoting ◀────────────────────────────┘
//! ```
//!
//! * `is_leader()` is true only in `Leader(e)` and while the election's fencing token is `e`.
//! * Exactly one `on_active` per acquisition; a newer transition (the lease lost or a newer
//!   epoch) cancels a running hook.
//! * A failed or timed-out `on_active` runs `on_passive` to undo partial work, then resigns
//!   (the node waits the election cooldown before campaigning again).
//! * Resources (`ActiveResource`) are activated before `on_active` and deactivated after
//!   `on_passive`; a resource that cannot be activated makes the node step down.
//! * Step-down and hand-off run `on_passive` first and only then release the lease, so the next
//!   leader starts after this one stopped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use super::app::App;
use super::hooks::run_hook;
use super::isolate;
use super::notify::Notification;
use super::options::HookKind;
use super::resource;
use crate::sync::{locked, read};
use cluster_core::audit::category::ELECTION;
use cluster_core::election::{Election, ElectionState};
use cluster_core::epoch::Epoch;
use cluster_core::error::Result;
use cluster_core::id::NodeId;
use cluster_core::mode::Role;

/// Requests to the leadership machine.
pub(crate) enum LeaderCommand {
    StepDown {
        reply: oneshot::Sender<Result<()>>,
    },
    HandOff {
        to: NodeId,
        reply: oneshot::Sender<Result<()>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// How a hook run under supervision ended.
enum HookEnd {
    Done(Result<()>),
    Superseded,
}

struct Machine {
    app: App,
    election: Arc<dyn Election>,
    status: watch::Receiver<ElectionState>,
    /// `Some(e)` while this node acts as leader for epoch `e`.
    leading: Option<Epoch>,
    /// Start of the current leaderless gap as seen here: the machine's start or the last
    /// renewal seen from another node's term (for `gc_election_duration_seconds`).
    gap_start: Instant,
}

/// Starts the machine under a supervisor; the app's `leadership` sender routes commands to it.
///
/// The machine runs in its own task. If it panics, the supervisor ends the term (`on_passive`,
/// resources released), resigns the lease (the election cooldown applies) and starts a fresh
/// machine, so the election never renews a lease for a node that no longer acts on it. If the
/// app is stopping (its command sender was taken), the election is closed instead.
pub(crate) fn spawn(app: &App, election: Arc<dyn Election>) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    *locked(&app.inner.leadership) = Some(tx);
    let app = app.clone();
    app.set_role(Role::Standby, None);
    tokio::spawn(async move {
        loop {
            let machine = Machine {
                app: app.clone(),
                status: election.status(),
                election: election.clone(),
                leading: None,
                gap_start: Instant::now(),
            };
            let Err(panicked) = isolate::run(machine.run(rx)).await else {
                return;
            };
            isolate::report(
                app.shared().ok().as_deref().map(|s| &*s.ctx),
                Some(app.name()),
                "leadership",
                &panicked,
            );
            // Commands queued to the dead machine are dropped (their callers see an error).
            let next = {
                let mut slot = locked(&app.inner.leadership);
                slot.is_some().then(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    *slot = Some(tx);
                    rx
                })
            };
            Machine::recover(&app, &*election).await;
            match next {
                Some(next) => rx = next,
                None => {
                    election.close().await;
                    app.set_role(Role::Stopped, None);
                    return;
                }
            }
        }
    })
}

/// Starts the observer that turns leader changes into `on_leader_change` notifications and
/// updates the app's observed leader (for [`App::leader_changes`]).
pub(crate) fn spawn_leader_observer(
    app: &App,
    election: &Arc<dyn Election>,
) -> tokio::task::JoinHandle<()> {
    let mut status = election.status();
    let app = app.clone();
    tokio::spawn(async move {
        let name = app.name().to_string();
        let mut last: Option<NodeId> = None;
        let mut seen: Option<Instant> = None;
        // Seconds since renewal must grow while nothing happens: refresh every second.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let leader = {
                let state = status.borrow_and_update();
                // 0 while no valid lease exists (docs/architecture/observability.md).
                crate::metrics::election_epoch(
                    &name,
                    state.leader.as_ref().map_or(0, |l| l.epoch.0),
                );
                seen = state.lease_seen_at.or(seen);
                state.leader.as_ref().map(|l| l.node.clone())
            };
            if let Some(at) = seen {
                crate::metrics::election_since_renewal(&name, at.elapsed());
            }
            if leader != last {
                last = leader.clone();
                app.inner.observed_leader.send_replace(leader.clone());
                app.notify(Notification::LeaderChange(leader));
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    })
}

impl Machine {
    /// After the machine panicked: undo whatever it may have started (`on_passive`, resources
    /// released) and give the lease up, exactly as after a failed `on_active`.
    async fn recover(app: &App, election: &dyn Election) {
        run_passive(app).await;
        if let Err(e) = election.resign().await {
            warn!(app = %app.name(), error = %e, "resign after a leadership panic failed");
        }
    }

    /// The epoch the election currently grants, if any.
    fn granted(&self) -> Option<Epoch> {
        self.election.fencing_token()
    }

    /// Notes the last renewal seen from another node's term.
    fn observe(&mut self) {
        let state = self.status.borrow();
        if let Some(l) = &state.leader
            && Some(&l.node) != self.app.node_id().as_ref()
        {
            self.gap_start = state.lease_seen_at.unwrap_or_else(Instant::now);
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<LeaderCommand>) {
        loop {
            self.observe();
            match (self.leading, self.granted()) {
                (None, Some(e)) => {
                    let span = info_span!("election.promote", app = %self.app.name(), epoch = e.0);
                    self.promote(e).instrument(span).await;
                    continue;
                }
                (Some(e), granted) if granted != Some(e) => {
                    // Our own deadline passed (renewals failing) or the term ended in the store.
                    let reason = match self.status.borrow().leading {
                        Some(l) if l.epoch == e => "deadline",
                        _ => "lease_lost",
                    };
                    info!(app = %self.app.name(), epoch = %e, reason, "leadership ended; demoting");
                    let span =
                        info_span!("election.demote", app = %self.app.name(), epoch = e.0, reason);
                    self.demote(reason).instrument(span).await;
                    continue;
                }
                _ => {}
            }
            // Wake on a state change, a command, or the local deadline of the current term.
            let deadline = self.status.borrow().leading.map(|l| l.deadline);
            tokio::select! {
                changed = self.status.changed() => {
                    if changed.is_err() {
                        self.demote("shutdown").await;
                        return;
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(LeaderCommand::StepDown { reply }) => {
                        let r = self.step_down(None).await;
                        let _ = reply.send(r);
                    }
                    Some(LeaderCommand::HandOff { to, reply }) => {
                        let r = self.step_down(Some(to)).await;
                        let _ = reply.send(r);
                    }
                    Some(LeaderCommand::Shutdown { reply }) => {
                        self.demote("shutdown").await;
                        self.election.close().await;
                        self.app.set_role(Role::Stopped, None);
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.demote("shutdown").await;
                        return;
                    }
                },
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    async fn promote(&mut self, epoch: Epoch) {
        info!(app = %self.app.name(), %epoch, "promoting");
        let ctx = self.app.context(Some(epoch));
        let resources = self.app.resources();
        let activation = {
            let (app, resources) = (self.app.clone(), resources.clone());
            async move { resource::activate_all(&app, &resources, epoch).await }
        };
        match self.supervise(epoch, &ctx.cancel, activation).await {
            HookEnd::Done(Ok(())) => {}
            HookEnd::Done(Err(e)) => {
                warn!(app = %self.app.name(), %epoch, error = %e,
                    "a resource could not be activated; stepping down");
                if let Err(e) = self.election.resign().await {
                    warn!(app = %self.app.name(), error = %e, "resign failed");
                }
                return;
            }
            HookEnd::Superseded => {
                resource::deactivate_all(&self.app, &resources).await;
                return;
            }
        }
        let hook = read(&self.app.inner.hooks).on_active.clone();
        let end = match hook {
            Some(hook) => {
                let (app, cancel) = (self.app.clone(), ctx.cancel.clone());
                let fut = hook(ctx.clone());
                let fut = async move { run_hook(&app, HookKind::OnActive, &cancel, fut).await };
                self.supervise(epoch, &ctx.cancel, fut).await
            }
            None => HookEnd::Done(Ok(())),
        };
        match end {
            HookEnd::Done(Ok(())) if self.granted() == Some(epoch) => {
                self.leading = Some(epoch);
                self.app.set_role(Role::Leader, Some(epoch));
                let name = self.app.name().to_string();
                let waited = self.gap_start.elapsed();
                crate::metrics::election_transition(&name, "acquired");
                crate::metrics::election_duration(&name, waited);
                self.audit(
                    "acquired",
                    serde_json::json!({"epoch": epoch.0, "waited_ms": waited.as_millis() as u64}),
                );
                info!(app = %self.app.name(), %epoch, "active");
            }
            HookEnd::Done(Ok(())) | HookEnd::Superseded => {
                // The term ended while activating: undo.
                self.run_passive().await;
            }
            HookEnd::Done(Err(e)) => {
                warn!(app = %self.app.name(), %epoch, error = %e,
                    "on_active failed; undoing and stepping down");
                self.run_passive().await;
                if let Err(e) = self.election.resign().await {
                    warn!(app = %self.app.name(), error = %e, "resign after failed activation failed");
                }
            }
        }
    }

    /// Runs `fut` until it completes or the term `epoch` ends (then cancels it).
    async fn supervise(
        &mut self,
        epoch: Epoch,
        cancel: &tokio_util::sync::CancellationToken,
        fut: impl std::future::Future<Output = Result<()>>,
    ) -> HookEnd {
        tokio::pin!(fut);
        loop {
            let deadline = self.status.borrow().leading.map(|l| l.deadline);
            tokio::select! {
                r = &mut fut => return HookEnd::Done(r),
                changed = self.status.changed() => {
                    if changed.is_err() || self.granted() != Some(epoch) {
                        cancel.cancel();
                        return HookEnd::Superseded;
                    }
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if self.granted() != Some(epoch) {
                        cancel.cancel();
                        return HookEnd::Superseded;
                    }
                }
            }
        }
    }

    /// Ends this node's term (if it leads): `reason` is `deadline`, `lease_lost`, `stepdown`,
    /// `handoff` or `shutdown`.
    async fn demote(&mut self, reason: &'static str) {
        let Some(epoch) = self.leading.take() else {
            return;
        };
        self.app.set_role(Role::Standby, None);
        crate::metrics::election_transition(self.app.name().as_str(), reason);
        if matches!(reason, "deadline" | "lease_lost") {
            self.audit(
                "lost",
                serde_json::json!({"epoch": epoch.0, "reason": reason}),
            );
        } else if reason == "shutdown" {
            self.audit(
                "stepdown",
                serde_json::json!({"epoch": epoch.0, "reason": reason}),
            );
        }
        self.run_passive().await;
    }

    fn audit(&self, action: &str, data: serde_json::Value) {
        if let Ok(shared) = self.app.shared() {
            shared.audit(ELECTION, action, Some(self.app.name()), data);
        }
    }

    /// Runs `on_passive`, then deactivates the resources in reverse order.
    async fn run_passive(&mut self) {
        run_passive(&self.app).await;
    }

    async fn step_down(&mut self, to: Option<NodeId>) -> Result<()> {
        let Some(epoch) = self.leading else {
            return Err(self.app.not_leader());
        };
        let span = info_span!("election.stepdown", app = %self.app.name(), epoch = epoch.0,
            to = to.as_ref().map(|t| t.to_string()));
        async {
            match &to {
                None => {
                    self.demote("stepdown").await;
                    self.audit("stepdown", serde_json::json!({"epoch": epoch.0}));
                }
                Some(to) => {
                    self.demote("handoff").await;
                    self.audit("handoff", serde_json::json!({"epoch": epoch.0, "to": to}));
                }
            }
            match to {
                None => self.election.resign().await,
                Some(to) => self.election.handoff(&to).await,
            }
        }
        .instrument(span)
        .await
    }
}

/// Runs `on_passive` of `app`, then deactivates its resources in reverse order.
async fn run_passive(app: &App) {
    app.set_role(Role::Standby, None);
    let hook = read(&app.inner.hooks).on_passive.clone();
    if let Some(hook) = hook {
        let ctx = app.context(None);
        let _ = run_hook(app, HookKind::OnPassive, &ctx.cancel, hook(ctx.clone())).await;
    }
    resource::deactivate_all(app, &app.resources()).await;
}
