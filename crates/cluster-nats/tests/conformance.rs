//! The cluster-testkit conformance suites against NATS: one server and a 3-server cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::{KvStore, Result, Transport};
use cluster_nats::NatsConnection;
use cluster_testkit::conformance::kv::{self, KvFactory};
use cluster_testkit::conformance::transport::{self, TransportFactory};
use cluster_testkit::nats_server::{NatsCluster, NatsServer};

/// Every `connect` is a new NATS connection to the same server(s).
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
impl KvFactory for Nats {
    async fn connect(&self) -> Result<Arc<dyn KvStore>> {
        Ok(Arc::new(
            self.connection().await?.kv_store(Some(self.replicas)),
        ))
    }
}

#[async_trait]
impl TransportFactory for Nats {
    async fn connect(&self) -> Result<Arc<dyn Transport>> {
        Ok(Arc::new(self.connection().await?.transport()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_suite_single_server() {
    let server = NatsServer::start();
    kv::run_all(&Nats {
        urls: vec![server.url()],
        replicas: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_suite_single_server() {
    let server = NatsServer::start();
    transport::run_all(&Nats {
        urls: vec![server.url()],
        replicas: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_transport_suites_on_a_three_server_cluster() {
    let cluster = NatsCluster::start(3);
    let nats = Nats {
        urls: cluster.urls(),
        replicas: 3,
    };
    kv::run_all(&nats).await;
    // Core NATS propagates subscription interest between servers asynchronously, so "delivered
    // once subscribe returned" holds per server (see the Transport contract): the transport
    // suite runs with every connection on the same cluster member.
    let pinned = Nats {
        urls: vec![cluster.url(0)],
        replicas: 3,
    };
    transport::run_all(&pinned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_and_lock_suites_single_server() {
    use cluster_testkit::conformance::election::{self, LeaseElectionFactory, suite_timing};
    use cluster_testkit::conformance::lock::{self, KvLockFactory};

    let server = NatsServer::start();
    let nats = || Nats {
        urls: vec![server.url()],
        replicas: 1,
    };
    election::run_all(&LeaseElectionFactory::new(nats(), suite_timing())).await;
    lock::run_all(&KvLockFactory::new(nats())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_and_lock_suites_on_a_three_server_cluster() {
    use cluster_testkit::conformance::election::{self, LeaseElectionFactory, suite_timing};
    use cluster_testkit::conformance::lock::{self, KvLockFactory};

    let cluster = NatsCluster::start(3);
    let nats = || Nats {
        urls: cluster.urls(),
        replicas: 3,
    };
    election::run_all(&LeaseElectionFactory::new(nats(), suite_timing()).replicas(3)).await;
    lock::run_all(&KvLockFactory::new(nats())).await;
}
