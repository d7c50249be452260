//! The admin service: every node answers platform-level admin requests (status, step-down, app
//! and node views) on `cluster.{P}.admin.{read|write}.{node}` and `…._all` (protocol v2: the
//! class in the subject, a write method on a read subject is refused), and on the v1 subjects
//! `cluster.{P}.admin.{node}` and `cluster.{P}.admin._all` for older clients.
//!
//! Tools such as the `cluster` CLI use [`AdminClient`](super::AdminClient) to talk to running
//! nodes; they never register as a node themselves. Formats: [`cluster_core::wire::admin`].

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::task::AbortHandle;
use tracing::{debug, info};

use super::app::App;
use super::lease_view::trusted_leader;
use super::platform::Shared;
use crate::sync::read;
use cluster_core::epoch::Epoch;
use cluster_core::error::{Error, Result};
use cluster_core::health::HealthStatus;
use cluster_core::id::{AppName, NodeId};
use cluster_core::mode::{Mode, Role};
use cluster_core::transport::Message;
use cluster_core::wire::admin::{
    AdminClass, AdminMethod, AdminReply, AdminRequest, AppInstance, AppList, AppStatusReply,
    AppView, InstanceHealth, NodeStatus, StatusReply, StepDownReply, SteppedDown,
};
use cluster_core::wire::member::MemberRecord;
use cluster_core::wire::placement::drain_key;

/// Subscribes the node's admin subjects and serves requests until aborted.
pub(crate) async fn serve(shared: &Arc<Shared>) -> Result<Vec<AbortHandle>> {
    let names = &shared.names;
    let node = &shared.node;
    let mut subjects = vec![(names.admin_node(node), None), (names.admin_all(), None)];
    for class in [AdminClass::Read, AdminClass::Write] {
        subjects.push((names.admin_class_node(class, node), Some(class)));
        subjects.push((names.admin_class_all(class), Some(class)));
    }
    let mut handles = Vec::new();
    for (subject, class) in subjects {
        let mut sub = shared.transport.subscribe(&subject, None).await?;
        let weak = Arc::downgrade(shared);
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(shared) = weak.upgrade() else { return };
                tokio::spawn(async move { handle(shared, msg, class).await });
            }
        });
        handles.push(task.abort_handle());
    }
    Ok(handles)
}

/// Serves one request received on a subject of `class` (`None`: a v1 subject).
async fn handle(shared: Arc<Shared>, msg: Message, class: Option<AdminClass>) {
    let Some(reply_to) = msg.reply.clone() else {
        shared.stats.count_malformed("admin");
        debug!(subject = %msg.subject, "dropping admin request without reply subject");
        return;
    };
    let members: Vec<NodeId> = live_nodes(&shared);
    let reply = match dispatch(&shared, &msg, class).await {
        Ok(reply) => reply,
        Err(e) => {
            if matches!(e, Error::Malformed(_)) {
                shared.stats.count_malformed("admin");
            }
            AdminReply::err(shared.node.clone(), members, &e)
        }
    };
    let encoded = reply.encode().and_then(|(headers, payload)| {
        if headers.encoded_len() + payload.len() > shared.transport.max_payload() {
            let e = Error::PayloadTooLarge {
                size: payload.len(),
                max: shared.transport.max_payload(),
            };
            AdminReply::err(shared.node.clone(), live_nodes(&shared), &e).encode()
        } else {
            Ok((headers, payload))
        }
    });
    match encoded {
        Ok((headers, payload)) => {
            if let Err(e) = shared
                .transport
                .publish(&reply_to, None, headers, payload)
                .await
            {
                debug!(error = %e, "could not send admin reply");
            }
        }
        Err(e) => debug!(error = %e, "could not encode admin reply"),
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    msg: &Message,
    class: Option<AdminClass>,
) -> Result<AdminReply> {
    let (method, request) = AdminRequest::decode(&msg.headers, &msg.payload)?;
    if class == Some(AdminClass::Read) && method.class() == AdminClass::Write {
        return Err(Error::InvalidArgument(format!(
            "{method} changes the platform: send it on {}",
            shared
                .names
                .admin_class_node(AdminClass::Write, &shared.node)
        )));
    }
    let node = shared.node.clone();
    let members = live_nodes(shared);
    match method {
        AdminMethod::Status => {
            let reply = StatusReply {
                node: node_status(shared).await,
                members: members_of(shared)
                    .values()
                    .map(MemberRecord::from_member)
                    .collect(),
                apps: app_views(shared).await,
            };
            AdminReply::ok(node, members, &reply)
        }
        AdminMethod::NodeStatus => AdminReply::ok(node, members, &node_status(shared).await),
        AdminMethod::AppList => {
            let reply = AppList {
                apps: app_views(shared).await,
            };
            AdminReply::ok(node, members, &reply)
        }
        AdminMethod::AppStatus => {
            let app = required_app(&request)?;
            let view = app_views(shared)
                .await
                .into_iter()
                .find(|v| &v.name == app)
                .ok_or_else(|| Error::AppNotFound(app.to_string()))?;
            let local = read(&shared.apps).get(app).map(instance);
            AdminReply::ok(node, members, &AppStatusReply { app: view, local })
        }
        AdminMethod::StepDown => {
            if shared.is_draining() {
                return Err(Error::ShuttingDown);
            }
            let reply = step_down(shared, request.app.as_ref()).await?;
            AdminReply::ok(node, members, &reply)
        }
        AdminMethod::PlacementStatus
        | AdminMethod::NodeCordon
        | AdminMethod::NodeUncordon
        | AdminMethod::NodeDrain
        | AdminMethod::NodeLabel
        | AdminMethod::AppMove
        | AdminMethod::RebalancePlan
        | AdminMethod::RebalanceStatus
        | AdminMethod::RebalanceCancel
        | AdminMethod::RebalanceApprove
        | AdminMethod::ConfigGet
        | AdminMethod::ConfigSet => {
            let result = super::admin_placement::dispatch(shared, method, &request).await?;
            AdminReply::ok(node, live_nodes(shared), &result)
        }
        AdminMethod::NodeRemove => {
            let removed = super::admin_member::remove(shared, &request).await?;
            AdminReply::ok(node, live_nodes(shared), &removed)
        }
        AdminMethod::AppExtension => {
            let app = required_app(&request)?;
            let local = read(&shared.apps).get(app).cloned().ok_or_else(|| {
                Error::AppNotFound(format!("{app} (it does not run on node {})", shared.node))
            })?;
            let result = super::admin_ext::dispatch(&local, &request).await?;
            AdminReply::ok(node, members, &result)
        }
    }
}

fn required_app(request: &AdminRequest) -> Result<&AppName> {
    request
        .app
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument(format!("{} needs an app", request.method)))
}

/// The live members this node sees, itself included.
fn live_nodes(shared: &Shared) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = members_of(shared).into_keys().collect();
    if !nodes.contains(&shared.node) {
        nodes.push(shared.node.clone());
        nodes.sort();
    }
    nodes
}

/// The membership view (empty before the platform started), without records never seen
/// renewed here for two heartbeats (a forged record is not shown while it waits to go stale).
fn members_of(shared: &Shared) -> BTreeMap<NodeId, cluster_core::member::Member> {
    let Some(started) = shared.started.borrow().clone() else {
        return BTreeMap::new();
    };
    let mut members = started.membership.borrow().clone();
    members.retain(|node, _| *node == shared.node || started.liveness.confirmed(node, shared));
    members
}

fn health(status: HealthStatus) -> InstanceHealth {
    match status {
        HealthStatus::Healthy => InstanceHealth {
            healthy: true,
            reason: None,
        },
        HealthStatus::Unhealthy(reason) => InstanceHealth {
            healthy: false,
            reason: Some(reason),
        },
    }
}

fn instance(app: &App) -> AppInstance {
    let state = *app.role_watch().borrow();
    let leader = app.election_state().and_then(|s| s.leader);
    AppInstance {
        name: app.name().clone(),
        mode: app.mode(),
        role: state.role,
        epoch: if state.role == Role::Leader {
            state.epoch
        } else {
            None
        },
        leader_epoch: leader.as_ref().map(|l| l.epoch),
        leader: leader.map(|l| l.node),
        health: health(app.health()),
    }
}

async fn node_status(shared: &Shared) -> NodeStatus {
    let apps: Vec<AppInstance> = read(&shared.apps).values().map(instance).collect();
    let me = shared.local_member();
    NodeStatus {
        node: shared.node.clone(),
        platform: shared.names.platform().clone(),
        instance: shared.instance.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        address: me.address,
        labels: me.labels,
        healthy: me.healthy,
        draining: shared.is_draining() || drain_recorded(shared).await,
        uptime_secs: shared
            .clock
            .wall()
            .duration_since(shared.joined_at)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        apps,
    }
}

/// Whether a placement drain of this node is recorded (`drain.{node}`, what `placement.status`
/// lists as draining). The record outlives a drain that timed out (the controller keeps moving
/// instances away) until a drain completes or the node is uncordoned.
async fn drain_recorded(shared: &Shared) -> bool {
    let started = shared.started.borrow().clone();
    let Some(started) = started else {
        return false;
    };
    match started.placement.get(&drain_key(&shared.node)).await {
        Ok(entry) => entry.is_some(),
        Err(e) => {
            debug!(error = %e, "cannot read the drain record");
            false
        }
    }
}

/// Every app some live member runs, with its leader from the local election (apps running
/// here) or the lease record (others).
async fn app_views(shared: &Shared) -> Vec<AppView> {
    let mut views: BTreeMap<AppName, AppView> = BTreeMap::new();
    let mut members = members_of(shared);
    let me = shared.local_member();
    members.entry(me.node_id.clone()).or_insert(me);
    for member in members.values() {
        for app in &member.apps {
            views
                .entry(app.name.clone())
                .or_insert_with(|| AppView {
                    name: app.name.clone(),
                    mode: app.mode,
                    nodes: Vec::new(),
                    leader: None,
                    epoch: None,
                    no_leader_ms: None,
                })
                .nodes
                .push(member.node_id.clone());
        }
    }
    for view in views.values_mut() {
        if view.mode == Mode::Singleton {
            let (leader, epoch, no_leader_ms) = leader_of(shared, &view.name).await;
            view.leader = leader;
            view.epoch = epoch;
            view.no_leader_ms = no_leader_ms;
        }
    }
    views.into_values().collect()
}

/// The leader of `app` from a lease valid now: the local election (apps running here), else
/// the lease record, trusted only when it decodes and its epoch is consistent with the store
/// (as the election judges it). The third value is how long no leader has been known locally.
async fn leader_of(shared: &Shared, app: &AppName) -> (Option<NodeId>, Option<Epoch>, Option<u64>) {
    let local = read(&shared.apps).get(app).cloned();
    if let Some(app) = local
        && let Some(state) = app.election_state()
    {
        return match state.leader {
            Some(l) => (Some(l.node), Some(l.epoch), None),
            None => (
                None,
                None,
                state.leaderless_since.map(|since| {
                    u64::try_from(shared.clock.now().duration_since(since).as_millis())
                        .unwrap_or(u64::MAX)
                }),
            ),
        };
    }
    let Some(started) = shared.started.borrow().clone() else {
        return (None, None, None);
    };
    match trusted_leader(started.election.as_ref(), &shared.names.lease_key(app)).await {
        Ok(Some((node, epoch))) => (Some(node), Some(epoch), None),
        _ => (None, None, None),
    }
}

async fn step_down(shared: &Shared, app: Option<&AppName>) -> Result<StepDownReply> {
    let apps: Vec<App> = match app {
        Some(name) => {
            let app = read(&shared.apps).get(name).cloned().ok_or_else(|| {
                Error::AppNotFound(format!("{name} (it does not run on node {})", shared.node))
            })?;
            if !app.mode().is_singleton() {
                return Err(Error::InvalidArgument(format!(
                    "app {name} is a {} app: only Singleton apps have a leader",
                    app.mode()
                )));
            }
            vec![app]
        }
        None => read(&shared.apps)
            .values()
            .filter(|a| a.is_leader())
            .cloned()
            .collect(),
    };
    let mut stepped_down = Vec::new();
    for app in apps {
        let epoch = app.fencing_token();
        app.step_down().await?;
        info!(app = %app.name(), epoch = ?epoch, "stepped down on admin request");
        shared.audit(
            cluster_core::audit::category::OPERATOR,
            "stepdown",
            Some(app.name()),
            serde_json::json!({"epoch": epoch.map(|e| e.0)}),
        );
        stepped_down.push(SteppedDown {
            app: app.name().clone(),
            epoch,
        });
    }
    Ok(StepDownReply { stepped_down })
}
