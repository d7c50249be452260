//! Leader election: the trait and the lease-based implementation over any [`KvBucket`].
//!
//! [`KvBucket`]: crate::kv::KvBucket

mod record;
mod timing;

pub use record::{
    FLOOR_KEY, FLOOR_RECORD_VERSION, FloorRecord, LEASE_RECORD_VERSION, LeaseRecord, MAX_FLOOR,
};
pub use timing::ElectionTiming;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::epoch::Epoch;
use crate::error::Result;
use crate::id::NodeId;
use crate::kv::Revision;

/// A record in the election bucket that an election refused to trust: it does not decode, has
/// an unknown version, or its epoch is inconsistent with the store. The election treats the key
/// as held by an unknown holder (taken over after `T·(1+ε)` without a change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// The key in the election bucket.
    pub key: String,
    /// The revision of the rejected record.
    pub revision: Revision,
    /// Why it was rejected.
    pub reason: String,
}

/// Receives every [`RejectedRecord`] once (e.g. to audit it as `election.record.rejected`).
pub type RejectionReporter = Arc<dyn Fn(&RejectedRecord) + Send + Sync>;

/// Who leads, from a lease valid now (see [`ElectionState::leader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leader's node id.
    pub node: NodeId,
    /// The leader's process instance.
    pub instance: String,
    /// The leader's epoch (fencing token).
    pub epoch: Epoch,
}

/// This node's own leadership term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// The term's epoch (fencing token).
    pub epoch: Epoch,
    /// The local monotonic instant at which this node stops acting as leader unless it renews
    /// successfully before. It is always earlier than the moment the lease can expire in the
    /// store.
    pub deadline: Instant,
}

/// The observable state of one election on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectionState {
    /// The leader, from a lease valid *now* on the local monotonic clock (may be this node):
    /// this node's own term until its deadline, another node's lease until `T` after this node
    /// last saw it change. `None` when no valid lease is known, also while the key holds a
    /// record this node does not trust.
    pub leader: Option<LeaderInfo>,
    /// The local instant since which no valid lease is known (`None` while `leader` is set).
    pub leaderless_since: Option<Instant>,
    /// `Some` while this node holds leadership.
    pub leading: Option<Leadership>,
    /// Whether this node is currently campaigning.
    pub candidate: bool,
    /// The local instant at which this node last saw the lease written (acquired or renewed,
    /// by any node); `None` while no lease exists. Drives the seconds-since-renewal metric.
    pub lease_seen_at: Option<Instant>,
}

impl ElectionState {
    /// Whether this node holds leadership.
    pub fn is_leader(&self) -> bool {
        self.leading.is_some()
    }
}

/// A leader election for one scope (one Singleton app) as seen from one node.
///
/// # To ensure correctness
///
/// * **Safety:** at any instant at most one node's [`Election::fencing_token`] returns `Some`
///   for a given epoch, and a node whose term has ended (resigned, lost the lease, deadline
///   passed) never reports `leading` again for that epoch.
/// * **Monotonic epochs:** each new term has a strictly greater epoch than every earlier term
///   of the same scope, across restarts of every node.
/// * **Self-demotion:** the leader stops reporting `leading` at its local deadline, measured on
///   its own monotonic clock from the *start* of its last successful renewal, and that deadline
///   precedes the earliest instant at which another node can win.
/// * **No wall clocks:** no decision compares timestamps written by another machine.
/// * **Immediate handover:** [`Election::resign`] releases the lease at once so a watching
///   candidate can win without waiting for a TTL; the resigning node does not campaign again
///   before its cooldown.
/// * **Crash detection:** when the leader disappears without resigning, a candidate wins within
///   the lease TTL after the leader's last renewal, plus a documented bound.
/// * **Handoff:** [`Election::handoff`] lets exactly the named node take the next term; no other
///   node can win during the handoff window (bounded by the TTL).
/// * Observers read [`Election::status`], a watch of the current state; they never miss the
///   latest state and never see a stale state after a newer one.
#[async_trait]
pub trait Election: Send + Sync + 'static {
    /// The current state; updated on every change.
    fn status(&self) -> watch::Receiver<ElectionState>;

    /// Starts (`true`) or stops (`false`) campaigning. Stopping while leader resigns.
    async fn set_candidate(&self, candidate: bool) -> Result<()>;

    /// Steps down if leader: releases the lease at once and waits the cooldown before campaigning
    /// again. A no-op when not leader.
    async fn resign(&self) -> Result<()>;

    /// Hands leadership to `to`, which must be campaigning. Fails with `NotLeader` when this node
    /// is not the leader.
    async fn handoff(&self, to: &NodeId) -> Result<()>;

    /// The epoch of the current term while this node is leader and before its deadline.
    fn fencing_token(&self) -> Option<Epoch>;

    /// Stops campaigning and releases leadership; the election is unusable afterwards.
    async fn close(&self);
}
