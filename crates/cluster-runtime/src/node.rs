//! The services of one node that every runtime component shares and that never change once the
//! platform is built: names, identity, options, the injected transport, KV store and clock, the
//! counters, the audit emitter and the shutdown signal.
//!
//! Components take an `Arc<NodeContext>` (or `&NodeContext`) rather than the whole platform
//! state, so what they can reach is visible in their signatures.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::audit::AuditHub;
use crate::options::PlatformOptions;
use crate::stats::Stats;
use cluster_core::audit::AuditRecord;
use cluster_core::clock::Clock;
use cluster_core::id::{AppName, NodeId};
use cluster_core::kv::KvStore;
use cluster_core::transport::Transport;
use cluster_core::wire::names::Names;

/// One node's shared, immutable services (see the module docs).
pub(crate) struct NodeContext {
    /// Bucket names and subjects of the platform.
    pub(crate) names: Names,
    /// This node.
    pub(crate) node: NodeId,
    /// This process (a new id at every start).
    pub(crate) instance: String,
    /// The platform's options.
    pub(crate) options: PlatformOptions,
    /// Messaging.
    pub(crate) transport: Arc<dyn Transport>,
    /// KV buckets.
    pub(crate) kv: Arc<dyn KvStore>,
    /// Time.
    pub(crate) clock: Arc<dyn Clock>,
    /// Cancelled when the platform shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Counters exported as metrics.
    pub(crate) stats: Stats,
    /// The audit emitter.
    pub(crate) audit: AuditHub,
}

impl NodeContext {
    /// Emits an audit record from this node.
    pub(crate) fn audit(
        &self,
        category: &str,
        action: &str,
        app: Option<&AppName>,
        data: serde_json::Value,
    ) {
        self.audit_record(AuditRecord::new(category, action, app, &self.node, data));
    }

    /// Emits a prepared record (e.g. with a deduplication id).
    pub(crate) fn audit_record(&self, record: AuditRecord) {
        self.audit.emit(record, &self.stats);
    }
}
