//! The leader of an app not running on this node, read from its lease record by the rules the
//! election applies (see docs/PROTOCOL.md "Lease record"): used by status and RPC routing alike.

use cluster_core::election::{FLOOR_KEY, FloorRecord, LeaseRecord};
use cluster_core::epoch::Epoch;
use cluster_core::error::Result;
use cluster_core::id::NodeId;
use cluster_core::kv::KvBucket;

/// The holder and epoch of the lease at `key`, when its record is trusted: it decodes, has a
/// known version, hands nothing over and its epoch hint is consistent with the store
/// (`floor + revision`, [`LeaseRecord::epoch_at`]). `None` when there is no lease or it is
/// held by an unknown holder. Expiry is the store's TTL.
pub(crate) async fn trusted_leader(
    bucket: &dyn KvBucket,
    key: &str,
) -> Result<Option<(NodeId, Epoch)>> {
    let Some(entry) = bucket.get(key).await? else {
        return Ok(None);
    };
    let Ok(rec) = LeaseRecord::decode(&entry.value) else {
        return Ok(None);
    };
    if rec.handoff_to.is_some() {
        return Ok(None);
    }
    // A malformed floor counts as 0, as in the election.
    let floor = match bucket.get(FLOOR_KEY).await? {
        Some(f) => FloorRecord::decode(&f.value).map_or(0, |r| r.floor),
        None => 0,
    };
    Ok(rec
        .epoch_at(entry.revision, floor)
        .map(|epoch| (rec.node, epoch)))
}
