//! Fault injection on the in-memory transport: partitions, delays, drop rates, counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{Error, Headers, Subscription, Transport};
use cluster_memory::{MemoryNetwork, NetworkConfig};
use futures::StreamExt;
use tokio::time::{Instant, timeout};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn publish(t: &dyn Transport, subject: &str, payload: &str) {
    t.publish(subject, None, Headers::new(), b(payload))
        .await
        .unwrap();
}

/// The next message, or `None` if nothing arrives within `wait` (of paused time).
async fn next_within(sub: &mut Subscription, wait: Duration) -> Option<Bytes> {
    timeout(wait, sub.next())
        .await
        .ok()
        .flatten()
        .map(|m| m.payload)
}

#[tokio::test(start_paused = true)]
async fn partitioned_publisher_is_dropped_until_healed() {
    let net = MemoryNetwork::new();
    let (a, b2, c) = (net.transport("a"), net.transport("b"), net.transport("c"));
    let mut sub = b2.subscribe("s", None).await.unwrap();
    net.partition("a");
    publish(a.as_ref(), "s", "lost").await;
    publish(c.as_ref(), "s", "from-c").await;
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(1)).await,
        Some(b("from-c"))
    );
    assert_eq!(next_within(&mut sub, Duration::from_secs(5)).await, None);
    assert_eq!(net.stats("a").dropped, 1);
    assert_eq!(net.stats("a").published, 1);
    net.heal("a");
    publish(a.as_ref(), "s", "after-heal").await;
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(1)).await,
        Some(b("after-heal"))
    );
    assert_eq!(net.stats("b").delivered, 2);
}

#[tokio::test(start_paused = true)]
async fn partitioned_subscriber_receives_nothing() {
    let net = MemoryNetwork::new();
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let mut sub = b2.subscribe("s.>", None).await.unwrap();
    net.partition("b");
    for i in 0..5 {
        publish(a.as_ref(), "s.x", &i.to_string()).await;
    }
    assert_eq!(next_within(&mut sub, Duration::from_secs(10)).await, None);
    net.heal("b");
    // At most once: what was published during the partition is gone.
    publish(a.as_ref(), "s.x", "new").await;
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(1)).await,
        Some(b("new"))
    );
    assert_eq!(net.stats("b").delivered, 1);
}

#[tokio::test(start_paused = true)]
async fn in_flight_messages_to_a_node_partitioned_meanwhile_are_dropped() {
    let net = MemoryNetwork::new();
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let mut sub = b2.subscribe("s", None).await.unwrap();
    net.set_delay("a", Duration::from_millis(500));
    publish(a.as_ref(), "s", "in-flight").await;
    net.partition("b");
    assert_eq!(next_within(&mut sub, Duration::from_secs(2)).await, None);
    assert_eq!(net.stats("b").dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn partitioned_requester_times_out_after_its_timeout() {
    let net = MemoryNetwork::new();
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let _responder = b2.subscribe("svc", None).await.unwrap();
    net.partition("a");
    let start = Instant::now();
    let r = a
        .request("svc", Headers::new(), b("x"), Duration::from_millis(750))
        .await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(750));
    assert!(matches!(a.flush().await, Err(Error::Unavailable(_))));
}

#[tokio::test(start_paused = true)]
async fn partitioned_responder_counts_as_disconnected() {
    let net = MemoryNetwork::new();
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let _responder = b2.subscribe("svc", None).await.unwrap();
    net.partition("b");
    let r = a
        .request("svc", Headers::new(), b("x"), Duration::from_secs(1))
        .await;
    assert!(matches!(r, Err(Error::NoResponders(_))), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn queue_group_skips_partitioned_members() {
    let net = MemoryNetwork::new();
    let a = net.transport("a");
    let mut on_b = net.transport("b").subscribe("q", Some("g")).await.unwrap();
    let mut on_c = net.transport("c").subscribe("q", Some("g")).await.unwrap();
    net.partition("c");
    for i in 0..10 {
        publish(a.as_ref(), "q", &i.to_string()).await;
    }
    for i in 0..10 {
        let got = next_within(&mut on_b, Duration::from_secs(1)).await;
        assert_eq!(got, Some(b(&i.to_string())));
    }
    net.heal("c");
    assert_eq!(next_within(&mut on_c, Duration::from_secs(1)).await, None);
    // Healed: round-robin over both members again.
    for i in 0..4 {
        publish(a.as_ref(), "q", &i.to_string()).await;
    }
    let mut got_b = 0;
    while next_within(&mut on_b, Duration::from_millis(10))
        .await
        .is_some()
    {
        got_b += 1;
    }
    let mut got_c = 0;
    while next_within(&mut on_c, Duration::from_millis(10))
        .await
        .is_some()
    {
        got_c += 1;
    }
    assert_eq!((got_b, got_c), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn delay_postpones_delivery_and_keeps_order() {
    let net = MemoryNetwork::new();
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let mut sub = b2.subscribe("s", None).await.unwrap();
    net.set_delay("a", Duration::from_millis(300));
    net.set_delay("b", Duration::from_millis(200));
    let start = Instant::now();
    publish(a.as_ref(), "s", "slow").await;
    net.set_delay("a", Duration::ZERO);
    net.set_delay("b", Duration::ZERO);
    publish(a.as_ref(), "s", "fast").await;
    assert_eq!(
        next_within(&mut sub, Duration::from_secs(1)).await,
        Some(b("slow"))
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "publisher + receiver delay"
    );
    // The later message never overtakes the delayed one.
    assert_eq!(next_within(&mut sub, Duration::ZERO).await, Some(b("fast")));
}

/// Publishes `n` messages from a node with a drop rate and returns the indices received.
async fn received_with_drop_rate(seed: u64, rate: f64, n: usize) -> (BTreeSet<usize>, u64) {
    let net = MemoryNetwork::with_config(NetworkConfig {
        seed,
        ..NetworkConfig::default()
    });
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let mut sub = b2.subscribe("s", None).await.unwrap();
    net.set_drop_rate("a", rate);
    for i in 0..n {
        publish(a.as_ref(), "s", &i.to_string()).await;
    }
    let mut got = BTreeSet::new();
    while let Some(p) = next_within(&mut sub, Duration::from_millis(1)).await {
        got.insert(std::str::from_utf8(&p).unwrap().parse().unwrap());
    }
    (got, net.stats("a").dropped)
}

#[tokio::test(start_paused = true)]
async fn drop_rate_is_deterministic_for_a_seed() {
    let (first, dropped) = received_with_drop_rate(7, 0.3, 500).await;
    let (second, _) = received_with_drop_rate(7, 0.3, 500).await;
    assert_eq!(first, second, "same seed, same drops");
    assert_eq!(first.len() as u64 + dropped, 500);
    assert!(
        (100..200).contains(&dropped),
        "about 30% dropped, got {dropped}"
    );
    let (other_seed, _) = received_with_drop_rate(8, 0.3, 500).await;
    assert_ne!(first, other_seed, "another seed drops other messages");
    let (all, none_dropped) = received_with_drop_rate(7, 0.0, 100).await;
    assert_eq!((all.len(), none_dropped), (100, 0));
    let (nothing, all_dropped) = received_with_drop_rate(7, 1.0, 100).await;
    assert_eq!((nothing.len(), all_dropped), (0, 100));
}

#[tokio::test(start_paused = true)]
async fn receiver_drop_rate_counts_on_the_receiver() {
    let net = MemoryNetwork::new();
    let (a, b2) = (net.transport("a"), net.transport("b"));
    let mut sub = b2.subscribe("s", None).await.unwrap();
    net.set_drop_rate("b", 1.0);
    publish(a.as_ref(), "s", "x").await;
    assert_eq!(next_within(&mut sub, Duration::from_secs(1)).await, None);
    assert_eq!((net.stats("a").dropped, net.stats("b").dropped), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn dropped_subscriptions_leave_the_bus() {
    let net = MemoryNetwork::new();
    let a = net.transport("a");
    let sub = a.subscribe("s", None).await.unwrap();
    let queue = a.subscribe("s", Some("g")).await.unwrap();
    assert_eq!(net.subscription_count(), 2);
    drop((sub, queue));
    assert_eq!(net.subscription_count(), 0);
    let r = a
        .request("s", Headers::new(), b("x"), Duration::from_secs(1))
        .await;
    assert!(matches!(r, Err(Error::NoResponders(_))));
    assert_eq!(
        net.subscription_count(),
        0,
        "request inboxes are removed too"
    );
}

#[tokio::test(start_paused = true)]
async fn max_payload_is_configurable() {
    let net = MemoryNetwork::with_config(NetworkConfig {
        max_payload: 16,
        ..NetworkConfig::default()
    });
    let a = net.transport("a");
    assert_eq!(a.max_payload(), 16);
    let r = a
        .publish("s", None, Headers::new(), Bytes::from(vec![0; 17]))
        .await;
    assert_eq!(r, Err(Error::PayloadTooLarge { size: 17, max: 16 }));
    assert_eq!(net.stats("a").published, 0, "rejected before sending");
}

#[tokio::test(start_paused = true)]
async fn cut_link_drops_one_direction_only() {
    let net = MemoryNetwork::new();
    let (a, b2, c) = (net.transport("a"), net.transport("b"), net.transport("c"));
    let mut on_a = a.subscribe("s", None).await.unwrap();
    let mut on_b = b2.subscribe("s", None).await.unwrap();
    net.cut_link("a", "b");
    publish(a.as_ref(), "s", "from-a").await;
    publish(c.as_ref(), "s", "from-c").await;
    assert_eq!(
        next_within(&mut on_b, Duration::from_secs(1)).await,
        Some(b("from-c"))
    );
    assert_eq!(
        next_within(&mut on_a, Duration::from_secs(1)).await,
        Some(b("from-a"))
    );
    assert_eq!(net.stats("b").dropped, 1);
    publish(b2.as_ref(), "s", "from-b").await;
    assert_eq!(
        next_within(&mut on_a, Duration::from_secs(1)).await,
        Some(b("from-c"))
    );
    assert_eq!(
        next_within(&mut on_a, Duration::from_secs(1)).await,
        Some(b("from-b"))
    );
    // Requests over a cut link time out: the server still sees b's interest.
    drop(on_a);
    let r = a
        .request("s", Headers::new(), b("x"), Duration::from_millis(100))
        .await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    net.restore_link("a", "b");
    publish(a.as_ref(), "s", "restored").await;
    assert_eq!(
        next_within(&mut on_b, Duration::from_secs(1)).await,
        Some(b("from-b"))
    );
    assert_eq!(
        next_within(&mut on_b, Duration::from_secs(1)).await,
        Some(b("restored"))
    );
}

/// A multi-node run with delays, drops and a queue group: the full trace of who got what when.
async fn traced_run(seed: u64) -> Vec<(Duration, usize, Bytes)> {
    let net = MemoryNetwork::with_config(NetworkConfig {
        seed,
        ..NetworkConfig::default()
    });
    let nodes: Vec<_> = (0..4).map(|i| net.transport(&format!("n{i}"))).collect();
    net.set_delay("n1", Duration::from_millis(30));
    net.set_delay("n2", Duration::from_millis(70));
    net.set_drop_rate("n0", 0.2);
    net.set_drop_rate("n3", 0.1);
    let mut subs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let sub = n.subscribe("work.*", Some("g")).await.unwrap();
        subs.push(sub.map(move |m| (i, m.payload)).boxed());
        let sub = n.subscribe("work.>", None).await.unwrap();
        subs.push(sub.map(move |m| (i + 10, m.payload)).boxed());
    }
    let start = Instant::now();
    for k in 0..50 {
        let from = &nodes[k % 4];
        publish(from.as_ref(), &format!("work.{}", k % 3), &k.to_string()).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut all = futures::stream::select_all(subs);
    let mut trace = Vec::new();
    while let Ok(Some((who, payload))) = timeout(Duration::from_secs(1), all.next()).await {
        trace.push((start.elapsed(), who, payload));
    }
    trace
}

#[tokio::test(start_paused = true)]
async fn multi_node_runs_are_deterministic_under_paused_time() {
    let first = traced_run(11).await;
    let second = traced_run(11).await;
    assert!(first.len() > 100, "{}", first.len());
    assert_eq!(first, second);
    assert_ne!(first, traced_run(12).await);
}
