//! `node.remove`: an operator deletes a stale member record on purpose.
//!
//! The answering node judges liveness from its own view (local monotonic clock): a record it
//! saw rewritten within `member_ttl` is live and the request is refused with that reason; a
//! record it saw only once is watched for two heartbeats (`2 × member_refresh`) and refused if
//! it changes. Otherwise the record is deleted by compare-and-delete on the revision seen (a
//! renewal in between makes it fail, refused as live) and the removal is audited.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::info;

use super::platform::Shared;
use cluster_core::error::{Error, Result};
use cluster_core::id::NodeId;
use cluster_core::kv::{KvWatch, WatchOp};
use cluster_core::wire::admin::{AdminRequest, NodeRemoved};
use cluster_core::wire::member::MemberRecord;
use cluster_core::wire::placement_admin::NodeParams;

/// Removes the member record of `params.node` if it is stale.
pub(super) async fn remove(shared: &Arc<Shared>, request: &AdminRequest) -> Result<NodeRemoved> {
    let params: NodeParams = request.params()?;
    let node = params.node;
    if node == shared.node {
        return Err(live(&node, "it is the node answering this request"));
    }
    let started = shared.started().await?;
    let bucket = started.liveness.bucket().clone();
    let key = shared.names.member_key(&node);
    let mut watch = bucket.watch(&key).await?;
    let entry = bucket
        .get(&key)
        .await?
        .ok_or_else(|| Error::NodeNotFound(format!("{node} (it has no member record)")))?;
    let seen = started
        .liveness
        .seen(&node)
        .filter(|s| s.revision == entry.revision);
    let since = match seen {
        Some(s) if s.renewed && !s.dead => {
            let ago = shared.clock.now().duration_since(s.since);
            return Err(live(
                &node,
                &format!(
                    "its member record was renewed {:.1} s ago",
                    ago.as_secs_f64()
                ),
            ));
        }
        Some(s) => s.since,
        None => shared.clock.now(),
    };
    let mut gone = false;
    if !seen.is_some_and(|s| s.dead) {
        match change(&mut watch, &key, shared.options.member_refresh * 2).await {
            Change::Renewed => return Err(live(&node, "its member record was renewed just now")),
            // The membership views removed it as stale meanwhile.
            Change::Gone => gone = true,
            Change::None => {}
        }
    }
    let idle = shared.clock.now().duration_since(since);
    let why = format!("not renewed for {:.1} s", idle.as_secs_f64());
    match bucket.delete(&key, Some(entry.revision)).await {
        Ok(()) => {}
        Err(Error::Conflict { current: None, .. }) if gone => {}
        Err(Error::Conflict { .. }) => {
            return Err(live(
                &node,
                "its member record changed while it was being removed",
            ));
        }
        Err(e) => return Err(e),
    }
    let instance = MemberRecord::decode(&entry.value)
        .map(|r| r.instance)
        .unwrap_or_default();
    info!(%node, revision = %entry.revision, %why, "stale member record removed on request");
    shared.audit(
        cluster_core::audit::category::OPERATOR,
        "node.remove",
        None,
        serde_json::json!({
            "node": node,
            "revision": entry.revision.0,
            "instance": instance,
            "why": why,
            "reason": params.reason,
        }),
    );
    Ok(NodeRemoved {
        node,
        revision: entry.revision.0,
        instance,
        why,
    })
}

fn live(node: &NodeId, why: &str) -> Error {
    Error::InvalidArgument(format!(
        "node {node} is live ({why}): not removed; stop its daemon, or drain it first"
    ))
}

/// What happened to a member key while it was watched.
enum Change {
    /// Nothing.
    None,
    /// It was written: its owner lives.
    Renewed,
    /// It was deleted or expired.
    Gone,
}

/// What happens to `key` within `wait`.
async fn change(watch: &mut KvWatch, key: &str, wait: Duration) -> Change {
    let first = async {
        while let Some(ev) = watch.next().await {
            if ev.key == key {
                return match ev.op {
                    WatchOp::Put => Change::Renewed,
                    WatchOp::Delete | WatchOp::Expired => Change::Gone,
                };
            }
        }
        Change::None
    };
    tokio::time::timeout(wait, first)
        .await
        .unwrap_or(Change::None)
}
