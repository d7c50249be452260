//! The membership view: every live member as seen by this node.
//!
//! * A watch of the members bucket plus a re-listing every 30 s (at least `member_ttl`; a safety net for
//!   lost events).
//! * **Liveness is judged on this node's monotonic clock, never by the record**: a record
//!   (any bytes) that was not seen changing for `member_ttl + member_refresh` (one heartbeat
//!   of grace, so the store's expiry of a crashed node's record comes first) is *stale*: dead for every
//!   decision (it leaves the view, so placement, status, health and the member hooks drop it)
//!   and removed from the bucket by compare-and-delete on the revision seen. A live member
//!   rewrites its record every `member_refresh` and is never stale; a record without TTL or
//!   one whose store expiry was lost is removed within `member_ttl + member_refresh` of being
//!   seen.
//! * An undecodable record does not replace the member it overwrote (its owner rewrites it at
//!   once); it is counted in `gc_malformed_messages_total` and removed when stale.
//! * A record seen *appearing* while the view runs becomes a member only once it is seen
//!   renewed (a joining node renews at once): a record written once is never a member. Records
//!   found by the first listing are members at once (and go stale if never renewed).
//! * Our own record is the heartbeat's business: any write to it that is not ours wakes the
//!   heartbeat, which rewrites it (see [`super::membership`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::notify::Notification;
use super::platform::Shared;
use crate::sync::locked;
use cluster_core::error::{Error, Result};
use cluster_core::id::NodeId;
use cluster_core::kv::{KvBucket, Revision, WatchEvent, WatchOp};
use cluster_core::member::Member;
use cluster_core::wire::member::MemberRecord;

/// The live members as seen by this node.
pub(crate) type MemberMap = BTreeMap<NodeId, Member>;

/// What this node saw last of one member key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The latest revision seen (a write, or the deletion/expiry).
    pub(crate) revision: Revision,
    /// When that revision was first seen here (local monotonic clock).
    pub(crate) since: Instant,
    /// The revision replaced a live record seen here: the record is being rewritten.
    pub(crate) renewed: bool,
    /// No live record: deleted, expired, or stale (then `revision` is the stale write).
    pub(crate) dead: bool,
}

/// The liveness of every member key, shared with the admin service (`node remove`).
pub(crate) struct Liveness {
    bucket: Arc<dyn KvBucket>,
    seen: Mutex<BTreeMap<NodeId, Seen>>,
}

impl Liveness {
    /// The members bucket.
    pub(crate) fn bucket(&self) -> &Arc<dyn KvBucket> {
        &self.bucket
    }

    /// What this node saw last of `node`'s key.
    pub(crate) fn seen(&self, node: &NodeId) -> Option<Seen> {
        locked(&self.seen).get(node).copied()
    }

    /// Whether `node`'s record was seen renewed here, or first seen less than two heartbeats
    /// (`2 × member_refresh`) ago: what status and health show as a member.
    pub(crate) fn confirmed(&self, node: &NodeId, shared: &Shared) -> bool {
        self.seen(node).is_some_and(|s| {
            !s.dead
                && (s.renewed
                    || shared.clock.now().duration_since(s.since)
                        < shared.options.member_refresh * 2)
        })
    }
}

/// Starts the membership view; returns its watch, the liveness table and the task
/// maintaining them.
pub(crate) async fn start_view(
    shared: &Arc<Shared>,
    bucket: Arc<dyn KvBucket>,
) -> Result<(watch::Receiver<MemberMap>, Arc<Liveness>, JoinHandle<()>)> {
    let mut events = bucket.watch("").await?;
    let liveness = Arc::new(Liveness {
        bucket: bucket.clone(),
        seen: Mutex::new(BTreeMap::new()),
    });
    let mut view = View {
        members: BTreeMap::new(),
        liveness: liveness.clone(),
    };
    view.reconcile(shared, false).await?;
    let (tx, rx) = watch::channel(view.members.clone());
    let platform = shared.names.platform().to_string();
    crate::metrics::members(&platform, view.members.len());
    let weak = Arc::downgrade(shared);
    let every = shared.options.member_ttl.max(RECONCILE_EVERY);
    let mut next_reconcile = shared.clock.now() + every;
    let task = tokio::spawn(async move {
        loop {
            let stale_at = {
                let Some(shared) = weak.upgrade() else { return };
                view.next_stale(&shared)
            };
            tokio::select! {
                ev = events.next() => {
                    let Some(shared) = weak.upgrade() else { return };
                    match ev {
                        Some(ev) => view.apply(&shared, ev),
                        None => match bucket.watch("").await {
                            Ok(w) => events = w,
                            Err(e) => {
                                debug!(error = %e, "cannot reopen members watch");
                                tokio::time::sleep(shared.options.member_refresh).await;
                            }
                        },
                    }
                }
                _ = tokio::time::sleep_until(next_reconcile) => {
                    let Some(shared) = weak.upgrade() else { return };
                    next_reconcile = shared.clock.now() + every;
                    if let Err(e) = view.reconcile(&shared, true).await {
                        debug!(error = %e, "membership reconciliation failed");
                    }
                }
                _ = sleep_until_some(stale_at) => {
                    let Some(shared) = weak.upgrade() else { return };
                    view.remove_stale(&shared).await;
                }
            }
            crate::metrics::members(&platform, view.members.len());
            tx.send_if_modified(|m| {
                if *m != view.members {
                    m.clone_from(&view.members);
                    true
                } else {
                    false
                }
            });
        }
    });
    Ok((rx, liveness, task))
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct View {
    members: MemberMap,
    liveness: Arc<Liveness>,
}

impl View {
    fn apply(&mut self, shared: &Arc<Shared>, ev: WatchEvent) {
        let Ok(node) = NodeId::new(ev.key.as_str()) else {
            shared.stats.count_malformed("member");
            return;
        };
        if self
            .liveness
            .seen(&node)
            .is_some_and(|s| s.revision >= ev.revision)
        {
            return;
        }
        match ev.op {
            WatchOp::Put => self.put(shared, node, &ev.value, ev.revision, true),
            WatchOp::Delete | WatchOp::Expired => {
                // The last record's revision identifies this departure on every observer.
                let last = self
                    .liveness
                    .seen(&node)
                    .map_or(ev.revision, |s| s.revision);
                self.mark(shared, &node, ev.revision, true);
                if node == shared.node {
                    // Our record is gone: the heartbeat writes it again (unless we leave).
                    shared.refresh_presence();
                }
                if let Some(member) = self.members.remove(&node) {
                    info!(node = %node, reason = ?ev.op, "member left");
                    let reason = if ev.op == WatchOp::Expired {
                        "expired"
                    } else {
                        "graceful"
                    };
                    left(shared, &node, reason, last);
                    shared.notify_apps(&node, Notification::MemberLeave(member));
                }
            }
        }
    }

    /// Records that `node`'s key is at `revision` from now on.
    fn mark(&self, shared: &Shared, node: &NodeId, revision: Revision, dead: bool) {
        let mut seen = locked(&self.liveness.seen);
        let renewed = !dead && seen.get(node).is_some_and(|s| !s.dead);
        seen.insert(
            node.clone(),
            Seen {
                revision,
                since: shared.clock.now(),
                renewed,
                dead,
            },
        );
    }

    /// A write of `node`'s key.
    fn put(
        &mut self,
        shared: &Arc<Shared>,
        node: NodeId,
        value: &[u8],
        rev: Revision,
        notify: bool,
    ) {
        self.mark(shared, &node, rev, false);
        match MemberRecord::decode(value) {
            Ok(record) => {
                if node == shared.node && record.instance != shared.instance {
                    warn!(instance = %record.instance, "another instance wrote our member record");
                    shared.refresh_presence();
                }
                // Seen appearing while running: a member once renewed (a joining node renews
                // at once; a record written once and never again is not a member).
                let renewed = self.liveness.seen(&node).is_some_and(|s| s.renewed);
                if notify && !renewed && node != shared.node && !self.members.contains_key(&node) {
                    debug!(node = %node, "member record seen appearing; admitted once renewed");
                    return;
                }
                let member = record.into_member();
                let joined = self.members.insert(node.clone(), member.clone()).is_none();
                if joined && notify {
                    info!(node = %node, "member joined");
                    if node != shared.node {
                        crate::metrics::member_joined();
                    }
                    shared.notify_apps(&node, Notification::MemberJoin(member));
                }
            }
            Err(e) => {
                shared.stats.count_malformed("member");
                warn!(node = %node, error = %e, "ignoring malformed member record");
                if node == shared.node {
                    shared.refresh_presence();
                }
            }
        }
    }

    /// When the next record becomes stale (our own record is the heartbeat's business).
    fn next_stale(&self, shared: &Shared) -> Option<Instant> {
        locked(&self.liveness.seen)
            .iter()
            .filter(|(n, s)| **n != shared.node && !s.dead)
            .map(|(_, s)| s.since + stale_after(shared))
            .min()
    }

    /// Drops every record not seen changing for [`stale_after`] from the view and deletes it
    /// from the bucket, if still at the revision seen.
    async fn remove_stale(&mut self, shared: &Arc<Shared>) {
        let now = shared.clock.now();
        let ttl = stale_after(shared);
        let stale: Vec<(NodeId, Revision)> = {
            let mut seen = locked(&self.liveness.seen);
            seen.iter_mut()
                .filter(|(n, s)| **n != shared.node && !s.dead && s.since + ttl <= now)
                .map(|(n, s)| {
                    s.dead = true;
                    (n.clone(), s.revision)
                })
                .collect()
        };
        for (node, revision) in stale {
            warn!(node = %node, %revision, ?ttl, "member record not renewed: removing it");
            if let Some(member) = self.members.remove(&node) {
                left(shared, &node, "stale", revision);
                shared.notify_apps(&node, Notification::MemberLeave(member));
            }
            let key = shared.names.member_key(&node);
            match self.liveness.bucket.delete(&key, Some(revision)).await {
                Ok(()) => info!(node = %node, %revision, "stale member record removed"),
                Err(Error::Conflict { .. }) => {
                    debug!(node = %node, "stale member record changed meanwhile; keeping it")
                }
                Err(e) => debug!(node = %node, error = %e, "cannot remove stale member record"),
            }
        }
    }

    /// Re-lists the bucket and applies the differences.
    async fn reconcile(&mut self, shared: &Arc<Shared>, notify: bool) -> Result<()> {
        let bucket = self.liveness.bucket.clone();
        let keys = bucket.keys("").await?;
        let mut present = Vec::new();
        for key in keys {
            let Ok(node) = NodeId::new(key.as_str()) else {
                continue;
            };
            let Some(entry) = bucket.get(&key).await? else {
                continue;
            };
            present.push(node.clone());
            match self.liveness.seen(&node) {
                // A stale record whose removal failed: try again.
                Some(s) if s.dead && s.revision == entry.revision && node != shared.node => {
                    if let Err(e) = bucket.delete(&key, Some(entry.revision)).await {
                        debug!(node = %node, error = %e, "cannot remove stale member record");
                    }
                    continue;
                }
                Some(s) if s.revision >= entry.revision => continue,
                _ => {}
            }
            self.put(shared, node, &entry.value, entry.revision, notify);
        }
        let gone: Vec<(NodeId, Revision)> = locked(&self.liveness.seen)
            .iter()
            .filter(|(n, s)| !s.dead && !present.contains(n))
            .map(|(n, s)| (n.clone(), s.revision))
            .collect();
        for (node, rev) in gone {
            if let Some(s) = locked(&self.liveness.seen).get_mut(&node) {
                s.dead = true;
            }
            if let Some(member) = self.members.remove(&node) {
                info!(node = %node, "member left (reconciliation)");
                left(shared, &node, "expired", rev);
                if notify {
                    shared.notify_apps(&node, Notification::MemberLeave(member));
                }
            }
        }
        Ok(())
    }
}

/// How often the view re-lists the bucket as a safety net for lost watch events (at least
/// `member_ttl`): departures do not wait for it (a record not seen changing is stale on the
/// local clock), so it only catches a missed join or update, at O(members) reads per interval.
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a record may stay unchanged: `member_ttl`, plus one heartbeat of grace so that
/// the store's own expiry of a crashed node's record (reported as `expired`) comes first.
fn stale_after(shared: &Shared) -> std::time::Duration {
    shared.options.member_ttl + shared.options.member_refresh
}

/// Counts another node's departure; one the node could not announce (expiry, staleness) is
/// audited by every observer with one deduplication id, so it is stored once.
fn left(shared: &Shared, node: &NodeId, reason: &'static str, revision: Revision) {
    if *node == shared.node {
        return;
    }
    crate::metrics::member_left(reason);
    if reason != "graceful" {
        shared.audit_record(
            cluster_core::audit::AuditRecord::new(
                cluster_core::audit::category::MEMBER,
                "leave",
                None,
                &shared.node,
                serde_json::json!({"node": node, "reason": reason}),
            )
            .with_id(format!("member.leave.{node}.{}", revision.0)),
        );
    }
}
