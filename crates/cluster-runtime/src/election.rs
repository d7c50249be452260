//! Starting the platform's lease elections (Singleton apps and the placement controller) with
//! their rejected records audited as `election.record.rejected`.

use std::sync::Arc;

use serde_json::json;

use crate::lease::LeaseElection;
use crate::node::NodeContext;
use cluster_core::election::{RejectedRecord, RejectionReporter};
use cluster_core::error::Result;
use cluster_core::id::AppName;
use cluster_core::kv::KvBucket;

/// Starts the election of `key` in the election bucket on this node (not yet campaigning).
pub(crate) fn start(
    node: &Arc<NodeContext>,
    bucket: Arc<dyn KvBucket>,
    key: String,
    app: Option<&AppName>,
) -> Result<LeaseElection> {
    let weak = Arc::downgrade(node);
    let app = app.cloned();
    let reporter: RejectionReporter = Arc::new(move |r: &RejectedRecord| {
        if let Some(node) = weak.upgrade() {
            node.audit(
                "election",
                "record.rejected",
                app.as_ref(),
                json!({"key": r.key, "revision": r.revision.0, "reason": r.reason}),
            );
        }
    });
    LeaseElection::start_reporting(
        bucket,
        key,
        node.node.clone(),
        node.instance.clone(),
        node.options.election,
        node.clock.clone(),
        reporter,
    )
}
