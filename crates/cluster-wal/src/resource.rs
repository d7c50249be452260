//! WAL replication as an [`ActiveResource`] of a Singleton app.
//!
//! ```text
//! let (wal, db) = WithSqlite::new("data/app.db").node_id("n1")
//!     .snapshot_interval(Duration::from_secs(3600)).retention(3, None)
//!     .start(log, store).await?;            // this node follows the log as a standby
//! app.add_resource(wal, RetryPolicy::default());
//! // in handlers, with the term's fencing token:
//! db.write(token, |c| c.execute("INSERT …", [])).await?;
//! // or the async sqlx API on the same replica (see `crate::pool`):
//! let mut tx = db.pool().begin(token).await?;
//! sqlx::query("INSERT …").execute(&mut *tx).await?;
//! tx.commit().await?;
//! ```
//!
//! * `activate(epoch)`: stop following, catch up to the log tail, append `EpochStart` with the
//!   expected last sequence (the fence), TRUNCATE-checkpoint, verify the checksum,
//!   `quick_check`, and start the leader (capture + shipping); on an empty log, bootstrap a new
//!   lineage instead. Then writes with this epoch's token are accepted and scheduled snapshots
//!   run.
//! * `deactivate`: refuse writes at once (the commit gate), ship and wait (bounded) for the
//!   acknowledgements, record the shipped position, and follow the log as a standby again.
//! * [`WalDb`] is the app's handle: writes need the current term's token (checked against the
//!   resource's epoch and, when set, the app's own `check_epoch`); reads work on every node
//!   through read-only connections.
//! * [`WalDb::pool`] is the sqlx pool on the replica ([`crate::pool::WalPool`]): fenced write
//!   transactions on the leader, read-only on standbys, following role changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::ActiveResource;
use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_core::{Epoch, Error};
use rusqlite::Connection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::apply::StandbyOptions;
use crate::blocked::{Blocker, PromotionBlock};
use crate::error::{ErrorKind, Result, WalError};
use crate::follower::{Follower, FollowerConfig, FollowerProgress};
use crate::leader::{Durability, Leader, LeaderProgress};
use crate::metrics;
use crate::position::{self, Position};
use crate::promote::{PromoteConfig, bootstrap, promote};
use crate::snapshot::{self, Retention, SnapshotMeta};

/// Builder of a [`WalResource`] for one SQLite database.
#[derive(Debug, Clone)]
pub struct WithSqlite {
    pub(crate) path: PathBuf,
    pub(crate) node_id: String,
    snapshot_interval: Option<Duration>,
    retention: Retention,
    durability: Durability,
    standby: StandbyOptions,
    catch_up_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    poll_interval: Duration,
    checkpoint_frames: u64,
    metrics_name: Option<String>,
    pool_connections: u32,
    pub(crate) audit: Option<Arc<dyn crate::audit::WalAudit>>,
    ready_max_lag: u64,
}

impl WithSqlite {
    /// Replication of the database at `path` (the local replica on this node). Defaults: node
    /// id `node`, no scheduled snapshots, retention 3 snapshots without age limit, async
    /// durability, 30 s catch-up budget, 1 s stop budget.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            node_id: "node".to_owned(),
            snapshot_interval: None,
            retention: Retention::default(),
            durability: Durability::Async,
            standby: StandbyOptions::default(),
            catch_up_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(25),
            checkpoint_frames: 1000,
            metrics_name: None,
            pool_connections: 4,
            audit: None,
            ready_max_lag: 100,
        }
    }

    /// The path of the local replica.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This node's id (written into the records it ships).
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = node_id.into();
        self
    }

    /// Takes and publishes a snapshot this often while leader (then trims the log).
    pub fn snapshot_interval(mut self, every: Duration) -> Self {
        self.snapshot_interval = Some(every);
        self
    }

    /// Keeps at most `count` snapshots, none older than `max_age` (the newest is always kept).
    pub fn retention(mut self, count: usize, max_age: Option<Duration>) -> Self {
        self.retention = Retention {
            count: count.max(1),
            max_age,
        };
        self
    }

    /// Durability of [`WalDb::write`] (commit-wait: return after the log acknowledged).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Standby apply options.
    pub fn standby_options(mut self, options: StandbyOptions) -> Self {
        self.standby = options;
        self
    }

    /// How long activation waits for the standby to reach the log tail before promoting (the
    /// promotion then applies the rest itself).
    pub fn catch_up_timeout(mut self, timeout: Duration) -> Self {
        self.catch_up_timeout = timeout;
        self
    }

    /// How long deactivation waits for the leader to ship what it captured (keep it within
    /// `ε·TTL` of the election, see ARCHITECTURE.md).
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The `db` label of the metrics (default: the file stem).
    pub fn metrics_name(mut self, name: impl Into<String>) -> Self {
        self.metrics_name = Some(name.into());
        self
    }

    /// Where promotion, divergence and restore events are audited (the app itself, for its
    /// platform's audit stream: `.audit(Arc::new(app.clone()))`; `cluster::sqlite::attach`
    /// sets it). Without it they are only logged.
    pub fn audit(mut self, audit: Arc<dyn crate::audit::WalAudit>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// A standby is ready to take over in a planned migration (a move or drain hands
    /// leadership only to a ready standby) when its last lag sample is at most this many
    /// transactions and it has no unresolved apply error (default 100).
    pub fn ready_max_lag(mut self, transactions: u64) -> Self {
        self.ready_max_lag = transactions;
        self
    }

    /// Maximum connections of the app's sqlx pool ([`WalDb::pool`]), per role (default 4).
    pub fn pool_max_connections(mut self, max: u32) -> Self {
        self.pool_connections = max.max(1);
        self
    }

    /// Starts following the log as a standby and returns the resource (add it to the app) and
    /// the app-facing handle.
    pub async fn start(
        self,
        log: Arc<dyn ReplicatedLog>,
        store: Arc<dyn ObjectStore>,
    ) -> Result<(Arc<WalResource>, WalDb)> {
        metrics::describe();
        let (role_tx, _) = watch::channel(WalRole::Standby);
        let pool = Arc::new(crate::pool::Shared::new(self.pool_connections));
        let inner = Arc::new(Inner {
            pool,
            cfg: self,
            log,
            store,
            state: tokio::sync::Mutex::new(State::Stopped),
            views: RwLock::new(Views::default()),
            role: role_tx,
            last_snapshot_us: AtomicU64::new(0),
            blocker: Blocker::default(),
        });
        let follower = inner.start_follower()?;
        *inner.state.lock().await = State::Standby(follower);
        Ok((
            Arc::new(WalResource {
                inner: inner.clone(),
            }),
            WalDb { inner },
        ))
    }
}

/// The role of the local replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalRole {
    /// Following the log; read-only.
    Standby,
    /// Leading under this epoch; writable with its token.
    Leader(Epoch),
    /// Stopped (after [`WalResource::shutdown`]).
    Stopped,
}

/// A snapshot of the replication state of the local replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStatus {
    /// The role.
    pub role: WalRole,
    /// Standby progress while following.
    pub standby: Option<FollowerProgress>,
    /// Shipping progress while leading.
    pub leader: Option<LeaderProgress>,
    /// Set while a failed promotion keeps this node from standing for leadership.
    pub promotion_blocked: Option<PromotionBlock>,
}

pub(crate) type EpochCheck = Arc<dyn Fn(Epoch) -> cluster_core::Result<()> + Send + Sync>;

#[derive(Default)]
pub(crate) struct Views {
    pub(crate) active: Option<(Epoch, Arc<Leader>)>,
    follower: Option<watch::Receiver<FollowerProgress>>,
    epoch_check: Option<EpochCheck>,
}

pub(crate) enum State {
    Stopped,
    Standby(Follower),
    Leader {
        epoch: Epoch,
        leader: Arc<Leader>,
        snapshots: Option<JoinHandle<()>>,
    },
}

pub(crate) struct Inner {
    pub(crate) cfg: WithSqlite,
    pub(crate) log: Arc<dyn ReplicatedLog>,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) state: tokio::sync::Mutex<State>,
    views: RwLock<Views>,
    pub(crate) role: watch::Sender<WalRole>,
    /// `created_us` of the newest snapshot seen (for the age metric).
    last_snapshot_us: AtomicU64,
    /// The app's sqlx pools ([`WalDb::pool`]).
    pool: Arc<crate::pool::Shared>,
    /// Set by a promotion that failed for a reason that repeats.
    blocker: Blocker,
}

impl Inner {
    fn views(&self) -> std::sync::RwLockReadGuard<'_, Views> {
        self.views.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn views_mut(&self) -> std::sync::RwLockWriteGuard<'_, Views> {
        self.views.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn metrics_name(&self) -> String {
        self.cfg
            .metrics_name
            .clone()
            .unwrap_or_else(|| metrics::name_of(&self.cfg.path))
    }

    /// The promotion block, lifted (audited, gauge 0) when the standby restored a snapshot
    /// since it was set.
    pub(crate) fn promotion_block(&self) -> Option<PromotionBlock> {
        let restores = self.views().follower.as_ref().map(|p| p.borrow().restores);
        let (current, lifted) = self.blocker.current(restores);
        if let Some(b) = lifted {
            self.unblocked(&b, "the standby re-synced from a snapshot");
        }
        current
    }

    /// Lifts the promotion block (operator action); `true` when there was one.
    pub(crate) fn clear_promotion_block(&self, why: &str) -> bool {
        match self.blocker.clear() {
            Some(b) => {
                self.unblocked(&b, why);
                true
            }
            None => false,
        }
    }

    fn unblocked(&self, b: &PromotionBlock, why: &str) {
        tracing::info!(reason = %b.reason, why, "promotion unblocked");
        metrics::set(metrics::PROMOTION_BLOCKED, &self.metrics_name(), 0.0);
        crate::audit::emit(
            self.cfg.audit.as_ref(),
            crate::audit::PROMOTION_UNBLOCKED,
            serde_json::json!({
                "db": self.metrics_name(),
                "blocked_by": b.reason,
                "epoch": b.epoch,
                "why": why,
            }),
        );
    }

    fn block(&self, e: &WalError, epoch: Epoch) {
        let reason = e.to_string();
        tracing::error!(%epoch, %reason, "promotion failed for a reason that repeats; this node stops standing for leadership until the standby re-syncs or an operator clears it");
        metrics::set(metrics::PROMOTION_BLOCKED, &self.metrics_name(), 1.0);
        crate::audit::emit(
            self.cfg.audit.as_ref(),
            crate::audit::PROMOTION_BLOCKED,
            serde_json::json!({
                "db": self.metrics_name(),
                "epoch": epoch.get(),
                "error": reason,
            }),
        );
        self.blocker.set(PromotionBlock {
            reason,
            epoch: epoch.get(),
            since_us: crate::sqlite::now_us(),
            // Called right after a new follower started: its restores since start.
            restores: 0,
        });
    }

    fn start_follower(&self) -> Result<Follower> {
        self.start_follower_with(false)
    }

    fn start_follower_with(&self, resync: bool) -> Result<Follower> {
        let mut fc = FollowerConfig::new(&self.cfg.path);
        fc.resync = resync;
        fc.options = self.cfg.standby;
        fc.metrics_name = self.metrics_name();
        fc.restore_fence = Some(self.pool.clone());
        fc.audit = self.cfg.audit.clone();
        let f = Follower::start(fc, self.log.clone(), self.store.clone())?;
        self.views_mut().follower = Some(f.subscribe());
        self.role.send_replace(WalRole::Standby);
        Ok(f)
    }

    /// Standby → leader for `epoch`.
    async fn promote_from(&self, follower: Follower, epoch: Epoch) -> Result<Leader> {
        self.views_mut().follower = None;
        let state = self.log.state().await?;
        if state.last_seq == 0 {
            drop(follower.stop().await?);
            tracing::info!(db = %self.cfg.path.display(), %epoch, "empty log: bootstrapping a new lineage");
            return bootstrap(
                &self.cfg.path,
                self.cfg.node_id.clone(),
                epoch.get(),
                self.log.clone(),
                self.store.clone(),
            )
            .await;
        }
        let tail = state.last_seq;
        let caught_up = tokio::time::timeout(
            self.cfg.catch_up_timeout,
            follower.wait_for(|p| p.position.stream_seq >= tail),
        )
        .await;
        if caught_up.is_err() {
            tracing::warn!(tail, progress = ?follower.progress(), "standby did not reach the log tail in time; promoting anyway");
        }
        let mut pc = PromoteConfig::new(self.cfg.node_id.clone(), epoch.get());
        pc.poll_interval = self.cfg.poll_interval;
        pc.checkpoint_frames = self.cfg.checkpoint_frames;
        promote(follower, self.log.clone(), pc).await
    }

    fn spawn_snapshots(self: &Arc<Self>, leader: Arc<Leader>) -> Option<JoinHandle<()>> {
        let every = self.cfg.snapshot_interval?;
        let inner = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            // A 1 s tick refreshes the snapshot-age metric; a snapshot is due `every` after the
            // previous one (or after the start of the term).
            let mut tick = tokio::time::interval(every.min(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut due = tokio::time::Instant::now() + every;
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else { return };
                if leader.progress().stopped.is_some() {
                    return;
                }
                if tokio::time::Instant::now() >= due {
                    due = tokio::time::Instant::now() + every;
                    if let Err(e) = inner.snapshot_on(&leader).await {
                        tracing::warn!(error = %e, "scheduled snapshot failed");
                    }
                }
                inner.report_snapshot_age();
            }
        }))
    }

    fn report_snapshot_age(&self) {
        let last = self.last_snapshot_us.load(Ordering::Relaxed);
        if last > 0 {
            let age = crate::sqlite::now_us().saturating_sub(last);
            metrics::set(
                metrics::SNAPSHOT_AGE_SECONDS,
                &self.metrics_name(),
                age as f64 / 1e6,
            );
        }
    }

    async fn snapshot_on(&self, leader: &Leader) -> Result<SnapshotMeta> {
        let snap = leader.snapshot().await?;
        let kept = snapshot::publish_with_retention(
            self.store.as_ref(),
            self.log.as_ref(),
            &snap,
            self.cfg.retention,
        )
        .await?;
        metrics::add(metrics::SNAPSHOTS, &self.metrics_name(), 1);
        self.last_snapshot_us
            .fetch_max(snap.meta.created_us, Ordering::Relaxed);
        self.report_snapshot_age();
        tracing::info!(
            txid = snap.meta.txid,
            seq = snap.meta.stream_seq,
            kept = kept.len(),
            "snapshot published"
        );
        Ok(snap.meta)
    }

    async fn activate(self: &Arc<Self>, epoch: Epoch) -> Result<()> {
        let mut st = self.state.lock().await;
        if let State::Leader { epoch: e, .. } = &*st {
            if *e == epoch {
                return Ok(());
            }
            if *e > epoch {
                return Err(WalError::NotWritable(format!(
                    "activation with epoch {epoch} older than the current {e}"
                )));
            }
            self.demote(&mut st).await?;
        }
        if let Some(b) = self.promotion_block() {
            // Refused without touching the log: no EpochStart, no catch-up.
            return Err(WalError::NotWritable(format!(
                "promotion blocked since epoch {}: {}",
                b.epoch, b.reason
            )));
        }
        let follower = match std::mem::replace(&mut *st, State::Stopped) {
            State::Standby(f) => f,
            _ => self.start_follower()?,
        };
        let started = std::time::Instant::now();
        match self.promote_from(follower, epoch).await {
            Ok(leader) => {
                let info = leader.start_info();
                crate::audit::emit(
                    self.cfg.audit.as_ref(),
                    crate::audit::PROMOTED,
                    serde_json::json!({
                        "db": self.metrics_name(),
                        "epoch": epoch.get(),
                        "lineage": info.lineage.to_string(),
                        "base_txid": info.base_txid,
                        "ms": started.elapsed().as_millis() as u64,
                    }),
                );
                let leader = Arc::new(leader);
                let snapshots = self.spawn_snapshots(leader.clone());
                self.views_mut().active = Some((epoch, leader.clone()));
                self.role.send_replace(WalRole::Leader(epoch));
                *st = State::Leader {
                    epoch,
                    leader,
                    snapshots,
                };
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, %epoch, "promotion failed; following the log again");
                crate::audit::emit(
                    self.cfg.audit.as_ref(),
                    crate::audit::PROMOTION_FAILED,
                    serde_json::json!({
                        "db": self.metrics_name(),
                        "epoch": epoch.get(),
                        "error": e.to_string(),
                    }),
                );
                metrics::add(metrics::PROMOTION_FAILURES, &self.metrics_name(), 1);
                *st = State::Standby(self.start_follower()?);
                if crate::blocked::repeats(&e) {
                    self.block(&e, epoch);
                }
                Err(e)
            }
        }
    }

    /// Operator re-sync of a standby (works without a leader): with `publish`, this replica
    /// becomes the newest snapshot (taken between transactions at its position) for the others
    /// to restore; otherwise the standby restores the newest snapshot and replays. Either way the
    /// promotion block is lifted.
    async fn resync(&self, publish: bool) -> Result<serde_json::Value> {
        let mut st = self.state.lock().await;
        let State::Standby(follower) = &*st else {
            return Err(WalError::NotWritable(
                "this node leads the database: use `cluster snapshot restore` instead".into(),
            ));
        };
        let published = if publish {
            let snap = follower.snapshot().await?;
            snapshot::publish_with_retention(
                self.store.as_ref(),
                self.log.as_ref(),
                &snap,
                self.cfg.retention,
            )
            .await?;
            Some(snap.meta)
        } else {
            if let State::Standby(f) = std::mem::replace(&mut *st, State::Stopped) {
                drop(f.stop().await?);
            }
            *st = State::Standby(self.start_follower_with(true)?);
            None
        };
        drop(st);
        let was_blocked = self.clear_promotion_block("operator resync");
        let data = serde_json::json!({
            "db": self.metrics_name(),
            "published": published.as_ref().map(SnapshotMeta::id),
            "txid": published.as_ref().map(|m| m.txid),
            "restoring": !publish,
            "was_blocked": was_blocked,
        });
        crate::audit::emit(self.cfg.audit.as_ref(), crate::audit::RESYNC, data.clone());
        Ok(data)
    }

    /// Leader → standby (the caller holds the state lock).
    async fn demote(&self, st: &mut State) -> Result<()> {
        if let State::Leader {
            leader, snapshots, ..
        } = std::mem::replace(st, State::Stopped)
        {
            leader.gate().revoke();
            self.views_mut().active = None;
            if let Some(t) = snapshots {
                t.abort();
            }
            let p = match tokio::time::timeout(self.cfg.stop_timeout, leader.stop()).await {
                Ok(p) => p,
                Err(_) => {
                    tracing::warn!(
                        "leader did not stop in time; its unshipped commits will be discarded"
                    );
                    leader.progress()
                }
            };
            let start = leader.start_info();
            // The shipped position; the standby verifies it against the database checksum and
            // searches the log (or restores a snapshot) when they differ.
            let pos = Position {
                lineage: Some(start.lineage),
                epoch: start.epoch,
                txid: p.acked_txid,
                checksum: p.acked_checksum,
                stream_seq: p.acked_seq,
                ..Position::empty()
            };
            position::store(&self.cfg.path, &pos, true)?;
            if p.captured_txid > p.acked_txid {
                tracing::warn!(
                    unshipped = p.captured_txid - p.acked_txid,
                    "stepping down with unacknowledged transactions"
                );
            }
        }
        *st = State::Standby(self.start_follower()?);
        Ok(())
    }
}

/// SQLite WAL replication as an [`ActiveResource`] (name `wal`). See the module docs.
pub struct WalResource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WalResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalResource")
            .field("db", &self.inner.cfg.path)
            .field("role", &*self.inner.role.borrow())
            .finish()
    }
}

impl WalResource {
    /// Stops leading or following (on platform shutdown).
    pub async fn shutdown(&self) {
        let mut st = self.inner.state.lock().await;
        match std::mem::replace(&mut *st, State::Stopped) {
            State::Leader {
                leader, snapshots, ..
            } => {
                leader.gate().revoke();
                if let Some(t) = snapshots {
                    t.abort();
                }
                leader.stop().await;
            }
            State::Standby(f) => {
                let _ = f.stop().await;
            }
            State::Stopped => {}
        }
        let mut v = self.inner.views_mut();
        v.active = None;
        v.follower = None;
        drop(v);
        self.inner.pool.close();
        self.inner.role.send_replace(WalRole::Stopped);
    }
}

pub(crate) fn to_core(e: WalError) -> Error {
    match e {
        WalError::Log(e) => e,
        WalError::NotLeader(_) => Error::NotLeader {
            leader: None,
            epoch: None,
        },
        e if e.kind() == ErrorKind::Retryable => Error::Unavailable(e.to_string()),
        e => Error::Internal(format!("wal: {e}")),
    }
}

#[async_trait]
impl ActiveResource for WalResource {
    fn name(&self) -> &str {
        "wal"
    }

    /// A standby is ready when its replica is within `ready_max_lag` transactions of the log
    /// tail (sampled every second) without an unresolved apply error; a leader is ready; a
    /// stopped replica (restore, shutdown) is not.
    fn standby_ready(&self) -> bool {
        if self.inner.promotion_block().is_some() {
            return false;
        }
        let views = self.inner.views();
        match &views.follower {
            Some(progress) => {
                let p = progress.borrow();
                p.lag_sampled
                    && p.last_error.is_none()
                    && p.lag_txns <= self.inner.cfg.ready_max_lag
            }
            None => views.active.is_some(),
        }
    }

    /// The reason of the promotion block (see [`crate::blocked`]), or, on a leader that
    /// stopped shipping (capture failed, or fenced), why: the runtime's candidacy watcher then
    /// resigns the lease, so the backend (an external writer whose commits can no longer be
    /// shipped) stops and a standby takes over, instead of the term going on losing every write.
    /// Once demoted, the node stands again.
    fn leadership_blocked(&self) -> Option<String> {
        if let Some((_, leader)) = &self.inner.views().active
            && let Some(reason) = leader.progress().stopped
        {
            return Some(format!("the database leader stopped shipping: {reason}"));
        }
        self.inner.promotion_block().map(|b| b.reason)
    }

    async fn activate(&self, epoch: Epoch) -> cluster_core::Result<()> {
        self.inner.activate(epoch).await.map_err(to_core)
    }

    async fn deactivate(&self) -> cluster_core::Result<()> {
        let mut st = self.inner.state.lock().await;
        match &*st {
            State::Standby(_) => Ok(()),
            _ => self.inner.demote(&mut st).await.map_err(to_core),
        }
    }
}

/// The app's handle on the replicated database.
#[derive(Clone)]
pub struct WalDb {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WalDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalDb")
            .field("db", &self.inner.cfg.path)
            .finish()
    }
}

impl WalDb {
    /// The local replica's file.
    pub fn path(&self) -> &Path {
        &self.inner.cfg.path
    }

    /// Adds the app's own token check to every write (typically
    /// `move |e| app.check_epoch(e)`, which also fails once the lease lapsed).
    pub fn set_epoch_check(
        &self,
        check: impl Fn(Epoch) -> cluster_core::Result<()> + Send + Sync + 'static,
    ) {
        self.inner.views_mut().epoch_check = Some(Arc::new(check));
    }

    /// The epoch this node leads the database under (`None` while standby).
    pub fn epoch(&self) -> Option<Epoch> {
        self.inner.views().active.as_ref().map(|(e, _)| *e)
    }

    /// The current role.
    pub fn role(&self) -> WalRole {
        *self.inner.role.borrow()
    }

    /// A watch of the role.
    pub fn role_watch(&self) -> watch::Receiver<WalRole> {
        self.inner.role.subscribe()
    }

    /// Role and progress.
    pub fn status(&self) -> WalStatus {
        let v = self.inner.views();
        WalStatus {
            role: *self.inner.role.borrow(),
            standby: v.follower.as_ref().map(|r| r.borrow().clone()),
            leader: v.active.as_ref().map(|(_, l)| l.progress()),
            promotion_blocked: {
                drop(v);
                self.inner.promotion_block()
            },
        }
    }

    /// Re-syncs this standby without needing a leader (see `docs/architecture/cluster-wal.md`,
    /// "Recovery without a leader"): with `publish`, this replica is published as the newest
    /// snapshot (the source of a re-sync); without, the standby restores the newest snapshot
    /// and replays the log. Lifts the promotion block; audited as `wal.resync`. Refused on the
    /// leader.
    pub async fn resync(&self, publish: bool) -> Result<serde_json::Value> {
        self.inner.resync(publish).await
    }

    /// Lifts a promotion block (operator action, audited): this node stands for leadership
    /// again. Returns whether there was one. Use it once the cause is fixed (the standby's file
    /// replaced or re-synced); a promotion that fails the same way blocks again.
    pub fn clear_promotion_block(&self) -> bool {
        self.inner.clear_promotion_block("operator action")
    }

    /// The app-facing sqlx pool on this database (see [`crate::pool`]): token-checked write
    /// transactions on the leader, read-only queries on standbys; it follows role changes.
    /// Every call returns a handle on the same connections.
    ///
    /// ```no_run
    /// # async fn example(db: cluster_wal::WalDb, token: cluster_core::Epoch) -> cluster_wal::Result<()> {
    /// let pool = db.pool();
    /// let mut tx = pool.begin(token).await?;
    /// cluster_wal::sqlx::query("UPDATE counters SET n = n + 1").execute(&mut *tx).await?;
    /// tx.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool(&self) -> crate::pool::WalPool {
        crate::pool::WalPool::new(self.clone(), self.inner.pool.clone())
    }

    /// The term this node leads and its leader, when leading.
    pub(crate) fn active(&self) -> Option<(Epoch, Arc<Leader>)> {
        self.inner.views().active.clone()
    }

    /// The app's epoch check, when set.
    pub(crate) fn epoch_check(&self) -> Option<EpochCheck> {
        self.inner.views().epoch_check.clone()
    }

    /// The configured durability of writes.
    pub(crate) fn durability(&self) -> Durability {
        self.inner.cfg.durability
    }

    pub(crate) fn leader_for(&self, token: Epoch) -> Result<Arc<Leader>> {
        let (active, check) = {
            let v = self.inner.views();
            (v.active.clone(), v.epoch_check.clone())
        };
        let Some((epoch, leader)) = active else {
            return Err(WalError::NotWritable(
                "this node does not lead the database (standby)".into(),
            ));
        };
        if epoch != token {
            return Err(WalError::NotWritable(format!(
                "stale fencing token {token}: the database is led under epoch {epoch}"
            )));
        }
        if let Some(check) = check {
            check(token)
                .map_err(|e| WalError::NotWritable(format!("fencing token refused: {e}")))?;
        }
        Ok(leader)
    }

    /// Runs `f` on the writer connection under the term `token` with the configured
    /// durability; refused (`NotWritable`, kind `Fenced`) unless `token` is the epoch this node
    /// leads under and the app's check (if set) accepts it.
    pub async fn write<T, F>(&self, token: Epoch, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let d = self.inner.cfg.durability;
        self.write_with(token, d, f).await.map(|(v, _)| v)
    }

    /// [`WalDb::write`] with an explicit durability; also returns the txid of the commit.
    pub async fn write_with<T, F>(
        &self,
        token: Epoch,
        durability: Durability,
        f: F,
    ) -> Result<(T, u64)>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let leader = self.leader_for(token)?;
        leader.write(durability, f).await
    }

    /// Runs `f` on a fresh read-only connection (leader or standby). Waits while the standby
    /// restores a snapshot (and a restore waits for running reads).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.inner.cfg.path.clone();
        // Held while the connection is open: a standby snapshot restore waits for it.
        let guard = self.inner.pool.enter_read().await;
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let conn = crate::sqlite::open_readonly(&path)?;
            Ok(f(&conn)?)
        })
        .await
        .map_err(|e| WalError::Stopped(e.to_string()))?
    }

    /// Takes and publishes a snapshot now (leader only, with its token), applying retention.
    pub async fn snapshot_now(&self, token: Epoch) -> Result<SnapshotMeta> {
        let leader = self.leader_for(token)?;
        self.inner.snapshot_on(&leader).await
    }

    /// The snapshots of the store (any node).
    pub async fn snapshots(&self) -> Result<Vec<SnapshotMeta>> {
        let mut v = snapshot::list(self.inner.store.as_ref()).await?;
        v.sort_by_key(|m| std::cmp::Reverse(m.stream_seq));
        if let Some(newest) = v.first() {
            self.inner
                .last_snapshot_us
                .fetch_max(newest.created_us, Ordering::Relaxed);
            self.inner.report_snapshot_age();
        }
        Ok(v)
    }
}
