//! Fault injection on the in-memory KV store: partitions, heal, delays, forced and timed expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvBucket, KvStore, KvWatch, WatchEvent, WatchOp};
use cluster_memory::{MemoryNetwork, NetworkConfig};
use futures::StreamExt;
use tokio::time::{Instant, sleep, timeout};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn bucket(net: &MemoryNetwork, node: &str, ttl: bool) -> Arc<dyn KvBucket> {
    let mut config = BucketConfig::new("leases");
    config.per_key_ttl = ttl;
    net.kv(node).bucket(config).await.unwrap()
}

async fn next_within(watch: &mut KvWatch, wait: Duration) -> Option<WatchEvent> {
    timeout(wait, watch.next()).await.ok().flatten()
}

#[tokio::test(start_paused = true)]
async fn partitioned_node_kv_ops_fail_unavailable_after_op_timeout() {
    let net = MemoryNetwork::with_config(NetworkConfig {
        kv_op_timeout: Duration::from_millis(1500),
        ..NetworkConfig::default()
    });
    let a = bucket(&net, "a", false).await;
    let other = bucket(&net, "b", false).await;
    net.partition("a");
    let start = Instant::now();
    let r = a.put("k", b("v")).await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert!(matches!(a.get("k").await, Err(Error::Unavailable(_))));
    assert!(matches!(a.keys("").await, Err(Error::Unavailable(_))));
    assert!(matches!(a.watch("").await, Err(Error::Unavailable(_))));
    let r = net.kv("a").bucket(BucketConfig::new("other")).await;
    assert!(matches!(r, Err(Error::Unavailable(_))));
    // Nothing was written and other nodes are unaffected.
    assert_eq!(other.get("k").await.unwrap(), None);
    other.put("k", b("from-b")).await.unwrap();
    net.heal("a");
    assert_eq!(a.get("k").await.unwrap().unwrap().value, b("from-b"));
}

#[tokio::test(start_paused = true)]
async fn kv_op_completes_if_healed_within_op_timeout() {
    let net = MemoryNetwork::new();
    let a = bucket(&net, "a", false).await;
    net.partition("a");
    let healer = {
        let net = net.clone();
        tokio::spawn(async move {
            sleep(Duration::from_millis(400)).await;
            net.heal("a");
        })
    };
    let start = Instant::now();
    a.put("k", b("v")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    healer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn partitioned_watch_holds_events_and_resumes_in_order_after_heal() {
    let net = MemoryNetwork::new();
    let a = bucket(&net, "a", false).await;
    let watcher = bucket(&net, "b", false).await;
    let mut watch = watcher.watch("k").await.unwrap();
    net.partition("b");
    let mut revisions = Vec::new();
    for i in 0..3 {
        revisions.push(a.put(&format!("k{i}"), b(&i.to_string())).await.unwrap());
    }
    a.delete("k0", None).await.unwrap();
    assert_eq!(next_within(&mut watch, Duration::from_secs(30)).await, None);
    net.heal("b");
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next_within(&mut watch, Duration::ZERO).await.unwrap());
    }
    let got: Vec<(&str, WatchOp)> = events.iter().map(|e| (e.key.as_str(), e.op)).collect();
    assert_eq!(
        got,
        [
            ("k0", WatchOp::Put),
            ("k1", WatchOp::Put),
            ("k2", WatchOp::Put),
            ("k0", WatchOp::Delete)
        ]
    );
    let got_revs: Vec<_> = events[..3].iter().map(|e| e.revision).collect();
    assert_eq!(got_revs, revisions);
    assert!(events[3].revision > revisions[2]);
}

#[tokio::test(start_paused = true)]
async fn expire_key_fires_expired_now() {
    let net = MemoryNetwork::new();
    let a = bucket(&net, "a", true).await;
    let mut watch = a.watch("").await.unwrap();
    let r1 = a
        .create("lease", b("me"), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(watch.next().await.unwrap().op, WatchOp::Put);
    let start = Instant::now();
    assert!(net.expire_key("leases", "lease"));
    let ev = next_within(&mut watch, Duration::ZERO).await.unwrap();
    assert_eq!((ev.key.as_str(), ev.op), ("lease", WatchOp::Expired));
    assert!(ev.revision > r1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(a.get("lease").await.unwrap(), None);
    assert!(!net.expire_key("leases", "lease"), "nothing left to expire");
    assert!(!net.expire_key("no-such-bucket", "lease"));
    // The old TTL timer must not expire the new value.
    let r2 = a.create("lease", b("you"), None).await.unwrap();
    assert!(r2 > ev.revision);
    sleep(Duration::from_secs(120)).await;
    assert_eq!(a.get("lease").await.unwrap().unwrap().revision, r2);
    assert_eq!(
        next_within(&mut watch, Duration::ZERO)
            .await
            .unwrap()
            .revision,
        r2
    );
    assert_eq!(next_within(&mut watch, Duration::ZERO).await, None);
}

#[tokio::test(start_paused = true)]
async fn ttl_expires_exactly_at_deadline_under_paused_time() {
    let net = MemoryNetwork::new();
    let a = bucket(&net, "a", true).await;
    let ttl = Duration::from_secs(5);
    a.create("k", b("v"), Some(ttl)).await.unwrap();
    let start = Instant::now();
    sleep(ttl - Duration::from_millis(1)).await;
    assert!(a.get("k").await.unwrap().is_some(), "alive before its ttl");
    sleep(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(a.get("k").await.unwrap(), None, "gone at its ttl");
    assert_eq!(start.elapsed(), ttl);
}

#[tokio::test(start_paused = true)]
async fn partitioned_leader_cannot_renew_and_another_node_takes_over() {
    let net = MemoryNetwork::new();
    let leader = bucket(&net, "n1", true).await;
    let follower = bucket(&net, "n2", true).await;
    let ttl = Duration::from_secs(3);
    let mut watch = follower.watch("leader").await.unwrap();
    let rev = leader.create("leader", b("n1"), Some(ttl)).await.unwrap();
    assert_eq!(watch.next().await.unwrap().revision, rev);
    let start = Instant::now();
    net.partition("n1");
    let renew = leader.update("leader", b("n1"), rev, Some(ttl)).await;
    assert!(matches!(renew, Err(Error::Unavailable(_))));
    let ev = next_within(&mut watch, ttl).await.unwrap();
    assert_eq!(ev.op, WatchOp::Expired);
    assert_eq!(
        start.elapsed(),
        ttl,
        "expiry judged by the store at the ttl"
    );
    let epoch = follower.create("leader", b("n2"), Some(ttl)).await.unwrap();
    assert!(epoch > ev.revision);
    net.heal("n1");
    match leader.update("leader", b("n1"), rev, Some(ttl)).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current, Some(epoch)),
        other => panic!("stale leader must be fenced, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn delay_slows_kv_ops_and_watch_events_of_the_node() {
    let net = MemoryNetwork::new();
    let a = bucket(&net, "a", false).await;
    let slow = bucket(&net, "slow", false).await;
    let mut watch = slow.watch("").await.unwrap();
    net.set_delay("slow", Duration::from_millis(250));
    let start = Instant::now();
    slow.put("k", b("1")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    let ev = watch.next().await.unwrap();
    assert_eq!(ev.key, "k");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "op delay + event delay"
    );
    let start = Instant::now();
    a.put("fast", b("2")).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "other nodes are not delayed"
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_watches_are_removed() {
    let net = MemoryNetwork::new();
    let a = bucket(&net, "a", false).await;
    let w1 = a.watch("").await.unwrap();
    let w2 = a.watch("x/").await.unwrap();
    assert_eq!(net.watch_count("leases"), 2);
    drop(w1);
    assert_eq!(net.watch_count("leases"), 1);
    drop(w2);
    assert_eq!(net.watch_count("leases"), 0);
}

#[tokio::test(start_paused = true)]
async fn buckets_are_shared_by_name_across_nodes() {
    let net = MemoryNetwork::new();
    let store_a = net.kv("a");
    let store_b = net.kv("b");
    let a = store_a.bucket(BucketConfig::new("one")).await.unwrap();
    let b2 = store_b.bucket(BucketConfig::new("one")).await.unwrap();
    let other = store_b.bucket(BucketConfig::new("two")).await.unwrap();
    let r = a.put("k", b("v")).await.unwrap();
    assert_eq!(b2.get("k").await.unwrap().unwrap().revision, r);
    assert_eq!(other.get("k").await.unwrap(), None);
    let r2 = other.put("k", b("w")).await.unwrap();
    assert_eq!(r2.0, 1, "revisions are per bucket");
}
