//! Operator snapshot operations on the leader: delete and restore (see
//! `docs/architecture/cluster-wal.md`, "Snapshot operations").
//!
//! **Restore** rolls the database back to a snapshot by starting a new history (lineage) from
//! its image, entirely through the log, so that leader and standbys converge by the normal
//! catch-up path and no file is overwritten under a running writer:
//!
//! 1. checks (leader, valid token, snapshot exists and verifies);
//! 2. stops the leader (commit gate revoked, pending transactions shipped): the log ends at `L`;
//! 3. puts a copy of the image as a snapshot of a new lineage with `stream_seq = L + 1`;
//! 4. appends `EpochStart{new lineage, same epoch, base txid 0}` expecting `L` (fails if anyone
//!    appended meanwhile; the copy is deleted again);
//! 5. leaves the replica *stopped*: the caller steps the app down (the admin extension does),
//!    which stops the backend and the VIP; deactivation starts the follower, which meets the
//!    new lineage at `L + 1`, restores the newest snapshot (the copy) and replays. Every
//!    standby does the same; the next leader promotes from the restored state.
//!
//! Writes made after step 2 (e.g. by an external writer process before it is stopped) are
//! discarded, which is what rolling back to a snapshot means.
//!
//! **Without a leader** (recovery when no node can lead the database), an operator runs the
//! restore on a standby of their choice: it holds its replica's state (no local promotion
//! meanwhile), reads the log's tail `L` and its epoch, confirms that no leader is known, then
//! does steps 3 and 4 with the epoch of the log's last entry (never lower than any epoch in
//! the log, so no standby skips it). The expected sequence `L` is the fence: a leader that
//! appears meanwhile appends its `EpochStart` before any write, so the restore fails and its
//! copy is deleted; nothing a leader wrote is ever replaced. A leader that won its lease but
//! has not appended yet meets the new lineage while it catches up and promotes from it (at
//! worst its promotion fails once on the lineage change, its standby restores the new
//! lineage's snapshot, which lifts the block, and it stands again).

use std::time::Instant;

use cluster_core::epoch::Epoch;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Result, WalError};
use crate::record::{EpochStart, Record};
use crate::resource::{State, WalDb, WalRole};
use crate::snapshot::{self, Snapshot, SnapshotMeta};
use crate::sqlite::now_us;

/// One step of a restore, with its duration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreStep {
    /// What was done.
    pub step: String,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

/// The outcome of [`WalDb::restore_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The restored snapshot's id.
    pub snapshot: String,
    /// Its txid and log sequence in the old lineage.
    pub from_txid: u64,
    /// Log sequence of the restored snapshot in the old lineage.
    pub from_seq: u64,
    /// The new lineage (hyphenated UUID).
    pub lineage: String,
    /// The id of the snapshot copy that starts the new lineage.
    pub new_snapshot: String,
    /// Log sequence of the new lineage's `EpochStart`.
    pub epoch_start_seq: u64,
    /// Database checksum (16 hex digits).
    pub checksum: String,
    /// Steps done, in order.
    pub steps: Vec<RestoreStep>,
}

impl WalDb {
    /// Finds a snapshot by [`SnapshotMeta::id`] (or full object name).
    pub async fn find_snapshot(&self, id: &str) -> Result<SnapshotMeta> {
        snapshot::list(self.inner.store.as_ref())
            .await?
            .into_iter()
            .find(|m| m.id() == id || m.object_name() == id)
            .ok_or_else(|| {
                WalError::Log(cluster_core::Error::InvalidArgument(format!(
                    "unknown snapshot {id} (see `snapshot list`)"
                )))
            })
    }

    /// Deletes a snapshot (leader only, with its token). The newest snapshot of the current
    /// lineage is refused: the log is trimmed behind it, standbys may need it to catch up.
    pub async fn delete_snapshot(&self, token: Epoch, id: &str) -> Result<SnapshotMeta> {
        let leader = self.leader_for(token)?;
        let meta = self.find_snapshot(id).await?;
        let lineage = leader.start_info().lineage;
        let newest = snapshot::list(self.inner.store.as_ref())
            .await?
            .into_iter()
            .filter(|m| m.lineage == lineage)
            .max_by_key(|m| m.stream_seq);
        if newest.is_some_and(|n| n == meta) {
            return Err(WalError::NotWritable(format!(
                "snapshot {id} is the newest of the current lineage: the log is trimmed behind it \
                 and standbys may need it; take a newer snapshot first"
            )));
        }
        self.inner.store.delete(&meta.object_name()).await?;
        crate::audit::emit(
            self.inner.cfg.audit.as_ref(),
            crate::audit::SNAPSHOT_DELETED,
            serde_json::json!({"db": self.inner.metrics_name(), "snapshot": meta.id(),
                "txid": meta.txid, "seq": meta.stream_seq}),
        );
        Ok(meta)
    }

    /// Restores snapshot `id` as a new lineage (leader only, with its token); see the module
    /// docs. On success this node's replica is stopped: **step the app down** next (writes
    /// are refused until the next promotion).
    pub async fn restore_snapshot(&self, token: Epoch, id: &str) -> Result<RestoreReport> {
        let started = serde_json::json!({"snapshot": id, "epoch": token.get()});
        self.audited(id, started, self.restore_snapshot_steps(token, id))
            .await
    }

    /// Restores snapshot `id` as a new lineage **when no node leads the database** (recovery:
    /// every candidate is blocked, or no node that can run the app holds a good replica); see
    /// the module docs, "Without a leader". Runs on a standby (refused on a leader). The
    /// log's tail `L` is read first, then `no_leader` must confirm that no leader is known
    /// (its error is returned as is, nothing done); the new lineage's `EpochStart` is appended
    /// expecting `L`, so a leader that appears meanwhile and appends anything (its own
    /// `EpochStart` first) makes the restore fail with nothing changed: the fence. Every
    /// replica, this one included, then meets the new lineage and restores its snapshot; the
    /// next leader promotes from it. Audited like [`WalDb::restore_snapshot`], with
    /// `"without_leader": true`.
    pub async fn restore_snapshot_without_leader(
        &self,
        id: &str,
        no_leader: impl FnOnce() -> cluster_core::Result<()> + Send,
    ) -> Result<RestoreReport> {
        let started = serde_json::json!({"snapshot": id, "without_leader": true,
            "node": self.inner.cfg.node_id});
        self.audited(
            id,
            started,
            self.restore_without_leader_steps(id, no_leader),
        )
        .await
    }

    /// Runs `steps` between the `restore.started` and `restore.completed|failed` records.
    async fn audited(
        &self,
        id: &str,
        mut started: serde_json::Value,
        steps: impl std::future::Future<Output = Result<RestoreReport>>,
    ) -> Result<RestoreReport> {
        let audit = self.inner.cfg.audit.as_ref();
        let db = self.inner.metrics_name();
        started["db"] = db.clone().into();
        crate::audit::emit(audit, crate::audit::RESTORE_STARTED, started);
        let outcome = steps.await;
        match &outcome {
            Ok(report) => crate::audit::emit(
                audit,
                crate::audit::RESTORE_COMPLETED,
                serde_json::json!({"db": db, "snapshot": id, "lineage": report.lineage,
                    "epoch_start_seq": report.epoch_start_seq, "steps": report.steps}),
            ),
            Err(e) => crate::audit::emit(
                audit,
                crate::audit::RESTORE_FAILED,
                serde_json::json!({"db": db, "snapshot": id, "error": e.to_string()}),
            ),
        }
        outcome
    }

    async fn restore_snapshot_steps(&self, token: Epoch, id: &str) -> Result<RestoreReport> {
        let mut steps = Steps::default();
        let t = Instant::now();
        self.leader_for(token)?;
        let old = self.fetch_verified(id).await?;
        steps.push(fetched(id, &old), t);

        let t = Instant::now();
        let mut st = self.inner.state.lock().await;
        let State::Leader { epoch, .. } = &*st else {
            return Err(WalError::NotWritable(
                "this node no longer leads the database".into(),
            ));
        };
        if *epoch != token {
            return Err(WalError::NotWritable(format!("stale token {token}")));
        }
        let State::Leader {
            leader, snapshots, ..
        } = std::mem::replace(&mut *st, State::Stopped)
        else {
            return Err(WalError::Stopped("state changed".into()));
        };
        leader.gate().revoke();
        self.inner.views_mut().active = None;
        self.inner.role.send_replace(WalRole::Stopped);
        if let Some(t) = snapshots {
            t.abort();
        }
        let p = match tokio::time::timeout(self.inner.cfg.stop_timeout, leader.stop()).await {
            Ok(p) => p,
            Err(_) => leader.progress(),
        };
        if let Some(reason) = &p.stopped {
            tracing::warn!(%reason, "leader had stopped before the restore");
        }
        let last = p.acked_seq;
        steps.push(
            format!(
                "stopped the leader at txid {} (log sequence {last}); writes are refused",
                p.acked_txid
            ),
            t,
        );
        let report = self
            .start_lineage(id, &old, token.get(), last, steps)
            .await?;
        tracing::warn!(snapshot = %id, lineage = %report.lineage, seq = report.epoch_start_seq, "snapshot restored as a new lineage; step the app down to resume");
        Ok(report)
    }

    async fn restore_without_leader_steps(
        &self,
        id: &str,
        no_leader: impl FnOnce() -> cluster_core::Result<()>,
    ) -> Result<RestoreReport> {
        let mut steps = Steps::default();
        let t = Instant::now();
        // Held to the end: this node cannot promote while it restores (a promotion elsewhere
        // is fenced by the expected sequence).
        let st = self.inner.state.lock().await;
        if let State::Leader { .. } = &*st {
            return Err(WalError::NotWritable(
                "this node leads the database: restore through the leader (`cluster snapshot \
                 restore` without `--on`)"
                    .into(),
            ));
        }
        let last = self.inner.log.last_sequence().await?;
        let log_epoch = match last {
            0 => 0,
            seq => {
                let entry = self.inner.log.get(seq).await?.ok_or_else(|| {
                    WalError::NotWritable(format!("log entry {seq} vanished; retry"))
                })?;
                Record::decode(&entry.payload)
                    .map_err(|reason| WalError::CorruptRecord { seq, reason })?
                    .epoch()
            }
        };
        no_leader()?;
        steps.push(
            format!("no leader; the log ends at sequence {last} (epoch {log_epoch})"),
            t,
        );
        let t = Instant::now();
        let old = self.fetch_verified(id).await?;
        steps.push(fetched(id, &old), t);
        // Not lower than any epoch in the log: standbys skip records of older epochs. The next
        // leader's epoch (a newer lease) is higher still.
        let epoch = log_epoch.max(old.meta.epoch);
        let report = self.start_lineage(id, &old, epoch, last, steps).await?;
        drop(st);
        tracing::warn!(snapshot = %id, lineage = %report.lineage, seq = report.epoch_start_seq, "snapshot restored as a new lineage without a leader; replicas restore it, the next leader promotes from it");
        Ok(report)
    }

    /// Fetches snapshot `id` and verifies its image.
    async fn fetch_verified(&self, id: &str) -> Result<Snapshot> {
        let meta = self.find_snapshot(id).await?;
        let Some((_, image)) = self.inner.store.get(&meta.object_name()).await? else {
            return Err(WalError::Log(cluster_core::Error::InvalidArgument(
                format!("snapshot {id} was deleted meanwhile"),
            )));
        };
        let snap = Snapshot { meta, image };
        snap.verify()?;
        Ok(snap)
    }

    /// Stores `old`'s image as the first snapshot of a new lineage at `last + 1` and appends
    /// that lineage's `EpochStart` expecting `last` (on a conflict the copy is deleted again).
    async fn start_lineage(
        &self,
        id: &str,
        old: &Snapshot,
        epoch: u64,
        last: u64,
        mut steps: Steps,
    ) -> Result<RestoreReport> {
        let t = Instant::now();
        let lineage = Uuid::new_v4();
        let mut copy = old.clone();
        copy.meta.lineage = lineage;
        copy.meta.epoch = epoch;
        copy.meta.txid = 0;
        copy.meta.stream_seq = last + 1;
        copy.meta.created_us = now_us();
        self.inner
            .store
            .put(
                &copy.meta.object_name(),
                copy.image.clone(),
                copy.meta.to_metadata(),
            )
            .await?;
        steps.push(
            format!(
                "stored the image as snapshot {} of lineage {lineage}",
                copy.meta.id()
            ),
            t,
        );

        let t = Instant::now();
        let rec = Record::EpochStart(EpochStart {
            lineage,
            epoch,
            base_txid: 0,
            base_checksum: copy.meta.checksum,
            ts_us: now_us(),
            node_id: self.inner.cfg.node_id.clone(),
        });
        let appended = self
            .inner
            .log
            .append(rec.headers(), rec.encode(), Some(last))
            .await;
        let ack = match appended {
            Ok(ack) => ack,
            Err(e) => {
                let _ = self.inner.store.delete(&copy.meta.object_name()).await;
                return Err(match e {
                    cluster_core::Error::Conflict { .. } => WalError::NotWritable(format!(
                        "the log moved past sequence {last} during the restore (a leader \
                         appeared?): nothing restored; restore through the leader"
                    )),
                    e => e.into(),
                });
            }
        };
        steps.push(
            format!(
                "appended EpochStart of lineage {lineage} at log sequence {}",
                ack.seq
            ),
            t,
        );
        Ok(RestoreReport {
            snapshot: id.to_owned(),
            from_txid: old.meta.txid,
            from_seq: old.meta.stream_seq,
            lineage: lineage.to_string(),
            new_snapshot: copy.meta.id(),
            epoch_start_seq: ack.seq,
            checksum: format!("{:016x}", copy.meta.checksum),
            steps: steps.0,
        })
    }
}

/// The steps of a restore, each logged as it completes.
#[derive(Default)]
struct Steps(Vec<RestoreStep>);

impl Steps {
    fn push(&mut self, what: String, since: Instant) {
        tracing::info!(step = %what, "snapshot restore");
        self.0.push(RestoreStep {
            step: what,
            ms: since.elapsed().as_millis() as u64,
        });
    }
}

fn fetched(id: &str, snap: &Snapshot) -> String {
    format!(
        "fetched and verified snapshot {id} (txid {}, {} bytes)",
        snap.meta.txid,
        snap.image.len()
    )
}
