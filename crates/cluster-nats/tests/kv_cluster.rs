//! The KV contract against a 3-server JetStream cluster with R3 buckets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cluster_testkit::nats_server::NatsCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_contract_on_r3_buckets() {
    let cluster = NatsCluster::start(3);
    let connection = common::connect(&cluster.urls()).await;
    let store = connection.kv_store(Some(3));
    common::kv_scenarios::run_all(&store).await;
}
