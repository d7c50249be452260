//! Audit events of the replication engine (category `wal`, `docs/protocol/audit.md`):
//! promotion, divergence, standby restores, operator restores and snapshot deletions.

use std::sync::Arc;

use cluster_core::audit::category::WAL;
use cluster_runtime::App;

/// `wal.promoted`: this node's replica became the writable leader.
pub const PROMOTED: &str = "promoted";
/// `wal.promotion-failed`: promotion failed; the replica follows the log again.
pub const PROMOTION_FAILED: &str = "promotion-failed";
/// `wal.promotion-blocked`: the promotion failed for a reason that repeats; this node stops
/// standing for leadership until the standby re-syncs or an operator clears it.
pub const PROMOTION_BLOCKED: &str = "promotion-blocked";
/// `wal.promotion-unblocked`: the cause changed (standby re-synced, operator action); this node
/// stands for leadership again.
pub const PROMOTION_UNBLOCKED: &str = "promotion-unblocked";
/// `wal.resync`: an operator re-synced this standby (`cluster wal resync`): published its
/// replica as the newest snapshot, or restored the newest snapshot.
pub const RESYNC: &str = "resync";
/// `wal.divergence`: the standby refused a record (checksum, lineage, corruption, gap) and
/// resyncs from a snapshot.
pub const DIVERGENCE: &str = "divergence";
/// `wal.standby.restored`: a standby replaced its file by a snapshot (fresh, behind the trim,
/// or after a divergence).
pub const STANDBY_RESTORED: &str = "standby.restored";
/// `wal.restore.started` / `wal.restore.completed` / `wal.restore.failed`: an operator restore.
pub const RESTORE_STARTED: &str = "restore.started";
/// See [`RESTORE_STARTED`].
pub const RESTORE_COMPLETED: &str = "restore.completed";
/// See [`RESTORE_STARTED`].
pub const RESTORE_FAILED: &str = "restore.failed";
/// `wal.snapshot.deleted`: an operator deleted a snapshot.
pub const SNAPSHOT_DELETED: &str = "snapshot.deleted";

/// Where the engine reports its audit events.
///
/// # To ensure correctness
///
/// `record` is called from async tasks and from the follower's blocking thread: it must not
/// block or wait on either (queue the record and return). Recording is best effort; a failure
/// to record must not fail the operation that is being audited.
pub trait WalAudit: Send + Sync + std::fmt::Debug {
    /// Records event `wal.{action}` with `data` (a JSON object).
    fn record(&self, action: &str, data: serde_json::Value);
}

/// The app's platform audit stream (the record names the app and this node).
impl WalAudit for App {
    fn record(&self, action: &str, data: serde_json::Value) {
        if let Err(e) = self.audit(WAL, action, data) {
            tracing::debug!(error = %e, action, "wal audit record not emitted");
        }
    }
}

/// Records `action` on `audit` if there is one, and always logs it on the `audit` target.
pub(crate) fn emit(audit: Option<&Arc<dyn WalAudit>>, action: &str, data: serde_json::Value) {
    tracing::info!(target: "audit", action, %data, "wal");
    if let Some(a) = audit {
        a.record(action, data);
    }
}
