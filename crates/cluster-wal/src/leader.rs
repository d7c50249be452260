//! The leader runtime: one blocking *writer actor* thread per database owns the writer
//! connection and the [`Capture`] (pin and barrier connections); one async *publisher* task
//! appends records to the log with compare-and-append and tracks acknowledgements.
//!
//! Group commit at two levels: the actor runs every queued write (each its own SQLite
//! transaction) before one WAL fsync and one capture; the publisher keeps one append in flight
//! and coalesces the transactions captured meanwhile into the next record.
//!
//! ```text
//! write(f) ─► actor thread: f₁…fₙ(&mut conn) → fsync -wal → capture.poll() ─► mpsc ─► publisher task
//!                ▲ doorbell (wal_hook of other leader connections) / poll timer      │ append(expected_last_seq)
//!                └──────────── checkpoint behind the barrier, after acks ◄── watch ◄─┘
//! ```

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as smpsc;
use std::time::Duration;

use cluster_core::stream::ReplicatedLog;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::capture::{Capture, CheckpointOutcome, LeaderStart};
use crate::error::{Result, WalError};
use crate::metrics;
use crate::record::{Record, TxnData};
use crate::snapshot::Snapshot;
use crate::sqlite::{Doorbell, WriteGate, open_leader_connection};

/// When a write returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the local commit; shipping is asynchronous (RPO = the unacknowledged pipeline).
    #[default]
    Async,
    /// After the log acknowledged the transaction (RPO 0 for acknowledged writes).
    CommitWait,
}

/// Leader configuration.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// The database file.
    pub db_path: PathBuf,
    /// Lineage, epoch, base txid/checksum and node id.
    pub start: LeaderStart,
    /// The log's last sequence this leader continues from (its first append expects it).
    pub expected_last_seq: u64,
    /// Fallback WAL poll interval for writers the doorbell does not cover.
    pub poll_interval: Duration,
    /// Checkpoint when the WAL holds at least this many frames.
    pub checkpoint_frames: u64,
    /// How long a checkpoint or snapshot waits for acknowledgements before giving up.
    pub ack_timeout: Duration,
    /// The `db` label of this database's metrics (default: the file stem).
    pub metrics_name: String,
    /// Ring the capture doorbell on inotify events of the `-wal` file (commits of other
    /// processes are captured at once instead of at the next poll; see [`crate::watch`]).
    pub watch_wal: bool,
}

impl LeaderConfig {
    /// Defaults: 25 ms poll, checkpoint at 1000 frames, 30 s ack timeout.
    pub fn new(db_path: impl Into<PathBuf>, start: LeaderStart, expected_last_seq: u64) -> Self {
        let db_path = db_path.into();
        Self {
            metrics_name: crate::metrics::name_of(&db_path),
            db_path,
            start,
            expected_last_seq,
            poll_interval: Duration::from_millis(25),
            checkpoint_frames: 1000,
            ack_timeout: Duration::from_secs(30),
            watch_wal: true,
        }
    }
}

/// Shipping progress of a leader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderProgress {
    /// Last txid captured from the WAL.
    pub captured_txid: u64,
    /// Last txid acknowledged by the log.
    pub acked_txid: u64,
    /// Log sequence of the last acknowledged entry.
    pub acked_seq: u64,
    /// Database checksum at `acked_txid`.
    pub acked_checksum: u64,
    /// Bytes of records appended.
    pub bytes_shipped: u64,
    /// Records appended (one per transaction, fewer when transactions were coalesced).
    pub records_shipped: u64,
    /// Set when the leader stopped shipping: fenced by another leader or a fatal error.
    pub stopped: Option<String>,
}

type WriteFn = Box<dyn FnOnce(&mut Connection) -> rusqlite::Result<Box<dyn Any + Send>> + Send>;
type WriteReply = oneshot::Sender<Result<(Box<dyn Any + Send>, u64)>>;

/// Most queued writes run between two WAL fsyncs / captures.
const MAX_WRITE_BATCH: usize = 128;

enum Cmd {
    Write(WriteFn, WriteReply),
    Poll,
    Checkpoint(oneshot::Sender<Result<CheckpointOutcome>>),
    Snapshot(oneshot::Sender<Result<Snapshot>>),
    Stop(oneshot::Sender<()>),
}

/// A running leader for one database.
pub struct Leader {
    alive: Arc<std::sync::atomic::AtomicBool>,
    cmd: smpsc::SyncSender<Cmd>,
    progress: watch::Receiver<LeaderProgress>,
    gate: WriteGate,
    db_path: PathBuf,
    start: LeaderStart,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("db", &self.db_path)
            .field("progress", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

impl Leader {
    /// Opens capture (verifying `start.base_checksum` when given) and starts shipping.
    pub async fn start(cfg: LeaderConfig, log: Arc<dyn ReplicatedLog>) -> Result<Leader> {
        let handle = tokio::runtime::Handle::current();
        let gate = WriteGate::new();
        let (progress_tx, progress_rx) = watch::channel(LeaderProgress {
            captured_txid: cfg.start.base_txid,
            acked_txid: cfg.start.base_txid,
            acked_seq: cfg.expected_last_seq,
            ..LeaderProgress::default()
        });
        let (pub_tx, pub_rx) = mpsc::channel::<TxnData>(4096);
        let (cmd_tx, cmd_rx) = smpsc::sync_channel::<Cmd>(256);
        let (ready_tx, ready_rx) = oneshot::channel::<Result<u64>>();
        let max_payload = log
            .max_payload()
            .min(512 * 1024)
            .saturating_sub(1024)
            .max(8192);
        let actor = Actor {
            cfg: cfg.clone(),
            gate: gate.clone(),
            pub_tx,
            progress: progress_rx.clone(),
            progress_tx: progress_tx.clone(),
            handle: handle.clone(),
        };
        std::thread::Builder::new()
            .name("wal-leader".into())
            .spawn(move || actor.run(cmd_rx, ready_tx))
            .map_err(|e| WalError::io(&cfg.db_path, e))?;
        let checksum = ready_rx
            .await
            .map_err(|_| WalError::Stopped("leader thread exited during start".into()))??;
        progress_tx.send_modify(|p| p.acked_checksum = checksum);
        tokio::spawn(publisher(
            log,
            pub_rx,
            progress_tx,
            cfg.expected_last_seq,
            max_payload,
            gate.clone(),
            cfg.metrics_name.clone(),
        ));
        let bell_tx = cmd_tx.clone();
        let poll = cfg.poll_interval;
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let bell_alive = alive.clone();
        let watch = cfg
            .watch_wal
            .then(|| crate::watch::WalWatch::start(&crate::sqlite::wal_path(&cfg.db_path)))
            .flatten();
        std::thread::Builder::new()
            .name("wal-doorbell".into())
            .spawn(move || {
                // Lives (and watches) as long as this thread.
                let _watch = watch;
                let mut seen = Doorbell::generation();
                while bell_alive.load(std::sync::atomic::Ordering::SeqCst) {
                    seen = Doorbell::wait(seen, poll);
                    match bell_tx.try_send(Cmd::Poll) {
                        Ok(()) | Err(smpsc::TrySendError::Full(_)) => {}
                        Err(smpsc::TrySendError::Disconnected(_)) => break,
                    }
                }
            })
            .map_err(|e| WalError::io(&cfg.db_path, e))?;
        Ok(Leader {
            alive,
            cmd: cmd_tx,
            progress: progress_rx,
            gate,
            db_path: cfg.db_path,
            start: cfg.start,
        })
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.cmd
            .send(cmd)
            .map_err(|_| WalError::Stopped("leader thread is gone".into()))
    }

    /// Runs `f` on the writer connection (use `conn.transaction()` for multi-statement
    /// transactions) and returns its value with the last captured txid, which covers the
    /// commit. With [`Durability::CommitWait`] it returns only after the log acknowledged it.
    ///
    /// Writes queued concurrently run back to back, each its own SQLite transaction, and share
    /// one WAL fsync and one capture (group commit); a write returns only once its commit is
    /// durable locally and handed to the publisher.
    pub async fn write<T, F>(&self, durability: Durability, f: F) -> Result<(T, u64)>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let wrapped: WriteFn = Box::new(move |c| f(c).map(|v| Box::new(v) as Box<dyn Any + Send>));
        self.send(Cmd::Write(wrapped, tx))?;
        let (value, txid) = rx
            .await
            .map_err(|_| WalError::Stopped("leader thread is gone".into()))??;
        if durability == Durability::CommitWait {
            self.wait_acked(txid).await?;
        }
        let value = value
            .downcast::<T>()
            .map_err(|_| WalError::Stopped("write result of unexpected type".into()))?;
        Ok((*value, txid))
    }

    /// Waits until the log acknowledged `txid`.
    pub async fn wait_acked(&self, txid: u64) -> Result<()> {
        let mut rx = self.progress.clone();
        let p = rx
            .wait_for(|p| p.acked_txid >= txid || p.stopped.is_some())
            .await
            .map_err(|_| WalError::Stopped("publisher is gone".into()))?
            .clone();
        if p.acked_txid >= txid {
            Ok(())
        } else {
            Err(WalError::NotWritable(p.stopped.unwrap_or_default()))
        }
    }

    /// Runs a barrier checkpoint now.
    pub async fn checkpoint(&self) -> Result<CheckpointOutcome> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Checkpoint(tx))?;
        rx.await
            .map_err(|_| WalError::Stopped("leader thread is gone".into()))?
    }

    /// Takes a snapshot of the leader database at the current (acknowledged) txid.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Snapshot(tx))?;
        rx.await
            .map_err(|_| WalError::Stopped("leader thread is gone".into()))?
    }

    /// Current progress.
    pub fn progress(&self) -> LeaderProgress {
        self.progress.borrow().clone()
    }

    /// A receiver of progress updates.
    pub fn subscribe(&self) -> watch::Receiver<LeaderProgress> {
        self.progress.clone()
    }

    /// The commit gate of this leader's connections (revoke it when the lease lapses).
    pub fn gate(&self) -> &WriteGate {
        &self.gate
    }

    /// Opens another leader connection (same pragmas, doorbell and gate) for app use.
    pub fn open_connection(&self) -> Result<Connection> {
        open_leader_connection(&self.db_path, &self.gate)
    }

    /// Lineage, epoch and node this leader ships under.
    pub fn start_info(&self) -> &LeaderStart {
        &self.start
    }

    /// Captures what is left, waits (bounded) for acknowledgements and stops.
    pub async fn shutdown(self) -> LeaderProgress {
        self.stop().await
    }

    /// [`Leader::shutdown`] through a shared reference: later writes fail with `Stopped`.
    /// Every connection of the writer thread is closed when it returns.
    pub async fn stop(&self) -> LeaderProgress {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        self.progress()
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Lets the doorbell thread exit; the actor exits once every command sender is gone.
        self.alive.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

struct Actor {
    cfg: LeaderConfig,
    gate: WriteGate,
    pub_tx: mpsc::Sender<TxnData>,
    progress: watch::Receiver<LeaderProgress>,
    progress_tx: watch::Sender<LeaderProgress>,
    handle: tokio::runtime::Handle,
}

impl Actor {
    fn run(self, rx: smpsc::Receiver<Cmd>, ready: oneshot::Sender<Result<u64>>) {
        let opened = Capture::open(&self.cfg.db_path, self.cfg.start.clone()).and_then(|cap| {
            let conn = open_leader_connection(&self.cfg.db_path, &self.gate)?;
            Ok((cap, conn))
        });
        let (mut cap, mut conn) = match opened {
            Ok(v) => v,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        // Commits on the writer connection are made durable by one explicit fsync of the WAL
        // per batch of writes (see `write_batch`), not by SQLite at every commit.
        if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
            let _ = ready.send(Err(e.into()));
            return;
        }
        let _ = ready.send(Ok(cap.checksum()));
        let mut next: Option<Cmd> = None;
        loop {
            let cmd = match next.take() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match cmd {
                Cmd::Write(f, reply) => {
                    // Local group commit: every write already queued runs now, each its own
                    // SQLite transaction (txid), then one fsync and one capture for all.
                    let mut batch = vec![(f, reply)];
                    while batch.len() < MAX_WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(Cmd::Write(f, reply)) => batch.push((f, reply)),
                            // The batch's capture covers a doorbell poll.
                            Ok(Cmd::Poll) => {}
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_batch(&mut cap, &mut conn, batch);
                }
                Cmd::Poll => {
                    let _ = self.pump(&mut cap);
                }
                Cmd::Checkpoint(reply) => {
                    let _ = reply.send(self.checkpoint(&mut cap));
                }
                Cmd::Snapshot(reply) => {
                    let _ = reply.send(self.snapshot(&mut cap));
                }
                Cmd::Stop(reply) => {
                    if self.pump(&mut cap).is_ok() {
                        let _ = self.wait_acked(cap.txid());
                    }
                    // Close every connection before answering: after `shutdown` returns, the
                    // database is free for other processes.
                    drop(cap);
                    drop(conn);
                    let _ = reply.send(());
                    return;
                }
            }
            if cap.wal_frames() >= self.cfg.checkpoint_frames
                && let Err(e) = self.checkpoint(&mut cap)
            {
                tracing::warn!(error = %e, "checkpoint failed; will retry");
            }
        }
    }

    /// Runs each write (its own SQLite transaction), fsyncs the WAL once when any write
    /// succeeded, captures, and only then answers: every answered write is durable locally
    /// and handed to the publisher, and its txid covers its commit.
    fn write_batch(
        &self,
        cap: &mut Capture,
        conn: &mut Connection,
        batch: Vec<(WriteFn, WriteReply)>,
    ) {
        let mut done = Vec::with_capacity(batch.len());
        let mut wrote = false;
        for (f, reply) in batch {
            let res = if self.gate.allows() {
                f(conn).map_err(map_write_error)
            } else {
                Err(WalError::NotWritable(self.stopped_reason()))
            };
            wrote |= res.is_ok();
            done.push((res, reply));
        }
        let synced = if wrote {
            let wal = crate::sqlite::wal_path(&self.cfg.db_path);
            std::fs::File::open(&wal)
                .and_then(|f| f.sync_data())
                .map_err(|e| WalError::io(&wal, e))
                .inspect_err(|e| {
                    // After a failed fsync the file's state is unknown: stop writing.
                    tracing::error!(error = %e, "WAL fsync failed; refusing further writes");
                    self.gate.revoke();
                    self.progress_tx
                        .send_modify(|p| p.stopped = Some(e.to_string()));
                })
        } else {
            Ok(())
        };
        let pumped = synced.and_then(|()| self.pump(cap));
        let txid = cap.txid();
        for (res, reply) in done {
            let out = match (res, &pumped) {
                (Ok(v), Ok(())) => Ok((v, txid)),
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(share_error(e)),
            };
            let _ = reply.send(out);
        }
    }

    fn stopped_reason(&self) -> String {
        self.progress
            .borrow()
            .stopped
            .clone()
            .unwrap_or_else(|| "write gate closed (lease lapsed or not leader)".into())
    }

    /// Captures new transactions and hands them to the publisher.
    fn pump(&self, cap: &mut Capture) -> Result<()> {
        let txns = cap.poll().inspect_err(|e| {
            tracing::error!(error = %e, "capture failed; refusing further writes");
            self.gate.revoke();
            self.progress_tx
                .send_modify(|p| p.stopped = Some(e.to_string()));
        })?;
        self.ship(txns)
    }

    fn ship(&self, txns: Vec<TxnData>) -> Result<()> {
        for t in txns {
            let txid = t.txid;
            self.pub_tx.blocking_send(t).map_err(|_| {
                // The publisher ends only when it stopped shipping (fenced or failed).
                match self.progress.borrow().stopped.clone() {
                    Some(reason) => WalError::NotWritable(reason),
                    None => WalError::Stopped("publisher is gone".into()),
                }
            })?;
            self.progress_tx.send_modify(|p| p.captured_txid = txid);
            metrics::set(
                metrics::LEADER_CAPTURED_TXID,
                &self.cfg.metrics_name,
                txid as f64,
            );
        }
        Ok(())
    }

    fn wait_acked(&self, txid: u64) -> Result<()> {
        let mut rx = self.progress.clone();
        let timeout = self.cfg.ack_timeout;
        let p = self.handle.block_on(async move {
            tokio::time::timeout(
                timeout,
                rx.wait_for(|p| p.acked_txid >= txid || p.stopped.is_some()),
            )
            .await
            .map(|r| r.map(|p| p.clone()))
        });
        match p {
            Ok(Ok(p)) if p.acked_txid >= txid => Ok(()),
            Ok(Ok(p)) => Err(WalError::NotWritable(p.stopped.unwrap_or_default())),
            Ok(Err(_)) => Err(WalError::Stopped("publisher is gone".into())),
            Err(_) => Err(WalError::Log(cluster_core::Error::Timeout(format!(
                "log did not acknowledge txid {txid} within {timeout:?}"
            )))),
        }
    }

    fn checkpoint(&self, cap: &mut Capture) -> Result<CheckpointOutcome> {
        let before = cap.txid();
        cap.checkpoint(&mut |txns: Vec<TxnData>| {
            let target = txns.last().map_or(before, |t| t.txid);
            self.ship(txns)?;
            self.wait_acked(target)
        })
    }

    fn snapshot(&self, cap: &mut Capture) -> Result<Snapshot> {
        let before = cap.txid();
        let (txid, checksum, page_size, pages) = cap.read_snapshot(&mut |txns: Vec<TxnData>| {
            let target = txns.last().map_or(before, |t| t.txid);
            self.ship(txns)?;
            self.wait_acked(target)
        })?;
        let p = self.progress.borrow().clone();
        let pos = crate::position::Position {
            lineage: Some(self.cfg.start.lineage),
            epoch: self.cfg.start.epoch,
            txid,
            checksum,
            stream_seq: p.acked_seq,
            ..crate::position::Position::empty()
        };
        Snapshot::from_pages(pos, page_size, &pages)
    }
}

/// The same failure for every write of a batch.
fn share_error(e: &WalError) -> WalError {
    match e {
        WalError::ContinuityBreak(s) => WalError::ContinuityBreak(s.clone()),
        WalError::NotWritable(s) => WalError::NotWritable(s.clone()),
        WalError::Stopped(s) => WalError::Stopped(s.clone()),
        other => WalError::Stopped(format!("commit not made durable or not captured: {other}")),
    }
}

fn map_write_error(e: rusqlite::Error) -> WalError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_COMMITHOOK =>
        {
            WalError::NotWritable(
                "commit vetoed: this node may not write (lease or fencing)".into(),
            )
        }
        _ => WalError::Sqlite(e),
    }
}

/// Most transactions coalesced into one record.
const MAX_COALESCED: u64 = 4096;

/// Ships captured transactions in order, one append in flight, each expecting the sequence of
/// the previous acknowledgement (compare-and-append: the fencing point).
///
/// Group commit: the transactions captured while an append was in flight are coalesced into
/// the next record (one `first_txid..=txid` run, at most one record of `max_payload` unless a
/// single transaction needs chunks), so a loaded leader pays one round trip per batch, not per
/// transaction. A transaction's acknowledgement is its record's (last chunk's) acknowledgement.
async fn publisher(
    log: Arc<dyn ReplicatedLog>,
    mut rx: mpsc::Receiver<TxnData>,
    progress: watch::Sender<LeaderProgress>,
    mut last_seq: u64,
    max_payload: usize,
    gate: WriteGate,
    db: String,
) {
    let stop = |reason: String| {
        tracing::error!(%reason, "leader stops shipping");
        gate.revoke();
        progress.send_modify(|p| p.stopped = Some(reason.clone()));
    };
    let mut held: Option<TxnData> = None;
    loop {
        let mut run = match held.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => return,
            },
        };
        while run.txn_count() < MAX_COALESCED {
            let Ok(next) = rx.try_recv() else { break };
            if run.encoded_len() + next.encoded_len() > max_payload {
                held = Some(next);
                break;
            }
            if let Err(next) = run.coalesce(next) {
                held = Some(next);
                break;
            }
        }
        let (txid, post) = (run.txid, run.post_checksum);
        let mut bytes = 0u64;
        let mut records = 0u64;
        for chunk in run.into_chunks(max_payload) {
            let rec = Record::Txn(chunk);
            let payload = rec.encode();
            let headers = rec.headers();
            bytes += payload.len() as u64;
            records += 1;
            let mut backoff = Duration::from_millis(5);
            loop {
                match log
                    .append(headers.clone(), payload.clone(), Some(last_seq))
                    .await
                {
                    Ok(ack) => {
                        last_seq = ack.seq;
                        break;
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "append failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    Err(cluster_core::Error::Conflict { current, .. }) => {
                        metrics::add(metrics::FENCED, &db, 1);
                        let e = WalError::Fenced {
                            expected: last_seq,
                            current: current.map_or(0, |r| r.0),
                        };
                        stop(e.to_string());
                        return;
                    }
                    Err(e) => {
                        stop(format!("append failed: {e}"));
                        return;
                    }
                }
            }
        }
        progress.send_modify(|p| {
            p.acked_txid = txid;
            p.acked_seq = last_seq;
            p.acked_checksum = post;
            p.bytes_shipped += bytes;
            p.records_shipped += records;
        });
        metrics::set(metrics::LEADER_ACKED_TXID, &db, txid as f64);
        metrics::set_position(&db, "leader", last_seq);
        metrics::add(metrics::SHIPPED_BYTES, &db, bytes);
    }
}
