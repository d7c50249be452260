//! Subscriptions and KV watches survive server restarts, pauses and failovers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, Headers, KvBucket, KvStore, Subscription, Transport, WatchOp};
use cluster_nats::NatsConnection;
use cluster_testkit::nats_server::{FaultProxy, NatsCluster, NatsServer};
use futures::StreamExt;

const RECOVER: Duration = Duration::from_secs(20);

async fn wait_connected(c: &NatsConnection) {
    common::eventually(RECOVER, || async { c.is_connected().then_some(()) }).await;
}

async fn wait_disconnected(c: &NatsConnection) {
    common::eventually(RECOVER, || async { (!c.is_connected()).then_some(()) }).await;
}

/// Publishes until the subscription receives one message (the server may need a moment after
/// a reconnect to register the restored subscription).
async fn publish_until_received(t: &dyn Transport, sub: &mut Subscription, subject: &str) {
    let deadline = tokio::time::Instant::now() + RECOVER;
    loop {
        let _ = t
            .publish(subject, None, Headers::new(), Bytes::from_static(b"hi"))
            .await;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            assert_eq!(m.subject, subject);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription did not resume"
        );
    }
}

async fn put_retrying(kv: &dyn KvBucket, key: &str, value: &str) -> cluster_core::Revision {
    common::eventually(RECOVER, || async {
        kv.put(key, Bytes::from(value.to_owned())).await.ok()
    })
    .await
}

async fn ttl_bucket(conn: &NatsConnection, replicas: usize) -> Arc<dyn KvBucket> {
    conn.kv_store(Some(replicas))
        .bucket(BucketConfig::new(common::unique("rc")).with_per_key_ttl())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_subscription_survive_server_restart() {
    let mut server = NatsServer::start();
    let conn = common::connect(&[server.url()]).await;
    let t = conn.transport();
    let kv = ttl_bucket(&conn, 1).await;
    let mut sub = t.subscribe("events.>", None).await.unwrap();
    let mut watch = kv.watch("").await.unwrap();
    let r1 = kv.put("before", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(common::next_event(&mut watch, RECOVER).await.revision, r1);

    server.restart();
    wait_connected(&conn).await;

    let r2 = put_retrying(kv.as_ref(), "after", "2").await;
    let e = common::next_event(&mut watch, RECOVER).await;
    assert_eq!((e.key.as_str(), e.revision), ("after", r2));
    assert!(r2 > r1, "revisions continue after a restart");
    publish_until_received(&t, &mut sub, "events.after-restart").await;
    // Expiry events still arrive after the restart.
    kv.create(
        "lease",
        Bytes::from_static(b"x"),
        Some(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(
        common::next_event(&mut watch, RECOVER).await.op,
        WatchOp::Put
    );
    assert_eq!(
        common::next_event(&mut watch, RECOVER).await.op,
        WatchOp::Expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_made_before_any_event_survives_a_crash_without_replaying_old_keys() {
    let mut server = NatsServer::start();
    let conn = common::connect(&[server.url()]).await;
    let kv = ttl_bucket(&conn, 1).await;
    kv.put("old", Bytes::from_static(b"0")).await.unwrap();
    let mut watch = kv.watch("").await.unwrap();

    server.kill();
    wait_disconnected(&conn).await;
    server.start_again();
    wait_connected(&conn).await;

    let r = put_retrying(kv.as_ref(), "new", "1").await;
    let e = common::next_event(&mut watch, RECOVER).await;
    assert_eq!(
        (e.key.as_str(), e.revision),
        ("new", r),
        "the pre-watch key must not be replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_subscription_survive_sigstop_sigcont() {
    let mut server = NatsServer::start();
    let conn = common::connect(&[server.url()]).await;
    let t = conn.transport();
    let kv = ttl_bucket(&conn, 1).await;
    let mut sub = t.subscribe("paused.>", None).await.unwrap();
    let mut watch = kv.watch("k").await.unwrap();
    let r1 = kv.put("k1", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(common::next_event(&mut watch, RECOVER).await.revision, r1);

    server.pause();
    // Pings go unanswered: the client notices and reports the connection down.
    wait_disconnected(&conn).await;
    assert!(kv.put("k2", Bytes::from_static(b"2")).await.is_err());
    server.resume();
    wait_connected(&conn).await;

    let r3 = put_retrying(kv.as_ref(), "k3", "3").await;
    let mut seen = Vec::new();
    while seen.last() != Some(&r3) {
        let e = common::next_event(&mut watch, RECOVER).await;
        assert!(e.revision > r1 && e.revision <= r3, "unexpected {e:?}");
        seen.push(e.revision);
    }
    publish_until_received(&t, &mut sub, "paused.after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_catches_up_on_changes_made_while_cut_off() {
    let server = NatsServer::start();
    let writer = common::connect(&[server.url()]).await;
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let watcher =
        NatsConnection::connect(common::test_options(&[proxy.url()]).ignore_discovered_servers())
            .await
            .unwrap();
    let bucket = BucketConfig::new(common::unique("cut")).with_per_key_ttl();
    let kv_w = writer
        .kv_store(Some(1))
        .bucket(bucket.clone())
        .await
        .unwrap();
    let kv_r = watcher.kv_store(Some(1)).bucket(bucket).await.unwrap();
    let mut watch = kv_r.watch("").await.unwrap();
    let r1 = kv_w.put("a", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(common::next_event(&mut watch, RECOVER).await.revision, r1);

    proxy.cut();
    wait_disconnected(&watcher).await;
    // Changes while the watcher is partitioned away.
    let r2 = kv_w.put("b", Bytes::from_static(b"2")).await.unwrap();
    kv_w.delete("a", None).await.unwrap();
    assert!(matches!(
        kv_r.get("a").await,
        Err(cluster_core::Error::Unavailable(_) | cluster_core::Error::Timeout(_))
    ));
    proxy.heal();
    wait_connected(&watcher).await;

    let e = common::next_event(&mut watch, RECOVER).await;
    assert_eq!((e.key.as_str(), e.op, e.revision), ("b", WatchOp::Put, r2));
    let e = common::next_event(&mut watch, RECOVER).await;
    assert_eq!((e.key.as_str(), e.op), ("a", WatchOp::Delete));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_member_crash_is_survived_by_watches_and_subscriptions() {
    let mut cluster = NatsCluster::start(3);
    // Connect to server 0 only first, so killing it forces a failover to a discovered server.
    let conn = NatsConnection::connect(common::test_options(&cluster.urls()))
        .await
        .unwrap();
    let t = conn.transport();
    let store = conn.kv_store(Some(3));
    let kv = store
        .bucket(BucketConfig::new(common::unique("r3")).with_per_key_ttl())
        .await
        .unwrap();
    let mut sub = t.subscribe("fail.>", None).await.unwrap();
    let mut watch = kv.watch("").await.unwrap();
    let r1 = kv.put("a", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(common::next_event(&mut watch, RECOVER).await.revision, r1);

    // Crash the server this client is connected to.
    let connected = conn.client().server_info().server_name;
    let victim = cluster.index_of(&connected).unwrap();
    cluster.kill(victim);

    let r2 = put_retrying(kv.as_ref(), "b", "2").await;
    let e = common::next_event(&mut watch, RECOVER).await;
    assert_eq!((e.key.as_str(), e.revision), ("b", r2));
    publish_until_received(&t, &mut sub, "fail.after").await;
    assert_ne!(conn.client().server_info().server_name, connected);

    cluster.start_again(victim);
    let r3 = put_retrying(kv.as_ref(), "c", "3").await;
    assert_eq!(common::next_event(&mut watch, RECOVER).await.revision, r3);
}
