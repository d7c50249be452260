//! Claiming this node's member key at join.
//!
//! The key is free: create it. It holds a record (any bytes): the writer is either a live
//! process with our node id (refuse) or gone (crashed, or a forgery); tell them apart without
//! trusting the record's content:
//!
//! 1. **Same-host proof** (opt-in, `PlatformBuilder::host_lock`): the record names this
//!    machine and an earlier boot, or the lock file this process now holds exclusively. Its
//!    writer is gone: take the key over at once by compare-and-set.
//! 2. Otherwise **watch the key** (local monotonic clock): a live process rewrites its record
//!    every `member_refresh`, so a change to a decodable record means it lives (`NodeIdInUse`);
//!    a record unchanged (or only ever rewritten with undecodable bytes) for `member_ttl` is
//!    taken over by compare-and-set on the revision seen; a deleted or expired one is created.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::node::NodeContext;
use cluster_core::error::{Error, Result};
use cluster_core::host::HostLock;
use cluster_core::kv::{KvBucket, KvEntry, KvWatch, Revision};
use cluster_core::member::Member;
use cluster_core::wire::member::MemberRecord;

/// Who claims the key: the node's services, its host lock (proof that an older record of
/// this node id on this host is ours and gone) and its current member record.
pub(super) struct Claimant<'a> {
    pub(super) node: &'a NodeContext,
    pub(super) host_lock: Option<&'a HostLock>,
    pub(super) local_member: &'a (dyn Fn() -> Member + Send + Sync),
}

/// Creates or takes over `key` for this node; returns the revision written.
pub(super) async fn claim(
    claimant: &Claimant<'_>,
    bucket: &dyn KvBucket,
    key: &str,
) -> Result<Revision> {
    let shared = claimant.node;
    let ttl = shared.options.member_ttl;
    let mut watch: Option<KvWatch> = None;
    // The revision first seen and when (local clock).
    let mut observed: Option<(Revision, Instant)> = None;
    loop {
        let record = MemberRecord::from_member(&(claimant.local_member)()).encode()?;
        match bucket.create(key, record.clone(), Some(ttl)).await {
            Ok(rev) => return Ok(rev),
            Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        // Watch before reading, so no change after the read is missed.
        if watch.is_none() {
            watch = Some(bucket.watch(key).await?);
        }
        let Some(entry) = bucket.get(key).await? else {
            // Gone between create and get (or the read lags): try again shortly.
            pause(shared, jittered(shared.options.member_refresh / 10)).await?;
            continue;
        };
        let decoded = MemberRecord::decode(&entry.value).ok();
        if let Some(why) = proven_gone(claimant.host_lock, decoded.as_ref()) {
            if let Some(rev) = take_over(shared, bucket, key, record, &entry, &why).await? {
                return Ok(rev);
            }
            // Rewritten meanwhile: look again shortly (a writer in a loop cannot make us spin).
            pause(shared, jittered(shared.options.member_refresh / 10)).await?;
            continue;
        }
        let now = shared.clock.now();
        let since = match observed {
            Some((rev, since)) if rev == entry.revision => since,
            // Rewritten while we watched: a live process. Garbage is no sign of life (our
            // processes write decodable records): it does not restart the clock.
            Some(_) if decoded.is_some() => return Err(Error::NodeIdInUse(shared.node.clone())),
            Some((_, since)) => {
                observed = Some((entry.revision, since));
                since
            }
            None => {
                info!(node = %shared.node, revision = %entry.revision, "our node id has a member record; waiting to see whether it is renewed");
                observed = Some((entry.revision, now));
                now
            }
        };
        if now >= since + ttl {
            let why = format!("not renewed for {ttl:?}");
            if let Some(rev) = take_over(shared, bucket, key, record, &entry, &why).await? {
                return Ok(rev);
            }
            // Rewritten meanwhile: look again shortly (a writer in a loop cannot make us spin).
            pause(shared, jittered(shared.options.member_refresh / 10)).await?;
            continue;
        }
        if let Some(w) = watch.as_mut() {
            wait_change(shared, w, key, since + ttl).await?;
        }
    }
}

/// Why the record's writer is certainly gone (same-host proof), if it is.
fn proven_gone(host_lock: Option<&HostLock>, record: Option<&MemberRecord>) -> Option<String> {
    let mine = host_lock?.info();
    let theirs = record?.host.as_ref()?;
    mine.proves_gone(theirs).then(|| {
        if theirs.boot_id != mine.boot_id {
            "written on this host before its last boot".to_owned()
        } else {
            "written on this host by the holder of our lock file".to_owned()
        }
    })
}

/// Overwrites `entry` by compare-and-set; `None` when it changed meanwhile.
async fn take_over(
    shared: &NodeContext,
    bucket: &dyn KvBucket,
    key: &str,
    record: bytes::Bytes,
    entry: &KvEntry,
    why: &str,
) -> Result<Option<Revision>> {
    let ttl = Some(shared.options.member_ttl);
    match bucket.update(key, record, entry.revision, ttl).await {
        Ok(rev) => {
            let previous = MemberRecord::decode(&entry.value)
                .map(|r| r.instance)
                .unwrap_or_default();
            warn!(node = %shared.node, %previous, reason = why, "took over the member record of a process that is gone");
            shared.audit(
                cluster_core::audit::category::MEMBER,
                "takeover",
                None,
                serde_json::json!({
                    "node": shared.node,
                    "instance": shared.instance,
                    "previous": previous,
                    "revision": entry.revision.0,
                    "reason": why,
                }),
            );
            Ok(Some(rev))
        }
        Err(Error::Conflict { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Waits until `key` changes or `until`, whichever comes first.
async fn wait_change(
    shared: &NodeContext,
    watch: &mut KvWatch,
    key: &str,
    until: Instant,
) -> Result<()> {
    let changed = async {
        while let Some(ev) = watch.next().await {
            if ev.key == key {
                return;
            }
        }
        // The store closed the watch: fall back to the deadline.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = changed => Ok(()),
        _ = tokio::time::sleep_until(until) => Ok(()),
        _ = shared.shutdown.cancelled() => Err(Error::ShuttingDown),
    }
}

async fn pause(shared: &NodeContext, d: Duration) -> Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = shared.shutdown.cancelled() => Err(Error::ShuttingDown),
    }
}

/// `d` plus a random 0–100 % (spreads retries of processes that collided).
pub(super) fn jittered(d: Duration) -> Duration {
    d + d.mul_f64(crate::jitter::fraction())
}
