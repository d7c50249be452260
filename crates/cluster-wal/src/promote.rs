//! Failover: a standby that won epoch E catches up to the log tail, fences the log with an
//! `EpochStart` appended with the expected last sequence, checks its database and starts
//! leading. Also the bootstrap of a brand-new lineage.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::stream::{ObjectStore, ReplicatedLog};
use rusqlite::Connection;
use uuid::Uuid;

use crate::apply::{Standby, database_checksum};
use crate::capture::LeaderStart;
use crate::error::{Result, WalError};
use crate::follower::Follower;
use crate::leader::{Leader, LeaderConfig};
use crate::record::{EpochStart, Record};
use crate::snapshot;
use crate::sqlite::{check_integrity, now_us};

/// Promotion parameters.
#[derive(Debug, Clone)]
pub struct PromoteConfig {
    /// This node's id.
    pub node_id: String,
    /// The epoch won (must exceed every epoch in the log).
    pub epoch: u64,
    /// Poll interval of the new leader.
    pub poll_interval: Duration,
    /// Checkpoint threshold of the new leader (frames).
    pub checkpoint_frames: u64,
}

impl PromoteConfig {
    /// Defaults for the leader (25 ms poll, checkpoint at 1000 frames).
    pub fn new(node_id: impl Into<String>, epoch: u64) -> Self {
        Self {
            node_id: node_id.into(),
            epoch,
            poll_interval: Duration::from_millis(25),
            checkpoint_frames: 1000,
        }
    }
}

/// Promotes a running follower: stop it, apply every complete transaction up to the log tail L,
/// append `EpochStart` with expected last sequence L (repeating the catch-up while another
/// writer still appends), TRUNCATE-checkpoint, verify the checksum and `quick_check`, and start
/// a leader that continues at `base_txid + 1` under the new epoch.
pub async fn promote(
    follower: Follower,
    log: Arc<dyn ReplicatedLog>,
    cfg: PromoteConfig,
) -> Result<Leader> {
    let standby = follower.stop().await?;
    promote_standby(standby, log, cfg).await
}

/// [`promote`] for a standby that is not running.
pub async fn promote_standby(
    standby: Standby,
    log: Arc<dyn ReplicatedLog>,
    cfg: PromoteConfig,
) -> Result<Leader> {
    let log2 = log.clone();
    let cfg2 = cfg.clone();
    let (standby, fence_seq) = tokio::task::spawn_blocking(move || fence(standby, log2, &cfg2))
        .await
        .map_err(|e| WalError::Stopped(e.to_string()))??;
    let pos = standby.position();
    let (path, _) = standby.close();
    let lineage = pos
        .lineage
        .ok_or_else(|| WalError::NotWritable("standby has no lineage".into()))?;
    let p2 = path.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let conn = Connection::open(&p2)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let _: (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        let actual = database_checksum(&p2)?.total();
        if actual != pos.checksum {
            return Err(WalError::ChecksumMismatch {
                txid: pos.txid,
                what: "promotion",
                expected: pos.checksum,
                actual,
            });
        }
        check_integrity(&conn, false)
    })
    .await
    .map_err(|e| WalError::Stopped(e.to_string()))??;
    tracing::info!(
        epoch = cfg.epoch,
        txid = pos.txid,
        seq = fence_seq,
        "promoted to leader"
    );
    let mut lc = LeaderConfig::new(
        path,
        LeaderStart {
            lineage,
            epoch: cfg.epoch,
            base_txid: pos.txid,
            base_checksum: Some(pos.checksum),
            node_id: cfg.node_id,
        },
        fence_seq,
    );
    lc.poll_interval = cfg.poll_interval;
    lc.checkpoint_frames = cfg.checkpoint_frames;
    Leader::start(lc, log).await
}

fn fence(
    mut standby: Standby,
    log: Arc<dyn ReplicatedLog>,
    cfg: &PromoteConfig,
) -> Result<(Standby, u64)> {
    let h = tokio::runtime::Handle::current();
    loop {
        let last = h.block_on(log.last_sequence())?;
        let mut seq = standby.position().stream_seq + 1;
        while seq <= last {
            let Some(e) = h.block_on(log.get(seq))? else {
                return Err(WalError::BehindTrim {
                    first_seq: seq + 1,
                    reason: format!("entry {seq} was trimmed during promotion"),
                });
            };
            let rec = Record::decode(&e.payload)
                .map_err(|reason| WalError::CorruptRecord { seq, reason })?;
            match rec {
                Record::Txn(t) => standby.apply_chunk(seq, t)?,
                Record::EpochStart(s) => standby.apply_epoch(seq, &s)?,
            };
            seq += 1;
        }
        let pos = standby.position();
        if let Some(seq) = own_epoch_start(&h, log.as_ref(), cfg, pos.epoch, last)? {
            // A retry in the same term after this node's EpochStart was appended (and nothing
            // after it): one EpochStart per term, not per attempt.
            tracing::info!(
                epoch = cfg.epoch,
                seq,
                "reusing this node's EpochStart of the term"
            );
            return Ok((standby, seq));
        }
        if cfg.epoch <= pos.epoch {
            return Err(WalError::NotWritable(format!(
                "epoch {} is not newer than the log's epoch {}",
                cfg.epoch, pos.epoch
            )));
        }
        let lineage = pos
            .lineage
            .ok_or_else(|| WalError::NotWritable("standby has no lineage".into()))?;
        // The file must hold what the standby applied before its checksum goes into the log as
        // the new term's base: an EpochStart with a wrong base would make every standby that
        // applies it diverge (e.g. after a write on the standby's file behind our back).
        let actual = database_checksum(standby.path())?.total();
        if standby.needs_recovery() || actual != pos.checksum || actual != standby.checksum() {
            return Err(WalError::ChecksumMismatch {
                txid: pos.txid,
                what: "promotion",
                expected: pos.checksum,
                actual,
            });
        }
        let start = EpochStart {
            lineage,
            epoch: cfg.epoch,
            base_txid: pos.txid,
            base_checksum: standby.checksum(),
            ts_us: now_us(),
            node_id: cfg.node_id.clone(),
        };
        let rec = Record::EpochStart(start.clone());
        match h.block_on(log.append(rec.headers(), rec.encode(), Some(last))) {
            Ok(ack) => {
                standby.apply_epoch(ack.seq, &start)?;
                return Ok((standby, ack.seq));
            }
            Err(cluster_core::Error::Conflict { .. }) => {
                tracing::warn!("log moved during promotion; catching up again");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `Some(last)` when the log ends with this node's `EpochStart` for `cfg.epoch`, which the
/// standby (at `applied_epoch`) has applied: an earlier attempt of the same promotion.
fn own_epoch_start(
    h: &tokio::runtime::Handle,
    log: &dyn ReplicatedLog,
    cfg: &PromoteConfig,
    applied_epoch: u64,
    last: u64,
) -> Result<Option<u64>> {
    if applied_epoch != cfg.epoch || last == 0 {
        return Ok(None);
    }
    let Some(e) = h.block_on(log.get(last))? else {
        return Ok(None);
    };
    Ok(match Record::decode(&e.payload) {
        Ok(Record::EpochStart(s)) if s.epoch == cfg.epoch && s.node_id == cfg.node_id => Some(last),
        _ => None,
    })
}

/// Starts replicating a database under a brand-new lineage on an empty log: appends
/// `EpochStart{base_txid: 0, base_checksum}` and, when the database is not empty, publishes a
/// snapshot at txid 0 so that standbys can start from it.
pub async fn bootstrap(
    db_path: impl Into<std::path::PathBuf>,
    node_id: impl Into<String>,
    epoch: u64,
    log: Arc<dyn ReplicatedLog>,
    store: Arc<dyn ObjectStore>,
) -> Result<Leader> {
    let db_path = db_path.into();
    let node_id = node_id.into();
    let lineage = Uuid::new_v4();
    let p = db_path.clone();
    let sums = tokio::task::spawn_blocking(move || {
        let c = Connection::open(&p)?;
        crate::sqlite::check_database(&c, &p)?;
        let _: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        drop(c);
        database_checksum(&p)
    })
    .await
    .map_err(|e| WalError::Stopped(e.to_string()))??;
    let rec = Record::EpochStart(EpochStart {
        lineage,
        epoch,
        base_txid: 0,
        base_checksum: sums.total(),
        ts_us: now_us(),
        node_id: node_id.clone(),
    });
    let ack = log.append(rec.headers(), rec.encode(), Some(0)).await?;
    let leader = Leader::start(
        LeaderConfig::new(
            db_path,
            LeaderStart {
                lineage,
                epoch,
                base_txid: 0,
                base_checksum: Some(sums.total()),
                node_id,
            },
            ack.seq,
        ),
        log.clone(),
    )
    .await?;
    if sums.page_count() > 0 {
        let snap = leader.snapshot().await?;
        snapshot::publish(store.as_ref(), log.as_ref(), &snap, 2).await?;
    }
    Ok(leader)
}
