//! Auto-rebalance, run by the leader of `controller.placement`.
//!
//! Every tick (and on membership changes) the leader: tracks the migrations it started (done,
//! or failed after the migration timeout and then moved back), honours cancel requests,
//! decides whether a new run starts (triggers: interval, node join/leave, app-count imbalance,
//! cron schedule; not within the cooldown period; not paused by version skew, a node shutting
//! down, a drain, or outside every maintenance window), and starts at most `max_concurrent`
//! migrations at a time as `move.{app}` records, each within the per-app cooldown, the rate
//! limit and (with `require_approval`) only once `approve.{app}` exists.
//!
//! This file is the mechanism (watching, timers, locks, approvals, records); every decision is
//! a pure function of `cluster_placement::auto`.
//!
//! Hysteresis: a run is planned with the planner's rebalance (start above `threshold`, plan down
//! to `threshold / 2`) and then executes exactly that plan; the next run needs the imbalance to
//! exceed `threshold` again, so a balanced cluster never oscillates.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use cluster_placement::auto::{self, Admission, TimedOut};

use super::lock::MigrationLock;
use crate::membership::MemberMap;
use crate::platform::{Shared, Started};
use crate::schedule::{CronSchedule, from_ms, in_any_window, to_ms};
use cluster_core::election::Election;
use cluster_core::error::{Error, Result};
use cluster_core::id::{AppName, NodeId};
use cluster_core::kv::KvBucket;
use cluster_core::member::NodeLoad;
use cluster_core::planner::Planner;
use cluster_core::wire::placement::{
    ASSIGNMENT_KEY, AssignmentRecord, MoveRecord, PLACEMENT_RECORD_VERSION, decode, encode,
    move_key,
};
use cluster_core::wire::placement_admin::PlannedMigration;
use cluster_core::wire::rebalance::{
    AUTO_REBALANCE_KEY, AutoRebalanceConfig, DeferredMigration, FailedMigration,
    MIGRATION_POLICY_KEY, MigrationPolicy, REBALANCE_CANCEL_KEY, REBALANCE_STATUS_KEY,
    RebalancePhase, RebalanceStatus, RecentMigration, approve_key,
};

/// How often the leader evaluates without any event.
const TICK: Duration = Duration::from_secs(1);

/// Settings used while the placement bucket holds none (builder options).
#[derive(Debug, Clone, Default)]
pub(crate) struct RebalanceDefaults {
    pub(crate) auto: AutoRebalanceConfig,
    pub(crate) policy: MigrationPolicy,
}

/// Starts the auto-rebalance loop; it acts only while `election` is won.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    started: &Started,
    bucket: Arc<dyn KvBucket>,
    planner: Arc<dyn Planner>,
    election: Arc<dyn Election>,
) -> AbortHandle {
    let weak = Arc::downgrade(shared);
    let mut members = started.membership.clone();
    tokio::spawn(async move {
        let mut state: Option<Auto> = None;
        loop {
            {
                let Some(shared) = weak.upgrade() else { return };
                if election.fencing_token().is_some() && !shared.is_draining() {
                    let auto = match state.as_mut() {
                        Some(a) => a,
                        None => state.insert(Auto::seed(&shared, &*bucket).await),
                    };
                    if let Err(e) = auto.round(&shared, &*bucket, &*planner, &*election).await {
                        debug!(error = %e, "auto-rebalance round failed; retrying");
                    }
                } else {
                    state = None;
                }
            }
            tokio::select! {
                _ = members.changed() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    })
    .abort_handle()
}

struct Active {
    step: PlannedMigration,
    started: Instant,
    rollback: bool,
    /// The app's migration lock (`None` for a step inherited from a previous controller until
    /// this one takes the lock over).
    lock: Option<MigrationLock>,
}

struct Auto {
    status: RebalanceStatus,
    written: Option<RebalanceStatus>,
    plan: VecDeque<PlannedMigration>,
    active: Vec<Active>,
    recent: Vec<(AppName, Instant)>,
    last_eval: Option<Instant>,
    run_ended: Option<Instant>,
    known: Option<BTreeSet<NodeId>>,
    trigger: Option<String>,
    last_cron: SystemTime,
}

async fn read<T: serde::de::DeserializeOwned>(
    bucket: &dyn KvBucket,
    key: &str,
) -> Result<Option<T>> {
    match bucket.get(key).await? {
        Some(e) => decode(key, &e.value).map(Some),
        None => Ok(None),
    }
}

/// The effective settings: the bucket's records, else the builder's.
pub(crate) async fn settings(
    shared: &Shared,
    bucket: &dyn KvBucket,
) -> Result<(AutoRebalanceConfig, MigrationPolicy)> {
    let auto = read(bucket, AUTO_REBALANCE_KEY)
        .await?
        .unwrap_or_else(|| shared.rebalance_defaults.auto.clone());
    let policy = read(bucket, MIGRATION_POLICY_KEY)
        .await?
        .unwrap_or_else(|| shared.rebalance_defaults.policy.clone());
    Ok((auto, policy))
}

impl Auto {
    /// State of a new leader, continuing from the last status record.
    async fn seed(shared: &Shared, bucket: &dyn KvBucket) -> Self {
        let status: RebalanceStatus = read(bucket, REBALANCE_STATUS_KEY)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let now = Instant::now();
        let wall = shared.clock.wall();
        let recent = status
            .recent
            .iter()
            .map(|r| {
                let age = wall.duration_since(from_ms(r.at_ms)).unwrap_or_default();
                (r.app.clone(), now.checked_sub(age).unwrap_or(now))
            })
            .collect();
        let active = status
            .active
            .iter()
            .map(|s| Active {
                step: s.clone(),
                started: now,
                rollback: false,
                lock: None,
            })
            .collect();
        let done: usize = status.completed + status.active.len() + status.failed.len();
        let plan = status
            .migrations
            .iter()
            .skip(done.min(status.migrations.len()))
            .cloned()
            .collect();
        Self {
            plan: if status.in_progress {
                plan
            } else {
                VecDeque::new()
            },
            active,
            recent,
            written: Some(status.clone()),
            status,
            last_eval: None,
            run_ended: None,
            known: None,
            trigger: None,
            last_cron: wall,
        }
    }

    async fn round(
        &mut self,
        shared: &Arc<Shared>,
        bucket: &dyn KvBucket,
        planner: &dyn Planner,
        election: &dyn Election,
    ) -> Result<()> {
        let (config, policy) = settings(shared, bucket).await?;
        let started = shared.started().await?;
        let members = started.membership.borrow().clone();
        let now = Instant::now();
        let wall = shared.clock.wall();
        self.detect_membership(&members, &config);
        self.track(shared, &started, bucket, &members, &policy, now)
            .await;
        if bucket.get(REBALANCE_CANCEL_KEY).await?.is_some() {
            if self.status.in_progress {
                info!(run = self.status.run, "rebalance cancelled");
                self.plan.clear();
                self.status.phase = RebalancePhase::Cancelled;
                self.status.reason = format!("{} (cancelled)", self.status.reason);
            }
            self.trigger = None;
            bucket.delete(REBALANCE_CANCEL_KEY, None).await?;
        }
        let draining = !bucket.keys("drain.").await?.is_empty();
        let paused = auto::pause_reason(
            &members,
            draining,
            || in_any_window(&policy.maintenance_windows, wall),
            config.enabled,
        )?;
        self.status.paused = paused.clone();
        if !config.enabled {
            // Triggers seen while disabled do not fire later.
            self.trigger = None;
        }
        if !self.status.in_progress && config.enabled {
            self.collect_triggers(&config, &members, now, wall);
            let cooling = auto::cooling(
                self.run_ended.map(|t| now.duration_since(t)),
                Duration::from_millis(config.cooldown_period_ms),
            );
            if self.trigger.is_some() && paused.is_none() && !cooling {
                self.start_run(shared, bucket, planner, &config, wall)
                    .await?;
            }
        }
        if self.status.in_progress && paused.is_none() {
            self.start_moves(shared, &started, bucket, &members, &config, &policy, now)
                .await?;
        }
        if self.status.in_progress && self.plan.is_empty() && self.active.is_empty() {
            if self.status.phase == RebalancePhase::Running {
                self.status.phase = RebalancePhase::Completed;
            }
            self.status.in_progress = false;
            self.status.awaiting_approval.clear();
            self.run_ended = Some(now);
            info!(
                run = self.status.run,
                completed = self.status.completed,
                total = self.status.total,
                "rebalance finished"
            );
        }
        self.publish(shared, bucket, &config, &policy, election, now, wall)
            .await
    }

    fn detect_membership(&mut self, members: &MemberMap, config: &AutoRebalanceConfig) {
        let nodes: BTreeSet<NodeId> = members.keys().cloned().collect();
        if let Some(trigger) =
            auto::membership_trigger(self.known.as_ref(), &nodes, &config.triggers)
        {
            self.trigger = Some(trigger);
        }
        self.known = Some(nodes);
    }

    fn collect_triggers(
        &mut self,
        config: &AutoRebalanceConfig,
        members: &MemberMap,
        now: Instant,
        wall: SystemTime,
    ) {
        let mut schedule_fired = false;
        if !config.triggers.schedule.is_empty() {
            match CronSchedule::parse(&config.triggers.schedule) {
                Ok(s) => schedule_fired = s.fires_between(self.last_cron, wall),
                Err(e) => warn!(error = %e, "ignoring the auto-rebalance schedule"),
            }
        }
        if self.trigger.is_none() {
            let loads: Vec<NodeLoad> = members.values().filter_map(|m| m.load).collect();
            let since_last_eval = self.last_eval.map(|t| now.duration_since(t));
            self.trigger = auto::timed_trigger(config, since_last_eval, &loads, schedule_fired);
        }
        self.last_cron = wall;
    }

    async fn start_run(
        &mut self,
        shared: &Arc<Shared>,
        bucket: &dyn KvBucket,
        planner: &dyn Planner,
        config: &AutoRebalanceConfig,
        wall: SystemTime,
    ) -> Result<()> {
        let reason = self.trigger.take().unwrap_or_default();
        self.last_eval = Some(Instant::now());
        let gathered = super::gather_plan_request(shared, bucket).await?;
        let plan = planner.rebalance_with(&gathered.request, &auto::options(config))?;
        let steps = auto::runnable(plan.migrations, config);
        if steps.is_empty() {
            debug!(
                reason,
                imbalance = plan.imbalance_before,
                "balanced; nothing to do"
            );
            return Ok(());
        }
        info!(
            reason,
            steps = steps.len(),
            imbalance = plan.imbalance_before,
            "rebalance started"
        );
        let s = &mut self.status;
        s.run += 1;
        s.in_progress = true;
        s.phase = RebalancePhase::Running;
        s.completed = 0;
        s.total = steps.len();
        s.migrations = steps.clone();
        s.failed.clear();
        s.awaiting_approval.clear();
        s.last_run_ms = to_ms(wall);
        s.reason = reason;
        s.imbalance = plan.imbalance_before;
        self.plan = steps.into();
        Ok(())
    }

    /// Follows the migrations in flight: completion, timeout and rollback.
    async fn track(
        &mut self,
        shared: &Shared,
        started: &Started,
        bucket: &dyn KvBucket,
        members: &MemberMap,
        policy: &MigrationPolicy,
        now: Instant,
    ) {
        let timeout = Duration::from_millis(policy.migration_timeout_ms);
        let mut still = Vec::new();
        for mut a in std::mem::take(&mut self.active) {
            if auto::done(members, &a.step) {
                let _ = bucket.delete(&move_key(&a.step.app), None).await;
                if let Some(l) = a.lock.take() {
                    l.release().await;
                }
                if !a.rollback {
                    self.status.completed += 1;
                }
                info!(app = %a.step.app, rollback = a.rollback, "auto-rebalance migration done");
                continue;
            }
            if now < a.started + timeout {
                if a.lock.is_none() {
                    a.lock = take_over(shared, started, bucket, &a.step).await;
                }
                still.push(a);
                continue;
            }
            let _ = bucket.delete(&move_key(&a.step.app), None).await;
            let mut reason = auto::timeout_reason(timeout);
            let reached = auto::reached_target(members, &a.step);
            let outcome = auto::timed_out(&a.step, a.rollback, policy, reached);
            let suffix = outcome.suffix();
            match outcome {
                TimedOut::MoveBack(back) => {
                    let fence = a.lock.as_ref().map_or(0, MigrationLock::fence);
                    if write_move(bucket, &back, None, fence).await.is_ok() {
                        reason.push_str(suffix);
                        still.push(Active {
                            step: back,
                            started: now,
                            rollback: true,
                            lock: a.lock.take(),
                        });
                    }
                }
                _ => reason.push_str(suffix),
            }
            if let Some(l) = a.lock.take() {
                l.release().await;
            }
            warn!(app = %a.step.app, reason, "auto-rebalance migration failed");
            self.status.failed.push(FailedMigration {
                migration: a.step,
                reason,
            });
        }
        self.active = still;
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_moves(
        &mut self,
        shared: &Shared,
        started: &Started,
        bucket: &dyn KvBucket,
        members: &MemberMap,
        config: &AutoRebalanceConfig,
        policy: &MigrationPolicy,
        now: Instant,
    ) -> Result<()> {
        let assignment: Option<AssignmentRecord> = read(bucket, ASSIGNMENT_KEY).await?;
        self.status.awaiting_approval.clear();
        self.status.deferred.clear();
        let mut i = 0;
        while i < self.plan.len() && self.active.len() < config.max_concurrent.max(1) {
            let step = self.plan[i].clone();
            let app = &step.app;
            let busy = self.active.iter().any(|a| &a.step.app == app);
            let recent: Vec<(AppName, Duration)> = self
                .recent
                .iter()
                .map(|(a, t)| (a.clone(), now.duration_since(*t)))
                .collect();
            match auto::admit(app, busy, &recent, policy) {
                Admission::Go => {}
                Admission::Skip => {
                    i += 1;
                    continue;
                }
                Admission::Stop => break,
            }
            // Still valid? (the plan may be stale after failures or operator moves)
            let placed = assignment
                .as_ref()
                .and_then(|r| r.assignment.apps.get(app))
                .map(|p| p.nodes.clone())
                .unwrap_or_default();
            if !auto::still_valid(&step, &placed) {
                debug!(%app, "dropping a stale rebalance step");
                self.plan.remove(i);
                self.status.total = self.status.total.saturating_sub(1);
                continue;
            }
            if bucket.get(&move_key(app)).await?.is_some() {
                i += 1;
                continue;
            }
            if let Some(reason) = auto::over_load_threshold(members, &step, policy.load_threshold) {
                debug!(%app, reason, "rebalance step deferred");
                self.status.deferred.push(DeferredMigration {
                    migration: step,
                    reason,
                });
                i += 1;
                continue;
            }
            if policy.require_approval {
                let key = approve_key(app);
                if bucket.get(&key).await?.is_none() {
                    self.status.awaiting_approval.push(step);
                    i += 1;
                    continue;
                }
                bucket.delete(&key, None).await?;
            }
            // Another migration of the app (an operator's move, a drain) is in progress: the
            // step waits for it.
            let lock = match MigrationLock::acquire(shared, started, app, "rebalance").await {
                Ok(lock) => lock,
                Err(Error::LockHeld { holder }) => {
                    debug!(%app, ?holder, "migration lock held elsewhere; the rebalance step waits");
                    let reason = format!(
                        "another migration of {app} holds its migration lock ({})",
                        holder.unwrap_or_default()
                    );
                    self.status.deferred.push(DeferredMigration {
                        migration: step,
                        reason,
                    });
                    i += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Err(e) = write_move(bucket, &step, Some(&shared.node), lock.fence()).await {
                lock.release().await;
                return Err(e);
            }
            info!(%app, from = ?step.from, to = ?step.to, "auto-rebalance migration started");
            self.plan.remove(i);
            self.recent.push((app.clone(), now));
            self.active.push(Active {
                step,
                started: now,
                rollback: false,
                lock: Some(lock),
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn publish(
        &mut self,
        shared: &Shared,
        bucket: &dyn KvBucket,
        config: &AutoRebalanceConfig,
        policy: &MigrationPolicy,
        election: &dyn Election,
        now: Instant,
        wall: SystemTime,
    ) -> Result<()> {
        let keep = auto::retention(config, policy);
        self.recent.retain(|(_, t)| now < *t + keep);
        self.status.v = PLACEMENT_RECORD_VERSION;
        self.status.active = self.active.iter().map(|a| a.step.clone()).collect();
        self.status.recent = self
            .recent
            .iter()
            .map(|(app, t)| RecentMigration {
                app: app.clone(),
                at_ms: to_ms(wall.checked_sub(now - *t).unwrap_or(wall)),
            })
            .collect();
        self.status.controller = Some(shared.node.clone());
        let changed = self.written.as_ref().is_none_or(|w| {
            let mut a = w.clone();
            let mut b = self.status.clone();
            a.recent.clear();
            b.recent.clear();
            a != b || w.recent.len() != self.status.recent.len()
        });
        if changed && election.fencing_token().is_some() {
            bucket
                .put(REBALANCE_STATUS_KEY, encode(&self.status)?)
                .await?;
            self.written = Some(self.status.clone());
        }
        Ok(())
    }
}

async fn write_move(
    bucket: &dyn KvBucket,
    step: &PlannedMigration,
    by: Option<&NodeId>,
    lock: u64,
) -> Result<()> {
    let (Some(from), Some(to)) = (&step.from, &step.to) else {
        return Ok(());
    };
    let record = MoveRecord {
        v: PLACEMENT_RECORD_VERSION,
        id: uuid::Uuid::new_v4().simple().to_string(),
        from: from.clone(),
        to: Some(to.clone()),
        by: by.cloned().unwrap_or_else(|| to.clone()),
        lock,
    };
    bucket.put(&move_key(&step.app), encode(&record)?).await?;
    Ok(())
}

/// A step inherited from a previous controller: take its migration lock over once the old
/// holder's lock is gone, and re-stamp the move record with the new fencing token so agents
/// keep acting on it. `None` while the old lock is still held.
async fn take_over(
    shared: &Shared,
    started: &Started,
    bucket: &dyn KvBucket,
    step: &PlannedMigration,
) -> Option<MigrationLock> {
    let lock = MigrationLock::try_acquire(shared, started, &step.app, "rebalance")
        .await
        .ok()??;
    let key = move_key(&step.app);
    match bucket.get(&key).await {
        Ok(Some(entry)) => {
            if let Ok(mut record) = decode::<MoveRecord>("move", &entry.value) {
                record.lock = lock.fence();
                if let Ok(value) = encode(&record) {
                    let _ = bucket.update(&key, value, entry.revision, None).await;
                }
            }
        }
        // Removed as stale meanwhile (its lock had expired): issue it again.
        Ok(None) => {
            let _ = write_move(bucket, step, Some(&shared.node), lock.fence()).await;
        }
        Err(_) => {}
    }
    info!(app = %step.app, "took over an inherited rebalance step");
    Some(lock)
}
