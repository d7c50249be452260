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

/// SIGKILL of the server leading the bucket's stream: writes fail for a while (JetStream
/// elects a new stream leader, 4–9 s), then succeed again; no acknowledged write is lost and the
/// watch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_leader_crash_on_r3_bucket() {
    use std::time::Duration;

    use bytes::Bytes;
    use cluster_core::{BucketConfig, KvStore};

    let mut cluster = NatsCluster::start(3);
    let connection = common::connect(&cluster.urls()).await;
    let name = common::unique("failover");
    let kv = connection
        .kv_store(Some(3))
        .bucket(BucketConfig::new(&name))
        .await
        .unwrap();
    let mut watch = kv.watch("").await.unwrap();
    let r1 = kv.put("before", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(
        common::next_event(&mut watch, Duration::from_secs(5))
            .await
            .revision,
        r1
    );
    let leader = common::eventually(Duration::from_secs(10), || {
        let found = cluster.stream_leader(&format!("KV_{name}"));
        async move { found }
    })
    .await;
    cluster.kill(leader);

    let r2 = common::eventually(Duration::from_secs(30), || {
        let kv = kv.clone();
        async move { kv.put("after", Bytes::from_static(b"2")).await.ok() }
    })
    .await;
    assert!(r2 > r1);
    let e = common::next_event(&mut watch, Duration::from_secs(30)).await;
    assert_eq!((e.key.as_str(), e.revision), ("after", r2));
    assert_eq!(kv.get("before").await.unwrap().unwrap().revision, r1);
    let new_leader = cluster.stream_leader(&format!("KV_{name}"));
    assert!(new_leader.is_some_and(|l| l != leader), "{new_leader:?}");
}
