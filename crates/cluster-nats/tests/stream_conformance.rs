//! The `ReplicatedLog` and `ObjectStore` conformance suites against NATS: one server (R1) and a
//! 3-server cluster (R3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::Result;
use cluster_core::stream::{ObjectStore, ReplicatedLog};
use cluster_nats::{
    LogConfig, NatsConnection, NatsObjectStore, NatsReplicatedLog, ObjectStoreConfig,
};
use cluster_testkit::conformance::stream::{self, LogFactory, ObjectStoreFactory};
use cluster_testkit::nats_server::{NatsCluster, NatsServer};

/// Every `open` is a new NATS connection to the same server(s).
struct Nats {
    urls: Vec<String>,
    replicas: usize,
}

impl Nats {
    async fn connection(&self) -> Result<NatsConnection> {
        NatsConnection::connect(common::test_options(&self.urls)).await
    }
}

#[async_trait]
impl LogFactory for Nats {
    async fn open(&self, name: &str) -> Result<Arc<dyn ReplicatedLog>> {
        let config = LogConfig::new(format!("LOG_{name}"), format!("conf.log.{name}"))
            .replicas(self.replicas);
        Ok(Arc::new(
            NatsReplicatedLog::open(&self.connection().await?, config).await?,
        ))
    }
}

#[async_trait]
impl ObjectStoreFactory for Nats {
    async fn open(&self, name: &str) -> Result<Arc<dyn ObjectStore>> {
        let config = ObjectStoreConfig::new(name).replicas(self.replicas);
        Ok(Arc::new(
            NatsObjectStore::open(&self.connection().await?, config).await?,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_object_store_suites_single_server() {
    let server = NatsServer::start();
    let nats = Nats {
        urls: vec![server.url()],
        replicas: 1,
    };
    stream::run_log_suite(&nats).await;
    stream::run_object_store_suite(&nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_object_store_suites_on_a_three_server_cluster_r3() {
    let cluster = NatsCluster::start(3);
    let nats = Nats {
        urls: cluster.urls(),
        replicas: 3,
    };
    stream::run_log_suite(&nats).await;
    stream::run_object_store_suite(&nats).await;
}
