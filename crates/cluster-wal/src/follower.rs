//! The standby runtime: one blocking thread per database reads the log (catch-up, then live),
//! applies records through a [`Standby`], restores snapshots when the log cannot serve its
//! position, and reports progress and lag.
//!
//! Catch-up rule: replay from the applied position when the log still holds it; otherwise (new
//! standby with snapshots available, standby behind the trim, diverged or unknown database,
//! corrupt record) restore the newest snapshot and replay from its sequence.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::stream::{LogEntry, ObjectStore, ReplicatedLog};
use futures::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::apply::{Applied, Standby, StandbyOptions};
use crate::error::{ErrorKind, Result, WalError};
use crate::metrics;
use crate::position::Position;
use crate::record::{H_POST, H_TXID, Record};
use crate::snapshot::{self, Snapshot};
use crate::sqlite::now_us;

/// How often a standby samples its lag in transactions.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// A backlog of records already received is applied in one SQLite transaction up to this many
/// bytes of pages ...
const BATCH_MAX_BYTES: usize = 8 << 20;
/// ... and this many records.
const BATCH_MAX_RECORDS: usize = 1024;

/// Called around a snapshot restore of the standby file, to close and hold off the app's
/// connections on it.
///
/// # To ensure correctness
///
/// A restore rewrites the database file and deletes its `-wal` and `-shm` while the process
/// keeps SQLite's shared-memory index of the file for as long as any connection on it is
/// open: a connection open across the restore makes the restore fail (disk I/O error) or
/// reads wrong. `before_restore` must return only once no connection of the implementor is
/// open on the file (or after a bounded wait, logging that some still are), and must keep new
/// ones from opening until `after_restore`, which is called once the restore finished or
/// failed. Both run on the follower's blocking thread and must not wait on it.
pub trait RestoreFence: Send + Sync + std::fmt::Debug {
    /// The restore is about to start: close every connection on the file.
    fn before_restore(&self);
    /// The restore finished (or failed): connections may open again.
    fn after_restore(&self);
}

/// Follower configuration.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The standby database file.
    pub db_path: PathBuf,
    /// Apply options.
    pub options: StandbyOptions,
    /// Pause before retrying after an error.
    pub retry_interval: Duration,
    /// The `db` label of this database's metrics (default: the file stem).
    pub metrics_name: String,
    /// Closes the app's connections around snapshot restores (the `WalResource` sets its
    /// sqlx pool here).
    pub restore_fence: Option<std::sync::Arc<dyn RestoreFence>>,
    /// Where divergences and standby restores are audited (see [`crate::audit`]).
    pub audit: Option<std::sync::Arc<dyn crate::audit::WalAudit>>,
    /// Start by restoring the newest snapshot, whatever the local file holds (an operator's
    /// re-sync, `WalDb::resync`).
    pub resync: bool,
}

impl FollowerConfig {
    /// Defaults: durable position, 1 s retry interval.
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        let db_path = db_path.into();
        Self {
            metrics_name: crate::metrics::name_of(&db_path),
            db_path,
            options: StandbyOptions::default(),
            retry_interval: Duration::from_secs(1),
            restore_fence: None,
            audit: None,
            resync: false,
        }
    }
}

/// Progress of a follower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Applied position.
    pub position: Position,
    /// Transactions applied since start.
    pub applied_txns: u64,
    /// Snapshot restores since start.
    pub restores: u64,
    /// Errors since start.
    pub errors: u64,
    /// The last error, cleared by the next successful apply.
    pub last_error: Option<String>,
    /// Transactions behind the log tail at the last sample (sampled every second).
    pub lag_txns: u64,
    /// Whether `lag_txns` was sampled at least once since start.
    pub lag_sampled: bool,
    /// SQLite transactions the standby committed to apply records since start (fewer than the
    /// records when a backlog was applied in batches).
    pub apply_commits: u64,
}

enum FCmd {
    Snapshot(oneshot::Sender<Result<Snapshot>>),
}

/// A running standby.
pub struct Follower {
    stop: watch::Sender<bool>,
    cmd: mpsc::Sender<FCmd>,
    progress: watch::Receiver<FollowerProgress>,
    thread: Option<std::thread::JoinHandle<Option<Standby>>>,
    lags: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("progress", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Opens the standby and starts following the log.
    pub fn start(
        cfg: FollowerConfig,
        log: Arc<dyn ReplicatedLog>,
        store: Arc<dyn ObjectStore>,
    ) -> Result<Follower> {
        let handle = tokio::runtime::Handle::current();
        let standby = Standby::open(&cfg.db_path, cfg.options)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (progress_tx, progress_rx) = watch::channel(FollowerProgress {
            position: standby.position(),
            ..FollowerProgress::default()
        });
        let lags = Arc::new(Mutex::new(Vec::new()));
        let worker = Worker {
            cfg,
            log,
            store,
            handle,
            stop: stop_rx,
            cmd: cmd_rx,
            progress: progress_tx,
            lags: lags.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("wal-standby".into())
            .spawn(move || worker.run(standby))
            .map_err(|e| WalError::io("wal-standby thread", e))?;
        Ok(Follower {
            stop: stop_tx,
            cmd: cmd_tx,
            progress: progress_rx,
            thread: Some(thread),
            lags,
        })
    }

    /// Current progress.
    pub fn progress(&self) -> FollowerProgress {
        self.progress.borrow().clone()
    }

    /// A receiver of progress updates.
    pub fn subscribe(&self) -> watch::Receiver<FollowerProgress> {
        self.progress.clone()
    }

    /// Waits until `txid` is applied.
    pub async fn wait_applied(&self, txid: u64) -> Result<Position> {
        let mut rx = self.progress.clone();
        let p = rx
            .wait_for(|p| p.position.txid >= txid)
            .await
            .map_err(|_| WalError::Stopped("standby thread is gone".into()))?;
        Ok(p.position)
    }

    /// Waits until a condition on the progress holds.
    pub async fn wait_for(
        &self,
        f: impl FnMut(&FollowerProgress) -> bool,
    ) -> Result<FollowerProgress> {
        let mut rx = self.progress.clone();
        let p = rx
            .wait_for(f)
            .await
            .map_err(|_| WalError::Stopped("standby thread is gone".into()))?;
        Ok(p.clone())
    }

    /// Takes a snapshot at the applied position (between two transactions).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(FCmd::Snapshot(tx))
            .await
            .map_err(|_| WalError::Stopped("standby thread is gone".into()))?;
        rx.await
            .map_err(|_| WalError::Stopped("standby thread is gone".into()))?
    }

    /// Replication lag samples (µs, leader commit → standby apply) collected since the last call.
    pub fn take_lag_samples(&self) -> Vec<u64> {
        std::mem::take(&mut *self.lags.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops following and returns the standby (for promotion).
    pub async fn stop(mut self) -> Result<Standby> {
        let _ = self.stop.send(true);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| WalError::Stopped("already stopped".into()))?;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| WalError::Stopped(e.to_string()))?
            .map_err(|_| WalError::Stopped("standby thread panicked".into()))?
            .ok_or_else(|| WalError::Stopped("standby thread ended with an error".into()))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How long a fresh standby waits quietly for the first snapshot of a lineage whose bootstrap
/// it already saw (the snapshot is published right after the `EpochStart`).
const FRESH_GRACE: Duration = Duration::from_secs(10);

/// A standby that never applied anything: no lineage, an empty file.
fn is_fresh(standby: &Standby) -> bool {
    standby.position().lineage.is_none() && standby.is_empty()
}

/// A resync that is not a divergence: a standby behind the log's trim, or a fresh standby that
/// meets the bootstrap `EpochStart` of a non-empty database (base txid 0, whose image comes with
/// the lineage's first snapshot).
fn not_a_divergence(standby: &Standby, e: &WalError) -> bool {
    match e {
        WalError::BehindTrim { .. } => true,
        WalError::ChecksumMismatch {
            txid: 0,
            what: "epoch base",
            ..
        } => is_fresh(standby),
        _ => false,
    }
}

struct Worker {
    cfg: FollowerConfig,
    log: Arc<dyn ReplicatedLog>,
    store: Arc<dyn ObjectStore>,
    handle: tokio::runtime::Handle,
    stop: watch::Receiver<bool>,
    cmd: mpsc::Receiver<FCmd>,
    progress: watch::Sender<FollowerProgress>,
    lags: Arc<Mutex<Vec<u64>>>,
}

enum Next {
    Stop,
    Tick,
    Cmd(Option<FCmd>),
    Entry(Option<cluster_core::Result<LogEntry>>),
}

impl Worker {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn report_error(&self, e: &WalError) {
        tracing::error!(error = %e, "standby error");
        metrics::add(metrics::APPLY_ERRORS, &self.cfg.metrics_name, 1);
        self.progress.send_modify(|p| {
            p.errors += 1;
            p.last_error = Some(e.to_string());
        });
    }

    fn sleep_retry(&mut self) {
        let d = self.cfg.retry_interval;
        let mut stop = self.stop.clone();
        self.handle.block_on(async move {
            let _ = tokio::time::timeout(d, stop.wait_for(|s| *s)).await;
        });
    }

    fn run(mut self, mut standby: Standby) -> Option<Standby> {
        let mut force_restore = self.cfg.resync.then_some("operator resync");
        // Since when a fresh standby waits for the lineage's first snapshot.
        let mut fresh_wait: Option<std::time::Instant> = None;
        while !self.stopped() {
            match self.prepare(standby, force_restore.take()) {
                Ok(s) => standby = s,
                Err((e, s)) => {
                    standby = s?;
                    if is_fresh(&standby)
                        && matches!(e, WalError::BehindTrim { .. })
                        && fresh_wait.is_some_and(|t| t.elapsed() < FRESH_GRACE)
                    {
                        // A clean start: the bootstrap's snapshot follows its EpochStart.
                        tracing::debug!(error = %e, "fresh standby waiting for the first snapshot");
                    } else {
                        self.report_error(&e);
                    }
                    self.sleep_retry();
                    continue;
                }
            }
            match self.follow(&mut standby) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Resync && not_a_divergence(&standby, &e) => {
                    // Nothing to alarm about: a fresh standby meets the bootstrap of a
                    // non-empty database (its snapshot carries the base) or the log was
                    // trimmed behind it. Restore the newest snapshot.
                    tracing::info!(error = %e, "standby needs a snapshot; restoring");
                    force_restore = Some(if is_fresh(&standby) {
                        fresh_wait.get_or_insert_with(std::time::Instant::now);
                        "fresh standby"
                    } else {
                        "behind the log's trim"
                    });
                    self.sleep_retry();
                }
                Err(e) => {
                    self.report_error(&e);
                    let resync = e.kind() == ErrorKind::Resync;
                    if resync {
                        force_restore = Some("divergence");
                        let pos = standby.position();
                        crate::audit::emit(
                            self.cfg.audit.as_ref(),
                            crate::audit::DIVERGENCE,
                            serde_json::json!({
                                "db": self.cfg.metrics_name,
                                "error": e.to_string(),
                                "txid": pos.txid,
                                "seq": pos.stream_seq,
                                "action": "resync from the newest snapshot",
                            }),
                        );
                    }
                    self.sleep_retry();
                }
            }
        }
        Some(standby)
    }

    /// Makes the standby's position servable by the log: recovery search or snapshot restore.
    #[allow(clippy::result_large_err)]
    fn prepare(
        &mut self,
        mut standby: Standby,
        force_restore: Option<&'static str>,
    ) -> std::result::Result<Standby, (WalError, Option<Standby>)> {
        let h = self.handle.clone();
        let state = match h.block_on(self.log.state()) {
            Ok(s) => s,
            Err(e) => return Err((e.into(), Some(standby))),
        };
        let pos = standby.position();
        if force_restore.is_none() && standby.needs_recovery() && pos.lineage.is_some() {
            match self.search_position(&mut standby, state.first_seq, state.last_seq) {
                Ok(true) => return Ok(standby),
                Ok(false) => {}
                Err(e) => return Err((e, Some(standby))),
            }
        }
        let fresh = standby.is_empty() && pos.lineage.is_none();
        let behind = pos.stream_seq + 1 < state.first_seq;
        let latest = match h.block_on(snapshot::fetch_latest(self.store.as_ref())) {
            Ok(s) => s,
            Err(e) => return Err((e, Some(standby))),
        };
        let must = force_restore.is_some() || behind || standby.needs_recovery();
        let want = must || (fresh && latest.is_some());
        if !want {
            return Ok(standby);
        }
        let Some(snap) = latest else {
            return Err((
                WalError::BehindTrim {
                    first_seq: state.first_seq,
                    reason: "no snapshot exists".into(),
                },
                Some(standby),
            ));
        };
        if snap.meta.stream_seq + 1 < state.first_seq {
            return Err((
                WalError::BehindTrim {
                    first_seq: state.first_seq,
                    reason: format!("the newest snapshot ends at seq {}", snap.meta.stream_seq),
                },
                Some(standby),
            ));
        }
        let (path, _) = standby.close();
        let fence = self.cfg.restore_fence.clone();
        if let Some(f) = &fence {
            f.before_restore();
        }
        let restored = snap
            .restore(&path, self.cfg.options.fsync_position)
            .and_then(|_| Standby::open(&path, self.cfg.options));
        if let Some(f) = &fence {
            f.after_restore();
        }
        match restored {
            Ok(s) => {
                metrics::add(metrics::RESTORES, &self.cfg.metrics_name, 1);
                let reason = if let Some(r) = force_restore {
                    r
                } else if behind {
                    "behind the log's trim"
                } else if fresh {
                    "fresh standby"
                } else {
                    "recovery"
                };
                crate::audit::emit(
                    self.cfg.audit.as_ref(),
                    crate::audit::STANDBY_RESTORED,
                    serde_json::json!({
                        "db": self.cfg.metrics_name,
                        "snapshot": snap.meta.id(),
                        "txid": snap.meta.txid,
                        "seq": snap.meta.stream_seq,
                        "reason": reason,
                    }),
                );
                self.progress.send_modify(|p| {
                    p.restores += 1;
                    p.position = s.position();
                });
                Ok(s)
            }
            Err(e) => {
                let reopened = Standby::open(&path, self.cfg.options).ok();
                Err((e, reopened))
            }
        }
    }

    /// Finds the newest entry whose post-checksum equals the database's checksum (restart
    /// after a crash between the SQLite commit and the sidecar write, or with a database behind
    /// its sidecar after a power loss). Equal checksums mean equal pages, so any match is a
    /// valid position.
    fn search_position(
        &self,
        standby: &mut Standby,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<bool> {
        let want = format!("{:016x}", standby.checksum());
        for seq in (first_seq.max(1)..=last_seq).rev() {
            let Some(e) = self.handle.block_on(self.log.get(seq))? else {
                continue;
            };
            if e.headers.get(H_POST) != Some(want.as_str()) {
                continue;
            }
            let Ok(rec) = Record::decode(&e.payload) else {
                continue;
            };
            let (epoch, txid, complete) = match &rec {
                Record::Txn(t) => (t.epoch, t.txid, t.chunk_idx + 1 == t.chunk_cnt),
                Record::EpochStart(s) => (s.epoch, s.base_txid, true),
            };
            if complete {
                standby.recover_at(rec.lineage(), epoch, txid, seq)?;
                tracing::info!(txid, seq, "standby position recovered by checksum search");
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Samples the lag in transactions (the log tail's txid minus the applied txid), in log
    /// entries (the tail's sequence minus the applied one) and the time since the last apply.
    /// Best effort: a failing log read skips the sample.
    fn sample_lag(&self, applied: Position, last_apply: std::time::Instant) {
        let db = &self.cfg.metrics_name;
        metrics::set(
            metrics::SINCE_APPLY_SECONDS,
            db,
            last_apply.elapsed().as_secs_f64(),
        );
        let h = self.handle.clone();
        let tail = h.block_on(async {
            let last = self.log.last_sequence().await.ok()?;
            metrics::set(
                metrics::LAG_SEGMENTS,
                db,
                last.saturating_sub(applied.stream_seq) as f64,
            );
            let e = self.log.get(last).await.ok()??;
            e.headers.get(H_TXID)?.parse::<u64>().ok()
        });
        if let Some(tail) = tail {
            let lag = tail.saturating_sub(applied.txid);
            metrics::set(metrics::LAG_TRANSACTIONS, db, lag as f64);
            self.progress.send_modify(|p| {
                p.lag_txns = lag;
                p.lag_sampled = true;
            });
        }
    }

    /// Applies entries until stopped (Ok) or an error.
    ///
    /// Records that are already received when one is applied (a backlog: catch-up, or a
    /// standby slower than the leader) are coalesced with it, as the leader coalesces
    /// transactions, and applied in one SQLite transaction with the same checks (txid chain,
    /// pre-checksum against the database, computed post-checksum of the whole run).
    fn follow(&mut self, standby: &mut Standby) -> Result<()> {
        let h = self.handle.clone();
        let mut expect = standby.position().stream_seq + 1;
        let mut stream = h.block_on(self.log.read_from(expect))?;
        let mut tick = h.block_on(async {
            let mut t = tokio::time::interval(LAG_SAMPLE_INTERVAL);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut last_apply = std::time::Instant::now();
        // An item read ahead while batching that did not continue the batch.
        let mut stash: Option<Option<cluster_core::Result<LogEntry>>> = None;
        loop {
            let next = match stash.take() {
                Some(item) => Next::Entry(item),
                None => {
                    let mut stop = self.stop.clone();
                    h.block_on(async {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => Next::Stop,
                            c = self.cmd.recv() => Next::Cmd(c),
                            e = stream.next() => Next::Entry(e),
                            _ = tick.tick() => Next::Tick,
                        }
                    })
                }
            };
            let entry = match next {
                Next::Tick => {
                    self.sample_lag(standby.position(), last_apply);
                    continue;
                }
                Next::Stop | Next::Entry(None) => return Ok(()),
                Next::Cmd(Some(FCmd::Snapshot(reply))) => {
                    let _ = reply.send(standby.snapshot());
                    continue;
                }
                Next::Cmd(None) => continue,
                Next::Entry(Some(e)) => e?,
            };
            if entry.seq != expect {
                return Err(WalError::BehindTrim {
                    first_seq: entry.seq,
                    reason: format!("entries {expect}..{} were trimmed", entry.seq),
                });
            }
            expect = entry.seq + 1;
            let rec = Record::decode(&entry.payload).map_err(|reason| WalError::CorruptRecord {
                seq: entry.seq,
                reason,
            })?;
            let mut seq = entry.seq;
            // (commit time of the first transaction, transactions) of each record applied.
            let mut parts: Vec<(u64, u64)> = Vec::new();
            let applied = match rec {
                Record::Txn(t) => {
                    parts.push((t.commit_ts_us, t.txid - t.first_txid + 1));
                    let pos = standby.position();
                    let batchable =
                        t.chunk_cnt == 1 && t.epoch >= pos.epoch && t.first_txid == pos.txid + 1;
                    let t = match t.into_whole() {
                        Ok(mut run) if batchable => {
                            let mut bytes = run.encoded_len();
                            while parts.len() < BATCH_MAX_RECORDS && bytes < BATCH_MAX_BYTES {
                                // Polled inside the runtime: the log's stream may arm timers.
                                let ready = h.block_on(async { stream.next().now_or_never() });
                                let Some(item) = ready else {
                                    break;
                                };
                                let Some(Ok(e)) = &item else {
                                    stash = Some(item);
                                    break;
                                };
                                let next = match Record::decode(&e.payload) {
                                    Ok(Record::Txn(n)) if e.seq == expect => n.into_whole(),
                                    _ => {
                                        stash = Some(item);
                                        break;
                                    }
                                };
                                let Ok(next) = next else {
                                    stash = Some(item);
                                    break;
                                };
                                let (ts, n) = (next.commit_ts_us, next.txn_count());
                                let len = next.encoded_len();
                                if run.coalesce(next).is_err() {
                                    stash = Some(item);
                                    break;
                                }
                                bytes += len;
                                parts.push((ts, n));
                                seq = e.seq;
                                expect = e.seq + 1;
                            }
                            run.into_chunks(usize::MAX).remove(0)
                        }
                        Ok(run) => run.into_chunks(usize::MAX).remove(0),
                        Err(chunk) => chunk,
                    };
                    standby.apply_chunk(seq, t)?
                }
                Record::EpochStart(e) => standby.apply_epoch(seq, &e)?,
            };
            if let Applied::Txn { .. } = applied {
                last_apply = std::time::Instant::now();
                let db = &self.cfg.metrics_name;
                let now = now_us();
                let mut lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
                for &(ts, txns) in &parts {
                    // A coalesced record carries its first transaction's commit time: its
                    // transactions are sampled with that (upper-bound) lag.
                    let lag = now.saturating_sub(ts);
                    for _ in 0..txns {
                        metrics::observe(metrics::LAG_SECONDS, db, lag as f64 / 1e6);
                    }
                    lags.extend(std::iter::repeat_n(lag, txns as usize));
                }
                metrics::set(metrics::APPLIED_TXID, db, standby.position().txid as f64);
                metrics::set_position(db, "standby", seq);
            }
            if !matches!(applied, Applied::Buffered) {
                let pos = standby.position();
                self.progress.send_modify(|p| {
                    p.position = pos;
                    if let Applied::Txn { txns, .. } = applied {
                        p.applied_txns += txns;
                        p.apply_commits += 1;
                    }
                    p.last_error = None;
                });
            }
        }
    }
}
