//! The placement controller: the leader of `controller.placement` computes the assignment and
//! writes it with compare-and-set, stamped with its epoch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::platform::{Shared, Started};
use cluster_core::election::Election;
use cluster_core::epoch::Epoch;
use cluster_core::error::{Error, Result};
use cluster_core::id::AppName;
use cluster_core::kv::{KvBucket, Revision};
use cluster_core::planner::{PlanApp, PlanMove, PlanNode, PlanRequest, Planner};
use cluster_core::wire::placement::{
    ASSIGNMENT_KEY, AssignmentRecord, DrainRecord, MoveRecord, PLACEMENT_RECORD_VERSION, decode,
    encode,
};

/// How often the controller re-plans without any trigger (a safety net).
const RESYNC: Duration = Duration::from_secs(2);
/// Coalescing window after a trigger.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Starts the controller election and loop on this node.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    started: &Started,
    bucket: Arc<dyn KvBucket>,
    planner: Arc<dyn Planner>,
) -> Result<Vec<AbortHandle>> {
    let election: Arc<dyn Election> = Arc::new(crate::election::start(
        &shared.ctx,
        started.election.clone(),
        shared.names.controller_lease_key(),
        None,
    )?);
    let mut status = election.status();
    let mut members = started.membership.clone();
    let auto = super::auto::spawn(
        shared,
        started,
        bucket.clone(),
        planner.clone(),
        election.clone(),
    );
    let weak = Arc::downgrade(shared);
    let task = tokio::spawn(async move {
        if let Err(e) = election.set_candidate(true).await {
            warn!(error = %e, "placement controller cannot campaign");
        }
        let mut records = match bucket.watch("").await {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "placement controller cannot watch its bucket");
                None
            }
        };
        loop {
            let Some(shared) = weak.upgrade() else { return };
            if let Some(epoch) = election.fencing_token()
                && let Err(e) = reconcile(&shared, &*bucket, &*planner, &*election, epoch).await
            {
                debug!(error = %e, "placement round failed; retrying");
            }
            drop(shared);
            tokio::select! {
                // Only a change of this node's term matters (not the lease renewals every
                // node observes).
                _ = async {
                    let before = status.borrow_and_update().leading.map(|l| l.epoch);
                    loop {
                        if status.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        if status.borrow_and_update().leading.map(|l| l.epoch) != before {
                            return;
                        }
                    }
                } => {}
                _ = members.changed() => {}
                ev = async {
                    match records.as_mut() {
                        Some(w) => w.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // Our own assignment writes also arrive here; they are harmless.
                    if ev.is_none() {
                        records = bucket.watch("").await.ok();
                    }
                }
                _ = tokio::time::sleep(RESYNC) => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
        }
    });
    Ok(vec![task.abort_handle(), auto])
}

/// One planning round: read state, plan, and write the assignment if it changed.
async fn reconcile(
    shared: &Arc<Shared>,
    bucket: &dyn KvBucket,
    planner: &dyn Planner,
    election: &dyn Election,
    epoch: Epoch,
) -> Result<()> {
    let gathered = gather(shared, bucket).await?;
    for (key, revision) in &gathered.stale_moves {
        // Compare-and-delete: a move rewritten meanwhile (new lock) is kept.
        if bucket.delete(key, Some(*revision)).await.is_ok() {
            info!(
                key,
                "removed a move whose requester's migration lock expired"
            );
        }
    }
    let (current_record, current_rev) = (gathered.current, gathered.revision);
    if let Some(r) = &current_record
        && r.epoch > epoch.0
    {
        return Err(Error::Fenced {
            presented: epoch,
            current: Epoch(r.epoch),
        });
    }
    let request = gathered.request;
    let reason = if !request.moves.is_empty() {
        "move"
    } else if !gathered.draining.is_empty() {
        "drain"
    } else if current_record.is_none() {
        "initial"
    } else if current_record.as_ref().is_some_and(|r| {
        r.assignment
            .apps
            .values()
            .flat_map(|p| p.nodes.iter())
            .any(|n| !request.nodes.iter().any(|m| m.id == *n))
    }) {
        "member_leave"
    } else {
        "reconcile"
    };
    let outcome = planner.plan(&request)?;
    let unchanged = current_record.as_ref().is_some_and(|r| {
        r.assignment == outcome.assignment
            && r.pending == outcome.pending
            && r.blocked == outcome.blocked
            && r.epoch == epoch.0
    });
    if unchanged {
        return Ok(());
    }
    let record = AssignmentRecord {
        v: PLACEMENT_RECORD_VERSION,
        epoch: epoch.0,
        assignment: outcome.assignment,
        pending: outcome.pending,
        blocked: outcome.blocked,
    };
    // Only the controller of the current term writes, and only over the revision it read.
    if election.fencing_token() != Some(epoch) {
        return Err(Error::Fenced {
            presented: epoch,
            current: election.fencing_token().unwrap_or(Epoch::ZERO),
        });
    }
    let value = encode(&record)?;
    match current_rev {
        Some(rev) => bucket.update(ASSIGNMENT_KEY, value, rev, None).await?,
        None => bucket.create(ASSIGNMENT_KEY, value, None).await?,
    };
    info!(version = record.assignment.version, %epoch, pending = record.pending.len(),
        "placement assignment updated");
    super::observe::assignment_written(shared, current_record.as_ref(), &record, reason);
    Ok(())
}

/// The planner's input as this node sees it, with the current record and its revision.
pub(crate) struct Gathered {
    /// The planner's input.
    pub(crate) request: PlanRequest,
    /// The current assignment record.
    pub(crate) current: Option<AssignmentRecord>,
    /// Its revision.
    pub(crate) revision: Option<Revision>,
    /// Cordoned nodes (records, whether or not the node is live).
    pub(crate) cordoned: Vec<String>,
    /// Nodes being drained.
    pub(crate) draining: Vec<String>,
    /// Move records whose migration lock expired (key, revision): nobody drives them.
    pub(crate) stale_moves: Vec<(String, Revision)>,
}

/// Reads membership and the placement bucket into a planning request.
pub(crate) async fn gather(shared: &Arc<Shared>, bucket: &dyn KvBucket) -> Result<Gathered> {
    let started = shared.started().await?;
    let members = started.membership.borrow().clone();
    let mut cordoned = Vec::new();
    let mut draining = Vec::new();
    let mut drains: BTreeMap<String, DrainRecord> = BTreeMap::new();
    let mut stale_moves = Vec::new();
    let mut moves = Vec::new();
    for key in bucket.keys("").await? {
        let Some(entry) = bucket.get(&key).await? else {
            continue;
        };
        if let Some(node) = key.strip_prefix("cordon.") {
            cordoned.push(node.to_owned());
        } else if let Some(node) = key.strip_prefix("drain.") {
            if let Ok(d) = decode::<DrainRecord>("drain", &entry.value) {
                draining.push(node.to_owned());
                drains.insert(node.to_owned(), d);
            }
        } else if let Some(app) = key.strip_prefix("move.") {
            match (
                AppName::new(app),
                decode::<MoveRecord>("move", &entry.value),
            ) {
                (Ok(app), Ok(m)) => {
                    if super::lock::move_is_current(shared, &started, &app, m.lock).await? {
                        moves.push(PlanMove {
                            app,
                            from: m.from,
                            to: m.to,
                        });
                    } else {
                        debug!(%app, "ignoring a move whose migration lock expired");
                        stale_moves.push((key.clone(), entry.revision));
                    }
                }
                (_, Err(e)) => {
                    shared.stats.count_malformed("placement");
                    warn!(key, error = %e, "ignoring malformed move record");
                }
                (Err(e), _) => warn!(key, error = %e, "ignoring move record of an invalid app"),
            }
        }
    }
    let current = bucket.get(ASSIGNMENT_KEY).await?;
    let (current_record, current_rev): (Option<AssignmentRecord>, Option<Revision>) = match current
    {
        Some(e) => match decode::<AssignmentRecord>("assignment", &e.value) {
            Ok(r) => (Some(r), Some(e.revision)),
            Err(err) => {
                shared.stats.count_malformed("placement");
                warn!(error = %err, "replacing a malformed assignment record");
                (None, Some(e.revision))
            }
        },
        None => (None, None),
    };
    let nodes: Vec<PlanNode> = members
        .values()
        .map(|m| PlanNode {
            id: m.node_id.clone(),
            labels: m.labels.clone(),
            healthy: m.healthy,
            cordoned: cordoned.iter().any(|c| c == m.node_id.as_str()),
            draining: draining.iter().any(|d| d == m.node_id.as_str()),
            drain_force: drains.get(m.node_id.as_str()).is_some_and(|d| d.force),
            drain_release: drains
                .get(m.node_id.as_str())
                .filter(|d| d.max_concurrent > 0)
                .map(|d| d.released.iter().cloned().collect()),
            running: m
                .apps
                .iter()
                .filter(|a| a.running)
                .map(|a| a.name.clone())
                .collect(),
            leading: m
                .apps
                .iter()
                .filter(|a| a.running && a.role == cluster_core::mode::Role::Leader)
                .map(|a| a.name.clone())
                .collect(),
            hosts: m.apps.iter().map(|a| a.name.clone()).collect(),
            load: m.load,
        })
        .collect();
    let mut apps: BTreeMap<_, PlanApp> = BTreeMap::new();
    for m in members.values() {
        for a in &m.apps {
            apps.entry(a.name.clone()).or_insert_with(|| PlanApp {
                name: a.name.clone(),
                mode: a.mode,
                placement: a.placement.clone(),
            });
        }
    }
    let request = PlanRequest {
        nodes,
        apps: apps.into_values().collect(),
        current: current_record
            .as_ref()
            .map(|r| r.assignment.clone())
            .unwrap_or_default(),
        moves,
    };
    Ok(Gathered {
        request,
        current: current_record,
        revision: current_rev,
        cordoned,
        draining,
        stale_moves,
    })
}
