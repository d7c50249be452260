//! Ring partitions: the view apps query, and the ownership handshake.
//!
//! Handshake (per partition `p` of a Ring app): a node lists `p` in its ring record
//! (`ring.{app}.{node}` in the placement bucket) only after its `on_own` for `p` completed, and
//! removes it only after its `on_release` completed. A node takes a newly assigned `p` only when
//! no other live member's record lists it. Hence `on_release` on the old owner completes before
//! `on_own` on the new owner, and no partition ever has two owners. A crashed owner's record is
//! ignored once the owner left membership (its membership lease expired).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use cluster_core::partition::partition_of;

use crate::app::App;
use crate::hooks::run_hook;
use crate::options::HookKind;
use crate::platform::Shared;
use crate::sync::{locked, read};
use cluster_core::error::{Error, Result};
use cluster_core::id::{AppName, NodeId};
use cluster_core::kv::KvBucket;
use cluster_core::wire::placement::{AssignmentRecord, PLACEMENT_RECORD_VERSION, decode, encode};

/// Key of a node's ring record: `ring.{app}.{node}`.
fn ring_key(app: &AppName, node: &NodeId) -> String {
    format!("ring.{app}.{node}")
}

/// The partitions a node owns (after `on_own` completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RingRecord {
    v: u32,
    owned: Vec<u32>,
}

/// A Ring app's partition map as seen by this node, for one assignment version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingView {
    app: AppName,
    me: NodeId,
    version: u64,
    owners: Vec<NodeId>,
}

impl RingView {
    /// The assignment version this view belongs to.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The partition of `key`.
    pub fn partition_for(&self, key: &str) -> u32 {
        partition_of(key, self.partitions())
    }

    /// The node assigned `key`'s partition.
    pub fn node_for(&self, key: &str) -> Result<NodeId> {
        self.owners
            .get(self.partition_for(key) as usize)
            .cloned()
            .ok_or_else(|| Error::NoLeader(format!("partition of {key:?} in ring {}", self.app)))
    }

    /// Whether this node is assigned `key`'s partition.
    pub fn owns_key(&self, key: &str) -> bool {
        self.node_for(key).is_ok_and(|n| n == self.me)
    }

    /// The partitions assigned to this node.
    pub fn owned_partitions(&self) -> Vec<u32> {
        (0..self.partitions())
            .filter(|p| self.owners[*p as usize] == self.me)
            .collect()
    }

    /// The nodes of the ring, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        let set: BTreeSet<&NodeId> = self.owners.iter().collect();
        set.into_iter().cloned().collect()
    }
}

/// The ring view of `app` from the latest assignment this node saw.
pub(crate) fn view(shared: &Shared, app: &AppName) -> Option<RingView> {
    let record = shared.assignment.borrow().clone()?;
    let owners = record.assignment.apps.get(app)?.partitions.clone()?;
    Some(RingView {
        app: app.clone(),
        me: shared.node.clone(),
        version: record.assignment.version,
        owners,
    })
}

/// Runs the handshake for `app` on this node against `record`.
pub(crate) async fn reconcile(
    shared: &Arc<Shared>,
    bucket: &dyn KvBucket,
    app: &App,
    record: &AssignmentRecord,
    placed: bool,
) {
    let _serial = shared.ring_lock.lock().await;
    // A node shutting down has released everything (`release_all`) and takes nothing new.
    if shared.is_draining() {
        return;
    }
    let target: BTreeSet<u32> = if placed && app.is_running() {
        record
            .assignment
            .apps
            .get(app.name())
            .and_then(|p| p.partitions.as_ref())
            .map(|owners| {
                owners
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n == shared.node)
                    .map(|(p, _)| p as u32)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        BTreeSet::new()
    };
    let owned = locked(&app.inner.ring_owned).clone();
    let release: Vec<u32> = owned.difference(&target).copied().collect();
    if !release.is_empty() {
        if !run_partition_hook(app, HookKind::OnRelease, &release).await {
            return;
        }
        locked(&app.inner.ring_owned).retain(|p| !release.contains(p));
        if let Err(e) = publish(shared, bucket, app).await {
            warn!(app = %app.name(), error = %e, "cannot publish released partitions");
            return;
        }
        info!(app = %app.name(), count = release.len(), "released partitions");
    }
    let owned = locked(&app.inner.ring_owned).clone();
    let wanted: BTreeSet<u32> = target.difference(&owned).copied().collect();
    if wanted.is_empty() {
        return;
    }
    let held_elsewhere = match held_by_others(shared, bucket, app.name()).await {
        Ok(h) => h,
        Err(e) => {
            warn!(app = %app.name(), error = %e, "cannot read ring records");
            return;
        }
    };
    let acquire: Vec<u32> = wanted.difference(&held_elsewhere).copied().collect();
    if acquire.is_empty() {
        return;
    }
    if !run_partition_hook(app, HookKind::OnOwn, &acquire).await {
        return;
    }
    locked(&app.inner.ring_owned).extend(acquire.iter().copied());
    if let Err(e) = publish(shared, bucket, app).await {
        warn!(app = %app.name(), error = %e, "cannot publish owned partitions");
    }
    info!(app = %app.name(), count = acquire.len(), "owns partitions");
}

/// Graceful shutdown: releases every partition this node owns (`on_release`, then an empty
/// record) while it is still a member. Afterwards `reconcile` does nothing on this node.
pub(crate) async fn release_all(shared: &Arc<Shared>, app: &App) {
    let _serial = shared.ring_lock.lock().await;
    // After `Platform::abort` (a simulated crash) nothing is released.
    let Some(started) = shared.started.borrow().clone() else {
        return;
    };
    let owned: Vec<u32> = locked(&app.inner.ring_owned).iter().copied().collect();
    if owned.is_empty() {
        return;
    }
    if !run_partition_hook(app, HookKind::OnRelease, &owned).await {
        warn!(app = %app.name(), "on_release failed at shutdown; releasing anyway");
    }
    locked(&app.inner.ring_owned).clear();
    if let Err(e) = publish(shared, &*started.placement, app).await {
        warn!(app = %app.name(), error = %e, "cannot publish released partitions; they free up when this node's membership expires");
    }
    info!(app = %app.name(), count = owned.len(), "released partitions at shutdown");
}

async fn run_partition_hook(app: &App, kind: HookKind, partitions: &[u32]) -> bool {
    let hook = {
        let hooks = read(&app.inner.hooks);
        match kind {
            HookKind::OnOwn => hooks.on_own.clone(),
            _ => hooks.on_release.clone(),
        }
    };
    let Some(hook) = hook else { return true };
    let ctx = app.context(None);
    run_hook(
        app,
        kind,
        &ctx.cancel,
        hook(ctx.clone(), partitions.to_vec()),
    )
    .await
    .is_ok()
}

async fn publish(shared: &Shared, bucket: &dyn KvBucket, app: &App) -> Result<()> {
    let owned: Vec<u32> = locked(&app.inner.ring_owned).iter().copied().collect();
    let record = RingRecord {
        v: PLACEMENT_RECORD_VERSION,
        owned,
    };
    bucket
        .put(&ring_key(app.name(), &shared.node), encode(&record)?)
        .await
        .map(|_| ())
}

/// Partitions listed by other live members' ring records.
async fn held_by_others(
    shared: &Shared,
    bucket: &dyn KvBucket,
    app: &AppName,
) -> Result<BTreeSet<u32>> {
    let started = shared.started().await?;
    let members = started.membership.borrow().clone();
    let prefix = format!("ring.{app}.");
    let mut held = BTreeSet::new();
    for key in bucket.keys(&prefix).await? {
        let Some(node) = key.strip_prefix(&prefix) else {
            continue;
        };
        if node == shared.node.as_str() {
            continue;
        }
        let live = NodeId::new(node).is_ok_and(|n| members.contains_key(&n));
        if !live {
            continue;
        }
        if let Some(e) = bucket.get(&key).await? {
            match decode::<RingRecord>("ring", &e.value) {
                Ok(r) => held.extend(r.owned),
                Err(_) => shared.stats.count_malformed("placement"),
            }
        }
    }
    Ok(held)
}
