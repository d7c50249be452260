//! The placement methods of the admin service: status, cordon, uncordon, drain, labels, move
//! and rebalance plans. Each runs the platform's own operation (`runtime/placement/ops.rs`) on
//! the answering node; formats in [`cluster_core::wire::placement_admin`].

use std::sync::Arc;
use std::time::Duration;

use super::placement::{DrainOptions, MoveRequest, gather_plan_request};
use super::platform::{Platform, Shared};
use cluster_core::election::LeaseRecord;
use cluster_core::error::{Error, Result};
use cluster_core::id::NodeId;
use cluster_core::labels::Labels;
use cluster_core::wire::admin::{AdminMethod, AdminRequest};
use cluster_core::wire::member::MemberRecord;
use cluster_core::wire::placement::cordon_key;
use cluster_core::wire::placement_admin::{
    DrainParams, DrainReply, LabelParams, MoveParams, MoveReply, NodeParams, PendingMove,
    PlacementStatus, RebalanceParams,
};
use cluster_core::wire::rebalance::{ApproveParams, ConfigSetParams};

/// Longest drain or move an admin request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("encode admin result: {e}")))
}

fn wait(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_WAIT)
}

/// Runs one placement method.
pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    method: AdminMethod,
    request: &AdminRequest,
) -> Result<serde_json::Value> {
    if shared.planner.is_none() {
        return Err(Error::Unsupported(format!(
            "{method}: node {} runs without the placement controller",
            shared.node
        )));
    }
    let platform = Platform::from_shared(shared.clone());
    match method {
        AdminMethod::PlacementStatus => json(&status(shared).await?),
        AdminMethod::NodeCordon => {
            let p: NodeParams = request.params()?;
            let reason = if p.reason.is_empty() {
                "admin"
            } else {
                &p.reason
            };
            platform.cordon_node(p.node.as_str(), reason).await?;
            json(&p)
        }
        AdminMethod::NodeUncordon => {
            let p: NodeParams = request.params()?;
            let started = shared.started().await?;
            let live = started.membership.borrow().contains_key(&p.node);
            let recorded = started.placement.get(&cordon_key(&p.node)).await?.is_some();
            if !live && !recorded {
                return Err(Error::NodeNotFound(p.node.to_string()));
            }
            platform.uncordon_node(p.node.as_str()).await?;
            json(&p)
        }
        AdminMethod::NodeDrain => {
            let p: DrainParams = request.params()?;
            let options = DrainOptions {
                timeout: wait(p.timeout_ms),
                force: p.force,
                max_concurrent: p.max_concurrent,
            };
            let done = platform
                .drain_node(p.node.as_str(), options, |_| {})
                .await?;
            json(&DrainReply {
                node: p.node,
                total: done.total,
                remaining: done.remaining,
            })
        }
        AdminMethod::NodeLabel => {
            let p: LabelParams = request.params()?;
            for key in &p.remove {
                // Validates the key like a label would be.
                Labels::new().insert(key.as_str(), "x")?;
            }
            if !p.set.is_empty() {
                platform.update_node_labels(p.node.as_str(), &p.set).await?;
            }
            for key in &p.remove {
                platform.remove_node_label(p.node.as_str(), key).await?;
            }
            json(&p)
        }
        AdminMethod::AppMove => {
            let p: MoveParams = request.params()?;
            let to = platform
                .move_app(MoveRequest {
                    app: p.app.to_string(),
                    from: p.from.to_string(),
                    to: p.to.as_ref().map(ToString::to_string),
                    timeout: wait(p.timeout_ms),
                })
                .await?;
            json(&MoveReply {
                app: p.app,
                from: p.from,
                to,
            })
        }
        AdminMethod::RebalancePlan => {
            let p: RebalanceParams = request.params().unwrap_or_default();
            json(
                &platform
                    .rebalance_plan_with(p.app.as_ref().map(|a| a.as_str()), p.threshold)
                    .await?,
            )
        }
        AdminMethod::RebalanceStatus => json(&platform.rebalance_status().await?),
        AdminMethod::RebalanceCancel => json(&platform.cancel_rebalance().await?),
        AdminMethod::RebalanceApprove => {
            let p: ApproveParams = request.params()?;
            platform.approve_migration(p.app.as_str()).await?;
            json(&p)
        }
        AdminMethod::ConfigGet => json(&platform.placement_config().await?),
        AdminMethod::ConfigSet => {
            let p: ConfigSetParams = request.params()?;
            json(&platform.set_placement_config(&p.key, &p.value).await?)
        }
        other => Err(Error::Internal(format!(
            "{other} is not a placement method"
        ))),
    }
}

async fn status(shared: &Arc<Shared>) -> Result<PlacementStatus> {
    let started = shared.started().await?;
    let gathered = gather_plan_request(shared, &*started.placement).await?;
    let nodes = |names: &[String]| -> Vec<NodeId> {
        names.iter().filter_map(|n| NodeId::new(n).ok()).collect()
    };
    let members = started
        .membership
        .borrow()
        .values()
        .map(MemberRecord::from_member)
        .collect();
    let controller = match started
        .election
        .get(&shared.names.controller_lease_key())
        .await?
    {
        Some(e) => LeaseRecord::decode(&e.value)
            .ok()
            .filter(|r| r.handoff_to.is_none())
            .map(|r| r.node),
        None => None,
    };
    Ok(PlacementStatus {
        controller,
        assignment: gathered.current,
        cordoned: nodes(&gathered.cordoned),
        draining: nodes(&gathered.draining),
        moves: gathered
            .request
            .moves
            .into_iter()
            .map(|m| PendingMove {
                app: m.app,
                from: m.from,
                to: m.to,
            })
            .collect(),
        members,
    })
}
