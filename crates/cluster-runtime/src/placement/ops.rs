//! Operations on placement: cordon, drain, move, labels. Each writes a record in the placement
//! bucket that the controller acts on, then (for drain and move) waits for the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tracing::{debug, info, warn};

use cluster_core::audit::AuditRecord;
use cluster_core::audit::category::{NODE, OPERATOR, PLACEMENT};

use super::lock::MigrationLock;
use crate::platform::Platform;
use cluster_core::error::{Error, Result};
use cluster_core::id::{AppName, NodeId};
use cluster_core::labels::Labels;
use cluster_core::member::Member;
use cluster_core::mode::{Mode, Role};
use cluster_core::wire::placement::{
    ASSIGNMENT_KEY, AssignmentRecord, CordonRecord, DrainRecord, LabelsRecord, MoveRecord,
    PLACEMENT_RECORD_VERSION, cordon_key, decode, drain_key, encode, labels_key, move_key,
};

/// How often a drain re-reads the controller's record besides membership changes.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// Options of a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOptions {
    /// Give up (with `Timeout`, listing what remains) after this long.
    pub timeout: Duration,
    /// Stop instances that cannot move anywhere instead of leaving them running.
    pub force: bool,
    /// At most this many instances migrate off the node at a time (0: all at once).
    pub max_concurrent: usize,
}

impl Default for DrainOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            force: false,
            max_concurrent: 0,
        }
    }
}

/// Progress of a drain: the apps still running on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainProgress {
    /// Instances on the node when the drain started.
    pub total: usize,
    /// Instances still running there.
    pub remaining: Vec<AppName>,
    /// Of those, the ones that cannot move (no eligible node elsewhere), with the reason. They
    /// keep running unless the drain is forced.
    pub blocked: BTreeMap<AppName, String>,
}

/// A move of one app's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRequest {
    /// The app.
    pub app: String,
    /// The node it moves away from.
    pub from: String,
    /// The target (`None`: the platform chooses).
    pub to: Option<String>,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Platform {
    fn require_planner(&self) -> Result<()> {
        if self.shared().planner.is_none() {
            return Err(Error::Unsupported(
                "placement operations need a platform built with a planner \
                 (cluster::placement::planner())"
                    .into(),
            ));
        }
        Ok(())
    }

    async fn member(&self, node: &NodeId) -> Result<Member> {
        let started = self.shared().started().await?;
        let m = started.membership.borrow().get(node).cloned();
        m.ok_or_else(|| Error::NodeNotFound(node.to_string()))
    }

    /// The current assignment record, if the controller has written one.
    pub async fn assignment(&self) -> Result<Option<AssignmentRecord>> {
        let started = self.shared().started().await?;
        match started.placement.get(ASSIGNMENT_KEY).await? {
            Some(e) => decode("assignment", &e.value).map(Some),
            None => Ok(None),
        }
    }

    /// Marks `node` unschedulable: it keeps what it runs but receives nothing new. Persisted
    /// cluster-wide; survives restarts and controller failovers.
    pub async fn cordon_node(&self, node: &str, reason: &str) -> Result<()> {
        self.require_planner()?;
        let node = NodeId::new(node)?;
        self.member(&node).await?;
        let started = self.shared().started().await?;
        let record = CordonRecord {
            v: PLACEMENT_RECORD_VERSION,
            reason: reason.to_owned(),
            by: self.node_id().clone(),
        };
        started
            .placement
            .put(&cordon_key(&node), encode(&record)?)
            .await?;
        info!(%node, "node cordoned");
        self.shared().audit(
            OPERATOR,
            "cordon",
            None,
            serde_json::json!({"node": node, "reason": reason}),
        );
        Ok(())
    }

    /// Makes `node` schedulable again (also ends a drain).
    pub async fn uncordon_node(&self, node: &str) -> Result<()> {
        self.require_planner()?;
        let node = NodeId::new(node)?;
        let started = self.shared().started().await?;
        started.placement.delete(&cordon_key(&node), None).await?;
        started.placement.delete(&drain_key(&node), None).await?;
        info!(%node, "node uncordoned");
        self.shared().audit(
            OPERATOR,
            "uncordon",
            None,
            serde_json::json!({"node": node}),
        );
        Ok(())
    }

    /// Whether `node` is cordoned.
    pub async fn is_cordoned(&self, node: &str) -> Result<bool> {
        let node = NodeId::new(node)?;
        let started = self.shared().started().await?;
        Ok(started.placement.get(&cordon_key(&node)).await?.is_some())
    }

    /// Drains `node`: cordons it and moves every instance away, reporting progress, until the
    /// node runs nothing or the timeout passes (`Timeout` lists what remains, with the reason
    /// of each blocked instance). The node stays cordoned afterwards.
    ///
    /// Without `force`, an instance that has no eligible node elsewhere stays where it runs
    /// (reported in [`DrainProgress::blocked`]); nothing is stopped that cannot start elsewhere.
    /// With `force`, such instances are stopped (the app becomes pending, audited
    /// `placement.constraint.invalid` and `operator.drain.forced-stop`). With
    /// `max_concurrent`, at most that many instances are migrating at a time.
    pub async fn drain_node(
        &self,
        node: &str,
        options: DrainOptions,
        mut progress: impl FnMut(&DrainProgress),
    ) -> Result<DrainProgress> {
        self.require_planner()?;
        let node_id = NodeId::new(node)?;
        let member = self.member(&node_id).await?;
        let started = self.shared().started().await?;
        let mut on_node: Vec<AppName> = member
            .apps
            .iter()
            .filter(|a| a.running)
            .map(|a| a.name.clone())
            .collect();
        on_node.sort();
        // The migration lock of every app on the node, for the drain's duration (each is
        // released as its app leaves): a concurrent move or rebalance step fails meanwhile.
        let mut locks: BTreeMap<AppName, MigrationLock> = BTreeMap::new();
        for app in &on_node {
            match MigrationLock::acquire(self.shared(), &started, app, "drain").await {
                Ok(l) => {
                    locks.insert(app.clone(), l);
                }
                Err(e) => {
                    for (_, l) in std::mem::take(&mut locks) {
                        l.release().await;
                    }
                    return Err(e);
                }
            }
        }
        // Where each app was placed when the drain started (to tell its new targets).
        let initial: BTreeMap<AppName, Vec<NodeId>> = self
            .assignment()
            .await?
            .map(|r| {
                r.assignment
                    .apps
                    .into_iter()
                    .map(|(app, p)| (app, p.nodes))
                    .collect()
            })
            .unwrap_or_default();
        self.cordon_node(node, "drain").await?;
        let limit = options.max_concurrent;
        let mut record = DrainRecord {
            v: PLACEMENT_RECORD_VERSION,
            id: uuid::Uuid::new_v4().simple().to_string(),
            force: options.force,
            by: self.node_id().clone(),
            max_concurrent: u32::try_from(limit).unwrap_or(u32::MAX),
            released: on_node.iter().take(limit).cloned().collect(),
        };
        started
            .placement
            .put(&drain_key(&node_id), encode(&record)?)
            .await?;
        let total = on_node.len();
        let deadline = tokio::time::Instant::now() + options.timeout;
        let shared = self.shared().clone();
        shared.audit(
            OPERATOR,
            "drain.started",
            None,
            serde_json::json!({"node": node_id, "instances": total, "force": options.force,
                "max_concurrent": limit, "timeout_ms": options.timeout.as_millis() as u64}),
        );
        // Each instance on the node migrates away: tracked as a migration with reason `drain`.
        let mut migrating: Vec<(AppName, Migration)> = on_node
            .iter()
            .map(|a| {
                let m = Migration::start(&shared, a, &node_id, None, "drain", &record.id);
                (a.clone(), m)
            })
            .collect();
        let mut forced: BTreeSet<AppName> = BTreeSet::new();
        let mut members = started.membership.clone();
        let mut last = None;
        loop {
            let assignment: Option<AssignmentRecord> =
                match started.placement.get(ASSIGNMENT_KEY).await? {
                    Some(e) => decode("assignment", &e.value).ok(),
                    None => None,
                };
            let (remaining, runs_elsewhere) = {
                let view = members.borrow();
                let remaining: Vec<AppName> = view
                    .get(&node_id)
                    .map(|m| {
                        m.apps
                            .iter()
                            .filter(|a| a.running)
                            .map(|a| a.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                // Apps whose new placements (nodes added since the drain started) all run
                // ready: their migration is over. Nodes that already ran the app are not
                // waited for (an unrelated failure there must not hold the drain).
                let settled: BTreeSet<AppName> = on_node
                    .iter()
                    .filter(|app| {
                        assignment.as_ref().is_none_or(|r| {
                            r.assignment.apps.get(*app).is_none_or(|p| {
                                let before = initial.get(*app);
                                let added = p.nodes.iter().filter(|n| {
                                    **n != node_id && before.is_none_or(|b| !b.contains(n))
                                });
                                added.into_iter().all(|n| {
                                    view.get(n).is_some_and(|m| {
                                        // Ready: started (`on_start` done), not starting.
                                        m.apps.iter().any(|a| {
                                            &a.name == *app && a.running && a.role != Role::Stopped
                                        })
                                    })
                                })
                            })
                        })
                    })
                    .cloned()
                    .collect();
                (remaining, settled)
            };
            let blocked: BTreeMap<AppName, String> = assignment
                .as_ref()
                .map(|r| {
                    r.blocked
                        .iter()
                        .filter(|(app, _)| remaining.contains(app))
                        .map(|(a, why)| (a.clone(), why.clone()))
                        .collect()
                })
                .unwrap_or_default();
            if options.force
                && let Some(r) = &assignment
            {
                for app in &on_node {
                    if let Some(why) = r.pending.get(app)
                        && forced.insert(app.clone())
                    {
                        warn!(%app, node = %node_id, reason = %why, "forced drain stops an instance that cannot run elsewhere");
                        shared.audit(
                            OPERATOR,
                            "drain.forced-stop",
                            Some(app),
                            serde_json::json!({"node": node_id, "reason": why}),
                        );
                    }
                }
            }
            // Limited concurrency: release more apps as earlier migrations complete.
            if limit > 0 {
                let in_flight = record
                    .released
                    .iter()
                    .filter(|a| {
                        !blocked.contains_key(*a)
                            && (remaining.contains(a) || !runs_elsewhere.contains(*a))
                    })
                    .count();
                let next: Vec<AppName> = on_node
                    .iter()
                    .filter(|a| !record.released.contains(a))
                    .take(limit.saturating_sub(in_flight))
                    .cloned()
                    .collect();
                if !next.is_empty() {
                    debug!(node = %node_id, apps = ?next, in_flight, "drain releases more instances");
                    record.released.extend(next);
                    started
                        .placement
                        .put(&drain_key(&node_id), encode(&record)?)
                        .await?;
                }
            }
            let p = DrainProgress {
                total,
                remaining,
                blocked,
            };
            for (app, m) in std::mem::take(&mut migrating) {
                if p.remaining.contains(&app) || !runs_elsewhere.contains(&app) {
                    migrating.push((app, m));
                    continue;
                }
                if let Some(l) = locks.remove(&app) {
                    l.release().await;
                }
                if forced.contains(&app) {
                    m.finish(&shared, Err("stopped without replacement (forced drain)"));
                } else {
                    m.finish(&shared, Ok(None));
                }
            }
            if last.as_ref() != Some(&p) {
                progress(&p);
                last = Some(p.clone());
            }
            // Done once the node runs nothing and what left runs where it was placed.
            if p.remaining.is_empty() && on_node.iter().all(|a| runs_elsewhere.contains(a)) {
                started.placement.delete(&drain_key(&node_id), None).await?;
                for (_, l) in std::mem::take(&mut locks) {
                    l.release().await;
                }
                info!(%node_id, "node drained");
                shared.audit(
                    OPERATOR,
                    "drain.completed",
                    None,
                    serde_json::json!({"node": node_id, "instances": total,
                        "forced_stops": forced.len()}),
                );
                return Ok(p);
            }
            let changed = tokio::select! {
                r = tokio::time::timeout_at(deadline, members.changed()) => r,
                // The controller's record (blocked, pending) changes without a membership change.
                _ = tokio::time::sleep(DRAIN_POLL) => Ok(Ok(())),
            };
            match changed {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::ShuttingDown),
                Err(_) => {
                    for (_, l) in std::mem::take(&mut locks) {
                        l.release().await;
                    }
                    let names: Vec<String> = p.remaining.iter().map(ToString::to_string).collect();
                    for (app, m) in migrating.drain(..) {
                        match p.blocked.get(&app) {
                            Some(why) => m.finish(&shared, Err(why)),
                            None => m.finish(&shared, Err("drain timed out")),
                        }
                    }
                    let blocked: Vec<String> = p
                        .blocked
                        .iter()
                        .map(|(app, why)| format!("{app}: {why}"))
                        .collect();
                    shared.audit(
                        OPERATOR,
                        "drain.failed",
                        None,
                        serde_json::json!({"node": node_id, "remaining": names,
                            "blocked": p.blocked}),
                    );
                    let blocked = if blocked.is_empty() {
                        String::new()
                    } else {
                        format!("; blocked: {}", blocked.join("; "))
                    };
                    return Err(Error::Timeout(format!(
                        "drain of {node_id}: still running {} after {:?}{blocked} (run again, or use force)",
                        names.join(", "),
                        options.timeout
                    )));
                }
            }
        }
    }

    /// Moves `request.app` off `request.from` (to `request.to`, or where the platform chooses)
    /// and waits until the move completed: for a Singleton the new leader runs on the target
    /// (leadership handed over, never a free-for-all election); for other modes the target runs
    /// the app and the source does not.
    pub async fn move_app(&self, request: MoveRequest) -> Result<NodeId> {
        self.require_planner()?;
        let app = AppName::new(&request.app)?;
        let from = NodeId::new(&request.from)?;
        let to = request.to.as_deref().map(NodeId::new).transpose()?;
        let source = self.member(&from).await?;
        let Some(info) = source.apps.iter().find(|a| a.name == app) else {
            return Err(Error::AppNotFound(format!("{app} on {from}")));
        };
        if !info.running {
            return Err(Error::InvalidArgument(format!(
                "{app} does not run on {from}"
            )));
        }
        let mode = info.mode;
        if !(mode.is_singleton() || matches!(mode, Mode::Replicas { .. })) {
            return Err(Error::Unsupported(format!(
                "{app} is a {} app: it runs on every eligible node and cannot be moved; \
                 cordon or drain {from} instead",
                mode
            )));
        }
        if to.as_ref() == Some(&from) {
            return Err(Error::Unsupported(format!(
                "{app} already runs on {from}: moving it to the same node does nothing"
            )));
        }
        if mode.is_singleton() {
            // The leader as the election sees it now (a membership record may lag behind a
            // change of leader by a refresh); with no leader known the move waits as before.
            let soon = tokio::time::Instant::now() + Duration::from_secs(1);
            if let Ok(leader) = self.shared().resolve_leader(&app, soon).await
                && leader != from
            {
                return Err(Error::InvalidArgument(format!(
                    "{from} is not the leader of {app} ({leader} is): move --from the leader \
                     (see `cluster app status {app}`)"
                )));
            }
        }
        if let Some(to) = &to {
            let target = self.member(to).await?;
            if !target.apps.iter().any(|a| a.name == app) {
                return Err(Error::InvalidArgument(format!(
                    "{to} does not host app {app}; it cannot run it"
                )));
            }
            if self.is_cordoned(to.as_str()).await? {
                return Err(Error::InvalidArgument(format!("{to} is cordoned")));
            }
        }
        let started = self.shared().started().await?;
        // One migration of an app at a time: a concurrent move, drain or rebalance step of
        // the same app fails here with `LockHeld`.
        let lock = MigrationLock::acquire(self.shared(), &started, &app, "move").await?;
        let record = MoveRecord {
            v: PLACEMENT_RECORD_VERSION,
            id: uuid::Uuid::new_v4().simple().to_string(),
            from: from.clone(),
            to: to.clone(),
            by: self.node_id().clone(),
            lock: lock.fence(),
        };
        let key = move_key(&app);
        if let Err(e) = started.placement.put(&key, encode(&record)?).await {
            lock.release().await;
            return Err(e);
        }
        let shared = self.shared().clone();
        shared.audit(
            OPERATOR,
            "move",
            Some(&app),
            serde_json::json!({"from_node": from, "to_node": to}),
        );
        let migration = Migration::start(&shared, &app, &from, to.as_ref(), "manual", &record.id);
        let deadline = tokio::time::Instant::now() + request.timeout;
        let mut members = started.membership.clone();
        let result = loop {
            let done = {
                let view = members.borrow();
                let runs = |n: &NodeId, role: Option<Role>| {
                    view.get(n).is_some_and(|m| {
                        m.apps
                            .iter()
                            .any(|a| a.name == app && a.running && role.is_none_or(|r| a.role == r))
                    })
                };
                if mode.is_singleton() {
                    match &to {
                        Some(t) => runs(t, Some(Role::Leader)).then(|| t.clone()),
                        None => view
                            .values()
                            .find(|m| m.node_id != from && runs(&m.node_id, Some(Role::Leader)))
                            .map(|m| m.node_id.clone()),
                    }
                } else if runs(&from, None) {
                    None
                } else {
                    match &to {
                        Some(t) => runs(t, None).then(|| t.clone()),
                        None => view
                            .values()
                            .find(|m| m.node_id != from && runs(&m.node_id, None))
                            .map(|m| m.node_id.clone()),
                    }
                }
            };
            if let Some(target) = done {
                break Ok(target);
            }
            match tokio::time::timeout_at(deadline, members.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break Err(Error::ShuttingDown),
                Err(_) => {
                    break Err(Error::Timeout(format!(
                        "move of {app} from {from} did not complete within {:?}",
                        request.timeout
                    )));
                }
            }
        };
        // The record has served its purpose (a Singleton's new leader may have removed it).
        let _ = started.placement.delete(&key, None).await;
        lock.release().await;
        if let Ok(target) = &result {
            info!(%app, %from, to = %target, "app moved");
        }
        migration.finish(
            &shared,
            match &result {
                Ok(t) => Ok(Some(t)),
                Err(_) => Err("the move did not complete"),
            },
        );
        result
    }

    /// Sets labels on `node` (added or changed); the node applies them to its member record and
    /// placement is re-evaluated.
    pub async fn update_node_labels(&self, node: &str, labels: &Labels) -> Result<()> {
        self.edit_labels(node, |r| {
            for (k, v) in labels.iter() {
                r.set.insert(k, v)?;
                r.removed.retain(|x| x != k);
            }
            Ok(())
        })
        .await
    }

    /// Removes label `key` from `node`.
    pub async fn remove_node_label(&self, node: &str, key: &str) -> Result<()> {
        self.edit_labels(node, |r| {
            r.set.remove(key);
            if !r.removed.iter().any(|x| x == key) {
                r.removed.push(key.to_owned());
            }
            Ok(())
        })
        .await
    }

    /// Sets labels on this node.
    pub async fn set_labels(&self, labels: &Labels) -> Result<()> {
        let node = self.node_id().to_string();
        self.update_node_labels(&node, labels).await
    }

    /// Removes a label from this node.
    pub async fn remove_label(&self, key: &str) -> Result<()> {
        let node = self.node_id().to_string();
        self.remove_node_label(&node, key).await
    }

    async fn edit_labels(
        &self,
        node: &str,
        edit: impl Fn(&mut LabelsRecord) -> Result<()>,
    ) -> Result<()> {
        let node = NodeId::new(node)?;
        self.member(&node).await?;
        let started = self.shared().started().await?;
        let key = labels_key(&node);
        // Compare-and-set loop: concurrent edits never lose each other's changes.
        for _ in 0..16 {
            let current = started.placement.get(&key).await?;
            let mut record = match &current {
                Some(e) => decode::<LabelsRecord>("labels", &e.value)?,
                None => LabelsRecord {
                    v: PLACEMENT_RECORD_VERSION,
                    ..LabelsRecord::default()
                },
            };
            edit(&mut record)?;
            let value = encode(&record)?;
            let written = match &current {
                Some(e) => {
                    started
                        .placement
                        .update(&key, value, e.revision, None)
                        .await
                }
                None => started.placement.create(&key, value, None).await,
            };
            match written {
                Ok(_) => {
                    info!(%node, "node labels updated");
                    self.shared().audit(
                        NODE,
                        "labels.updated",
                        None,
                        serde_json::json!({"node": node, "set": record.set, "removed": record.removed}),
                    );
                    return Ok(());
                }
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Timeout(format!(
            "labels of {node}: too many concurrent edits"
        )))
    }
}

/// A migration driven by this node (a move or a drain): audited and metered from start to end.
struct Migration {
    app: AppName,
    from: NodeId,
    to: Option<NodeId>,
    reason: &'static str,
    id: String,
    started: tokio::time::Instant,
}

impl Migration {
    fn start(
        shared: &crate::platform::Shared,
        app: &AppName,
        from: &NodeId,
        to: Option<&NodeId>,
        reason: &'static str,
        id: &str,
    ) -> Self {
        let m = Self {
            app: app.clone(),
            from: from.clone(),
            to: to.cloned(),
            reason,
            id: format!("{id}.{app}"),
            started: tokio::time::Instant::now(),
        };
        crate::metrics::migration(app.as_str(), reason, "started");
        crate::metrics::migration_in_progress(app.as_str(), 1.0);
        m.audit(shared, "migration.started", to, None);
        m
    }

    fn audit(
        &self,
        shared: &crate::platform::Shared,
        action: &str,
        to: Option<&NodeId>,
        error: Option<&str>,
    ) {
        let mut data = serde_json::json!({
            "from_node": self.from,
            "to_node": to,
            "reason": self.reason,
            "trigger": "manual",
        });
        if let Some(e) = error {
            data["error"] = serde_json::Value::from(e);
        }
        if action != "migration.started" {
            data["duration_ms"] =
                serde_json::Value::from(self.started.elapsed().as_millis() as u64);
        }
        shared.audit_record(
            AuditRecord::new(PLACEMENT, action, Some(&self.app), &shared.node, data)
                .with_id(format!("{action}.{}", self.id)),
        );
    }

    /// Ends the migration: `Ok(target)` completed (target if known), `Err(why)` failed.
    fn finish(
        self,
        shared: &crate::platform::Shared,
        outcome: std::result::Result<Option<&NodeId>, &str>,
    ) {
        let app = self.app.as_str();
        crate::metrics::migration_in_progress(app, -1.0);
        crate::metrics::migration_duration(app, self.started.elapsed());
        match outcome {
            Ok(target) => {
                crate::metrics::migration(app, self.reason, "completed");
                let to = target.cloned().or_else(|| self.to.clone());
                self.audit(shared, "migration.completed", to.as_ref(), None);
            }
            Err(why) => {
                crate::metrics::migration(app, self.reason, "failed");
                self.audit(shared, "migration.failed", self.to.as_ref(), Some(why));
            }
        }
    }
}
