//! Membership: this node's presence record and the view of every live member.
//!
//! * **Join**: `create(members/{node}, ttl = member_ttl)`. If the key exists a live process
//!   already uses this node id: start fails with `NodeIdInUse`. A graceful leave deletes the
//!   key, so a restart afterwards joins at once.
//! * **Heartbeat**: every `member_refresh`, `update(expected = our revision, ttl)`. If the key
//!   vanished (expired during a partition) it is created again; if another process took the id
//!   meanwhile the node stops with `NodeIdInUse`.
//! * **View**: a watch of the bucket plus a reconciliation every `member_ttl` (a safety net for
//!   lost expiry events). Expiry of a crashed node's record removes it within `member_ttl` of its
//!   last refresh and fires `on_member_leave` on every app.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::app::locked;
use super::notify::Notification;
use super::platform::Shared;
use crate::error::{Error, Result};
use crate::id::NodeId;
use crate::kv::{KvBucket, Revision, WatchOp};
use crate::member::Member;
use crate::wire::member::MemberRecord;

/// The live members as seen by this node.
pub(crate) type MemberMap = BTreeMap<NodeId, Member>;

/// This node's presence in the members bucket.
pub(crate) struct Presence {
    bucket: Arc<dyn KvBucket>,
    key: String,
    revision: Arc<Mutex<Revision>>,
    /// Set by `leave`: the heartbeat must not write (or re-create) the record any more.
    left: Arc<std::sync::atomic::AtomicBool>,
}

impl Presence {
    /// Creates this node's record; `NodeIdInUse` if a live process has it.
    pub(crate) async fn join(shared: &Arc<Shared>, bucket: Arc<dyn KvBucket>) -> Result<Self> {
        let key = shared.names.member_key(&shared.node);
        let record = MemberRecord::from_member(&shared.local_member()).encode()?;
        match bucket
            .create(&key, record, Some(shared.options.member_ttl))
            .await
        {
            Ok(rev) => {
                info!(node = %shared.node, "joined the platform");
                shared.audit(
                    crate::audit::category::MEMBER,
                    "join",
                    None,
                    serde_json::json!({"node": shared.node, "instance": shared.instance}),
                );
                Ok(Self {
                    bucket,
                    key,
                    revision: Arc::new(Mutex::new(rev)),
                    left: Arc::default(),
                })
            }
            Err(Error::Conflict { .. }) => Err(Error::NodeIdInUse(shared.node.clone())),
            Err(e) => Err(e),
        }
    }

    /// Refreshes the record until aborted; reports a lost node id on `fatal`.
    pub(crate) fn spawn_heartbeat(
        &self,
        shared: &Arc<Shared>,
        fatal: mpsc::UnboundedSender<Error>,
    ) -> JoinHandle<()> {
        let bucket = self.bucket.clone();
        let key = self.key.clone();
        let revision = self.revision.clone();
        let left = self.left.clone();
        let weak = Arc::downgrade(shared);
        let every = shared.options.member_refresh;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                {
                    let Some(shared) = weak.upgrade() else { return };
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shared.presence_changed.notified() => {}
                    }
                }
                let Some(shared) = weak.upgrade() else { return };
                if left.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(record) = MemberRecord::from_member(&shared.local_member()).encode() else {
                    continue;
                };
                let ttl = Some(shared.options.member_ttl);
                let expected = *locked(&revision);
                let result = match bucket.update(&key, record.clone(), expected, ttl).await {
                    Err(Error::Conflict { current: None, .. })
                        if left.load(std::sync::atomic::Ordering::SeqCst) =>
                    {
                        return;
                    }
                    Err(Error::Conflict { current: None, .. }) => {
                        warn!(node = %shared.node, "member record expired; joining again");
                        bucket.create(&key, record, ttl).await
                    }
                    other => other,
                };
                match result {
                    Ok(rev) => *locked(&revision) = rev,
                    Err(Error::Conflict { .. }) => {
                        // Someone else holds our id, unless it is our own write that we did
                        // not see acknowledged.
                        match bucket.get(&key).await {
                            Ok(Some(e)) => match MemberRecord::decode(&e.value) {
                                Ok(r) if r.instance == shared.instance => {
                                    *locked(&revision) = e.revision
                                }
                                _ => {
                                    let _ = fatal.send(Error::NodeIdInUse(shared.node.clone()));
                                    return;
                                }
                            },
                            Ok(None) => *locked(&revision) = Revision(0),
                            Err(e) => debug!(error = %e, "cannot read member record"),
                        }
                    }
                    Err(e) => debug!(error = %e, "member heartbeat failed; retrying"),
                }
            }
        })
    }

    /// Publishes this node's record now (best effort).
    pub(crate) async fn publish(&self, shared: &Arc<Shared>) {
        if self.left.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Ok(record) = MemberRecord::from_member(&shared.local_member()).encode() else {
            return;
        };
        let expected = *locked(&self.revision);
        let ttl = Some(shared.options.member_ttl);
        if let Ok(rev) = self.bucket.update(&self.key, record, expected, ttl).await {
            *locked(&self.revision) = rev;
        }
    }

    /// Deletes this node's record (graceful leave). A heartbeat racing with the leave may have
    /// rewritten the record: then the current revision is re-read and, if the record is still
    /// this process's, deleted.
    pub(crate) async fn leave(&self, instance: &str) -> Result<()> {
        self.left.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut rev = *locked(&self.revision);
        for _ in 0..3 {
            match self.bucket.delete(&self.key, Some(rev)).await {
                Ok(()) => return Ok(()),
                Err(Error::Conflict { .. }) => match self.bucket.get(&self.key).await? {
                    Some(e)
                        if MemberRecord::decode(&e.value).is_ok_and(|r| r.instance == instance) =>
                    {
                        rev = e.revision;
                    }
                    _ => return Ok(()),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Starts the membership view; returns its watch and the task maintaining it.
pub(crate) async fn start_view(
    shared: &Arc<Shared>,
    bucket: Arc<dyn KvBucket>,
) -> Result<(watch::Receiver<MemberMap>, JoinHandle<()>)> {
    let mut events = bucket.watch("").await?;
    let mut view = View {
        members: BTreeMap::new(),
        revisions: BTreeMap::new(),
    };
    view.reconcile(shared, bucket.as_ref(), false).await?;
    let (tx, rx) = watch::channel(view.members.clone());
    let platform = shared.names.platform().to_string();
    crate::metrics::members(&platform, view.members.len());
    let weak = Arc::downgrade(shared);
    let every = shared.options.member_ttl;
    let task = tokio::spawn(async move {
        loop {
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
                _ = tokio::time::sleep(every) => {
                    let Some(shared) = weak.upgrade() else { return };
                    if let Err(e) = view.reconcile(&shared, bucket.as_ref(), true).await {
                        debug!(error = %e, "membership reconciliation failed");
                    }
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
    Ok((rx, task))
}

struct View {
    members: MemberMap,
    revisions: BTreeMap<NodeId, Revision>,
}

impl View {
    fn apply(&mut self, shared: &Arc<Shared>, ev: crate::kv::WatchEvent) {
        let Ok(node) = NodeId::new(ev.key.as_str()) else {
            shared.stats.count_malformed("member");
            return;
        };
        if self.revisions.get(&node).is_some_and(|r| *r >= ev.revision) {
            return;
        }
        match ev.op {
            WatchOp::Put => match MemberRecord::decode(&ev.value) {
                Ok(record) => self.upsert(shared, node, record.into_member(), ev.revision, true),
                Err(e) => {
                    shared.stats.count_malformed("member");
                    warn!(error = %e, "ignoring malformed member record");
                }
            },
            WatchOp::Delete | WatchOp::Expired => {
                // The last record's revision identifies this departure on every observer.
                let last = self.revisions.get(&node).copied().unwrap_or(ev.revision);
                self.revisions.insert(node.clone(), ev.revision);
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

    fn upsert(
        &mut self,
        shared: &Arc<Shared>,
        node: NodeId,
        member: Member,
        rev: Revision,
        notify: bool,
    ) {
        self.revisions.insert(node.clone(), rev);
        let joined = self.members.insert(node.clone(), member.clone()).is_none();
        if joined && notify {
            info!(node = %node, "member joined");
            if node != shared.node {
                crate::metrics::member_joined();
            }
            shared.notify_apps(&node, Notification::MemberJoin(member));
        }
    }

    /// Re-lists the bucket and applies the differences.
    async fn reconcile(
        &mut self,
        shared: &Arc<Shared>,
        bucket: &dyn KvBucket,
        notify: bool,
    ) -> Result<()> {
        let keys = bucket.keys("").await?;
        let mut seen = Vec::new();
        for key in keys {
            let Ok(node) = NodeId::new(key.as_str()) else {
                continue;
            };
            let Some(entry) = bucket.get(&key).await? else {
                continue;
            };
            seen.push(node.clone());
            if self
                .revisions
                .get(&node)
                .is_some_and(|r| *r >= entry.revision)
            {
                continue;
            }
            match MemberRecord::decode(&entry.value) {
                Ok(r) => self.upsert(shared, node, r.into_member(), entry.revision, notify),
                Err(_) => shared.stats.count_malformed("member"),
            }
        }
        let gone: Vec<NodeId> = self
            .members
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect();
        for node in gone {
            if let Some(member) = self.members.remove(&node) {
                info!(node = %node, "member left (reconciliation)");
                let rev = self.revisions.get(&node).copied().unwrap_or(Revision(0));
                left(shared, &node, "expired", rev);
                if notify {
                    shared.notify_apps(&node, Notification::MemberLeave(member));
                }
            }
        }
        Ok(())
    }
}

/// Counts another node's departure; an expiry (the node could not say goodbye) is audited by
/// every observer with one deduplication id, so it is stored once.
fn left(shared: &Shared, node: &NodeId, reason: &'static str, revision: Revision) {
    if *node == shared.node {
        return;
    }
    crate::metrics::member_left(reason);
    if reason == "expired" {
        shared.audit_record(
            crate::audit::AuditRecord::new(
                crate::audit::category::MEMBER,
                "leave",
                None,
                &shared.node,
                serde_json::json!({"node": node, "reason": reason}),
            )
            .with_id(format!("member.leave.{node}.{}", revision.0)),
        );
    }
}
