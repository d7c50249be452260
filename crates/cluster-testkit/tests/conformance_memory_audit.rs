//! The audit-sink conformance suite against the in-memory audit log, on real and paused time.
//! (The log holds typed records, so no garbage can be stored in it: the raw-bytes scenario runs
//! against the JetStream sink in `cluster-nats`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use cluster_memory::MemoryAuditLog;
use cluster_testkit::conformance::audit::{self, AuditFactory, AuditLogs};

/// One new log per scenario; both handles share it (as every node of a network does).
struct Memory;

#[async_trait]
impl AuditFactory for Memory {
    async fn open(&self, _name: &str) -> AuditLogs {
        let log = Arc::new(MemoryAuditLog::new());
        AuditLogs {
            writer: log.clone(),
            reader: log,
        }
    }
}

#[tokio::test]
async fn audit_suite_real_time() {
    audit::run_all(&Memory).await;
}

#[tokio::test(start_paused = true)]
async fn audit_suite_paused_time() {
    audit::run_all(&Memory).await;
}
