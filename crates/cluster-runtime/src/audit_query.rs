//! The query handle of the platform's audit records ([`Audit`]).

use std::sync::{Arc, Weak};

use crate::node::NodeContext;
use cluster_core::audit::{AuditFilter, AuditPage, AuditRecord, AuditSink};
use cluster_core::error::{Error, Result};
use cluster_core::id::AppName;

/// Reads the platform's audit records ([`Platform::audit`](super::Platform::audit)).
#[derive(Clone)]
pub struct Audit {
    node: Weak<NodeContext>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl Audit {
    pub(crate) fn new(node: &Arc<NodeContext>) -> Self {
        Self {
            node: Arc::downgrade(node),
        }
    }

    fn sink(&self) -> Result<Arc<dyn AuditSink>> {
        let shared = self.node.upgrade().ok_or(Error::ShuttingDown)?;
        shared.audit.sink().ok_or_else(|| {
            Error::Unsupported("this platform was built without an audit sink".into())
        })
    }

    /// Records matching `filter`, oldest first, one page at a time (see [`AuditPage`]).
    pub async fn query(&self, filter: &AuditFilter) -> Result<AuditPage> {
        self.sink()?.query(filter).await
    }

    /// Records an application-defined event (category and action are validated).
    pub fn record(
        &self,
        category: &str,
        action: &str,
        app: Option<&AppName>,
        data: serde_json::Value,
    ) -> Result<()> {
        let shared = self.node.upgrade().ok_or(Error::ShuttingDown)?;
        let record = AuditRecord::new(category, action, app, &shared.node, data);
        record.validate()?;
        shared.audit_record(record);
        Ok(())
    }

    /// Waits (at most 2 s) until every record emitted so far on this node was written.
    pub async fn flush(&self) {
        if let Some(shared) = self.node.upgrade() {
            shared.audit.flush().await;
        }
    }
}
