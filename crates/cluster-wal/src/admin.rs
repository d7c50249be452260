//! Admin extensions of a replicated database, served through the node's admin service
//! (`app.ext`, see `docs/protocol/wal.md`, "Admin extensions"): the `cluster snapshot *`
//! commands and `wal.status`. Leader-only operations answer `not_leader` (with the leader
//! when known) on other nodes; the CLI sends them to the app's leader.

use cluster_core::error::{Error, Result};
use cluster_runtime::App;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::resource::{WalDb, WalRole, to_core};
use crate::snapshot::SnapshotMeta;
use crate::sqlite::now_us;

/// Extension names.
pub const SNAPSHOT_CREATE: &str = "wal.snapshot.create";
/// Lists snapshots (any node).
pub const SNAPSHOT_LIST: &str = "wal.snapshot.list";
/// Deletes a snapshot (leader; args `{"id": …}`).
pub const SNAPSHOT_DELETE: &str = "wal.snapshot.delete";
/// Restores a snapshot (leader; args `{"id": …}`), then steps the app down; with
/// `"without_leader": true`, on a standby while no node leads (no step-down).
pub const SNAPSHOT_RESTORE: &str = "wal.snapshot.restore";
/// Role and replication progress of the local replica (any node).
pub const STATUS: &str = "wal.status";
/// Re-syncs the local standby without a leader (any standby; args `{"publish": bool}`): with
/// `publish`, its replica becomes the newest snapshot; otherwise it restores the newest one.
pub const RESYNC: &str = "wal.resync";

#[derive(Deserialize)]
struct ResyncArgs {
    #[serde(default)]
    publish: bool,
}

#[derive(Deserialize)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
struct RestoreArgs {
    id: String,
    /// Restore on this standby because no node leads the database.
    #[serde(default)]
    without_leader: bool,
}

/// One snapshot as the admin extensions report it (JSON object, version 1 of the reply).
pub fn snapshot_json(m: &SnapshotMeta) -> Value {
    let age = (m.created_us > 0).then(|| now_us().saturating_sub(m.created_us) / 1_000_000);
    json!({
        "id": m.id(),
        "lineage": m.lineage.to_string(),
        "epoch": m.epoch,
        "txid": m.txid,
        "stream_seq": m.stream_seq,
        "checksum": format!("{:016x}", m.checksum),
        "size": u64::from(m.page_count) * u64::from(m.page_size),
        "created_us": m.created_us,
        "age_secs": age,
    })
}

fn token(app: &App) -> Result<cluster_core::epoch::Epoch> {
    app.fencing_token().ok_or_else(|| {
        let leader = app.election_state().and_then(|s| s.leader);
        Error::NotLeader {
            epoch: leader.as_ref().map(|l| l.epoch),
            leader: leader.map(|l| l.node),
        }
    })
}

/// `Ok` while this node knows no leader of the app (a lease valid now), else `NotLeader`
/// naming it.
fn no_leader(app: &App) -> Result<()> {
    match app.election_state().and_then(|s| s.leader) {
        None => Ok(()),
        Some(l) => Err(Error::NotLeader {
            epoch: Some(l.epoch),
            leader: Some(l.node),
        }),
    }
}

fn id_of(args: Value) -> Result<String> {
    serde_json::from_value::<IdArgs>(args)
        .map(|a| a.id)
        .map_err(|e| Error::InvalidArgument(format!("give the snapshot id: {e}")))
}

/// Registers the `wal.*` admin extensions of `db` on `app`.
pub fn register(app: &App, db: &WalDb) {
    let (a, d) = (app.clone(), db.clone());
    app.on_admin(SNAPSHOT_CREATE, move |_| {
        let (a, d) = (a.clone(), d.clone());
        async move {
            let meta = d.snapshot_now(token(&a)?).await.map_err(to_core)?;
            Ok(snapshot_json(&meta))
        }
    });
    let d = db.clone();
    app.on_admin(SNAPSHOT_LIST, move |_| {
        let d = d.clone();
        async move {
            let list = d.snapshots().await.map_err(to_core)?;
            Ok(json!({ "snapshots": list.iter().map(snapshot_json).collect::<Vec<_>>() }))
        }
    });
    let (a, d) = (app.clone(), db.clone());
    app.on_admin(SNAPSHOT_DELETE, move |args| {
        let (a, d) = (a.clone(), d.clone());
        async move {
            let id = id_of(args)?;
            let meta = d.delete_snapshot(token(&a)?, &id).await.map_err(to_core)?;
            Ok(snapshot_json(&meta))
        }
    });
    let (a, d) = (app.clone(), db.clone());
    app.on_admin(SNAPSHOT_RESTORE, move |args| {
        let (a, d) = (a.clone(), d.clone());
        async move {
            let args: RestoreArgs = serde_json::from_value(args)
                .map_err(|e| Error::InvalidArgument(format!("give the snapshot id: {e}")))?;
            let id = args.id;
            if args.without_leader {
                let report = d
                    .restore_snapshot_without_leader(&id, || no_leader(&a))
                    .await
                    .map_err(to_core)?;
                return serde_json::to_value(&report).map_err(|e| Error::Internal(e.to_string()));
            }
            let mut report = d.restore_snapshot(token(&a)?, &id).await.map_err(to_core)?;
            let t = std::time::Instant::now();
            a.step_down().await?;
            report.steps.push(crate::restore::RestoreStep {
                step: "stepped the app down: backends stop, every replica restores the new \
                       lineage's snapshot, the next leader promotes from it"
                    .into(),
                ms: t.elapsed().as_millis() as u64,
            });
            serde_json::to_value(&report).map_err(|e| Error::Internal(e.to_string()))
        }
    });
    let d = db.clone();
    app.on_admin(RESYNC, move |args| {
        let d = d.clone();
        async move {
            let a: ResyncArgs = if args.is_null() {
                ResyncArgs { publish: false }
            } else {
                serde_json::from_value(args)
                    .map_err(|e| Error::InvalidArgument(format!("wal.resync: {e}")))?
            };
            d.resync(a.publish).await.map_err(to_core)
        }
    });
    let d = db.clone();
    app.on_admin(STATUS, move |_| {
        let d = d.clone();
        async move {
            let s = d.status();
            let role = match s.role {
                WalRole::Leader(e) => format!("leader (epoch {e})"),
                WalRole::Standby => "standby".into(),
                WalRole::Stopped => "stopped".into(),
            };
            Ok(json!({
                "role": role,
                "leader": s.leader.map(|p| json!({
                    "captured_txid": p.captured_txid, "acked_txid": p.acked_txid,
                    "acked_seq": p.acked_seq, "bytes_shipped": p.bytes_shipped, "stopped": p.stopped,
                })),
                "standby": s.standby.map(|p| json!({
                    "txid": p.position.txid, "stream_seq": p.position.stream_seq,
                    "lineage": p.position.lineage.map(|l| l.to_string()),
                })),
                "promotion_blocked": s.promotion_blocked.map(|b| json!({
                    "reason": b.reason, "epoch": b.epoch, "since_us": b.since_us,
                })),
            }))
        }
    });
}
