//! The audit-sink conformance suite (every scenario, garbage in the stream included) against
//! the JetStream audit log on a real nats-server: each scenario a new platform (its own
//! stream), the two handles on two connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::PlatformName;
use cluster_nats::{AuditStreamOptions, NatsAuditLog};
use cluster_testkit::conformance::audit::{self, AuditFactory, AuditLogs, RawAuditFactory};
use cluster_testkit::nats_server::NatsServer;

struct Nats {
    url: String,
}

/// The platform of log `name` (platform names use `-`, not `_`).
fn platform(name: &str) -> PlatformName {
    name.replace('_', "-").parse().expect("valid platform name")
}

#[async_trait]
impl AuditFactory for Nats {
    async fn open(&self, name: &str) -> AuditLogs {
        let mut handles = Vec::new();
        for _ in 0..2 {
            let conn = common::connect(std::slice::from_ref(&self.url)).await;
            let log = NatsAuditLog::open(&conn, &platform(name), AuditStreamOptions::default())
                .await
                .unwrap();
            handles.push(Arc::new(log));
        }
        let reader = handles.pop().unwrap();
        AuditLogs {
            writer: handles.pop().unwrap(),
            reader,
        }
    }
}

#[async_trait]
impl RawAuditFactory for Nats {
    /// A raw JetStream publish on the audit subject, as a buggy tool would do.
    async fn store_raw(&self, name: &str, category: &str, bytes: &[u8]) {
        let client = async_nats::connect(&self.url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(
            format!("cluster.{}.audit.{category}.raw", platform(name)),
            bytes.to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_suite_single_server() {
    let server = NatsServer::start();
    audit::run_all_raw(&Nats { url: server.url() }).await;
}
