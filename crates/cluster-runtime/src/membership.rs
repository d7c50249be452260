//! Membership: this node's presence record (join, heartbeat, leave). The view of every member
//! is in [`super::member_view`].
//!
//! * **Join**: `create(members/{node}, ttl = member_ttl)`. If a record exists, it is taken
//!   over by compare-and-set once its writer is proven gone (see [`super::member_claim`]); a
//!   record that is renewed meanwhile belongs to a live process: start fails with
//!   `NodeIdInUse`. The record is renewed right after it is written (running views admit a
//!   new member only once renewed). A graceful leave deletes the key, so a restart afterwards
//!   joins at once.
//! * **Heartbeat**: every `member_refresh` (and at once when the view sees a foreign write to
//!   our key), `update(expected = our revision, ttl)`. A deleted or expired record is created
//!   again; a record overwritten by anyone else (any bytes) is written again by
//!   compare-and-set on the revision found. The node never stops for that, except when the
//!   same other instance keeps writing the key: two live processes share the node id, and the
//!   one that finds its record taken twice stops with `NodeIdInUse`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::platform::Shared;
use crate::sync::locked;
use cluster_core::error::{Error, Result};
use cluster_core::kv::{KvBucket, Revision};
use cluster_core::wire::member::MemberRecord;

pub(crate) use super::member_view::{Liveness, MemberMap, start_view};

/// This node's presence in the members bucket.
pub(crate) struct Presence {
    bucket: Arc<dyn KvBucket>,
    key: String,
    revision: Arc<Mutex<Revision>>,
    /// Set by `leave`: the heartbeat must not write (or re-create) the record any more.
    left: Arc<AtomicBool>,
}

/// The last foreign instance found in our record: `(instance, its revision, when)`.
type Foreign = Option<(String, Revision, Instant)>;

/// What the heartbeat did about a record that was not at our revision.
enum Repair {
    /// The record is ours (again) at this revision.
    Ours(Revision),
    /// Another live process keeps writing our node id.
    Duplicate,
    /// Nothing could be done now; try at the next beat.
    Retry,
}

impl Presence {
    /// Creates this node's record, or takes over one whose writer is gone; `NodeIdInUse` if
    /// a live process has it.
    pub(crate) async fn join(shared: &Arc<Shared>, bucket: Arc<dyn KvBucket>) -> Result<Self> {
        let key = shared.names.member_key(&shared.node);
        let local_member = || shared.local_member();
        let claimant = super::member_claim::Claimant {
            node: &shared.ctx,
            host_lock: shared.host_lock.as_ref(),
            local_member: &local_member,
        };
        let rev = super::member_claim::claim(&claimant, bucket.as_ref(), &key).await?;
        // Renew at once: running views admit a member they see appear only once it is renewed
        // (a record written once and never again is not a member).
        let record = MemberRecord::from_member(&shared.local_member()).encode()?;
        let ttl = Some(shared.options.member_ttl);
        let rev = bucket.update(&key, record, rev, ttl).await.unwrap_or(rev);
        info!(node = %shared.node, "joined the platform");
        shared.audit(
            cluster_core::audit::category::MEMBER,
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

    /// Refreshes the record until aborted; reports another live process with our node id on
    /// `fatal`.
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
            let mut foreign: Foreign = None;
            loop {
                {
                    let Some(shared) = weak.upgrade() else { return };
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shared.presence_changed.notified() => {}
                    }
                }
                let Some(shared) = weak.upgrade() else { return };
                if left.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(record) = MemberRecord::from_member(&shared.local_member()).encode() else {
                    continue;
                };
                let ttl = Some(shared.options.member_ttl);
                let expected = *locked(&revision);
                let result = match bucket.update(&key, record.clone(), expected, ttl).await {
                    Err(Error::Conflict { current: None, .. }) if left.load(Ordering::SeqCst) => {
                        return;
                    }
                    Err(Error::Conflict { current: None, .. }) => {
                        warn!(node = %shared.node, "member record deleted or expired; writing it again");
                        // Renewed right after, so running views admit it again at once.
                        shared.refresh_presence();
                        bucket.create(&key, record.clone(), ttl).await
                    }
                    other => other,
                };
                match result {
                    Ok(rev) => *locked(&revision) = rev,
                    Err(Error::Conflict { .. }) => {
                        match repair(&shared, bucket.as_ref(), &key, record, &mut foreign).await {
                            Repair::Ours(rev) => *locked(&revision) = rev,
                            Repair::Duplicate => {
                                let _ = fatal.send(Error::NodeIdInUse(shared.node.clone()));
                                return;
                            }
                            Repair::Retry => {}
                        }
                        // A peer rewriting our key in a loop wakes the heartbeat each time:
                        // repairs happen at most ten times per `member_refresh` (jittered).
                        drop(shared);
                        tokio::time::sleep(super::member_claim::jittered(every / 10)).await;
                    }
                    Err(e) => debug!(error = %e, "member heartbeat failed; retrying"),
                }
            }
        })
    }

    /// Publishes this node's record now (best effort).
    pub(crate) async fn publish(&self, shared: &Arc<Shared>) {
        if self.left.load(Ordering::SeqCst) {
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
        self.left.store(true, Ordering::SeqCst);
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

/// Our record is not at the revision we wrote last: find out what is there and write ours
/// again by compare-and-set, unless the same other instance wrote it again after we had
/// taken it back (a live duplicate process).
async fn repair(
    shared: &Shared,
    bucket: &dyn KvBucket,
    key: &str,
    record: Bytes,
    foreign: &mut Foreign,
) -> Repair {
    let ttl = shared.options.member_ttl;
    let entry = match bucket.get(key).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return match bucket.create(key, record, Some(ttl)).await {
                Ok(rev) => Repair::Ours(rev),
                Err(e) => {
                    debug!(error = %e, "cannot write member record; retrying");
                    Repair::Retry
                }
            };
        }
        Err(e) => {
            debug!(error = %e, "cannot read member record; retrying");
            return Repair::Retry;
        }
    };
    let found = match MemberRecord::decode(&entry.value) {
        // Our own write whose acknowledgement we did not see.
        Ok(r) if r.instance == shared.instance => return Repair::Ours(entry.revision),
        Ok(r) => {
            let now = shared.clock.now();
            if let Some((instance, rev, at)) = foreign.as_ref()
                && *instance == r.instance
                && *rev != entry.revision
                && now.duration_since(*at) <= ttl * 2
            {
                return Repair::Duplicate;
            }
            *foreign = Some((r.instance.clone(), entry.revision, now));
            format!("instance {}", r.instance)
        }
        Err(_) => {
            shared.stats.count_malformed("member");
            "undecodable bytes".to_owned()
        }
    };
    warn!(node = %shared.node, revision = %entry.revision, %found, "our member record was overwritten; writing it again");
    shared.audit(
        cluster_core::audit::category::MEMBER,
        "rewrite",
        None,
        serde_json::json!({"node": shared.node, "revision": entry.revision.0, "found": found}),
    );
    match bucket.update(key, record, entry.revision, Some(ttl)).await {
        Ok(rev) => Repair::Ours(rev),
        Err(e) => {
            debug!(error = %e, "cannot rewrite member record; retrying");
            Repair::Retry
        }
    }
}
