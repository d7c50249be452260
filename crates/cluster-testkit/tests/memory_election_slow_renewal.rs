//! A forged hand-off that lands while the leader's renewal is in flight (a slow store): the
//! leader must end its term on the watch event, not when its renewal returns. In-memory KV on
//! paused time; fencing tokens sampled every millisecond (never two at once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::election::ElectionTiming;
use cluster_core::kv::{KvEntry, KvWatch, Revision};
use cluster_core::{BucketConfig, Election, Epoch, KvBucket, KvStore, NodeId, Result, TokioClock};
use cluster_runtime::LeaseElection;
use cluster_testkit::MemoryNetwork;
use tokio::time::Instant;

const KEY: &str = "lease.db";

/// A bucket whose `update`s take `delay_ms` before reaching the store (a slow round trip).
struct SlowUpdates {
    inner: Arc<dyn KvBucket>,
    delay_ms: AtomicU64,
    in_flight: AtomicUsize,
}

#[async_trait]
impl KvBucket for SlowUpdates {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<Revision> {
        self.inner.create(key, value, ttl).await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<Revision> {
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.inner.update(key, value, expected, ttl).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<()> {
        self.inner.delete(key, expected).await
    }
    async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.keys(prefix).await
    }
    async fn watch(&self, prefix: &str) -> Result<KvWatch> {
        self.inner.watch(prefix).await
    }
}

type Node = (String, Arc<SlowUpdates>, Arc<LeaseElection>);

fn tokens(nodes: &[Node]) -> Vec<(String, Epoch)> {
    nodes
        .iter()
        .filter_map(|(n, _, e)| e.fencing_token().map(|t| (n.clone(), t)))
        .collect()
}

/// Waits (sampling every ms, asserting never two tokens) until `done` holds.
async fn sample_until(nodes: &[Node], within: Duration, done: impl Fn(&[(String, Epoch)]) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let t = tokens(nodes);
        assert!(t.len() <= 1, "two leaders: {t:?}");
        if done(&t) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not reached within {within:?}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_forged_handoff_during_a_slow_renewal_never_gives_two_leaders() {
    let timing = ElectionTiming::fast();
    let net = MemoryNetwork::new();
    let config = BucketConfig::new("p_election").with_per_key_ttl();
    let attacker = net.kv("attacker").bucket(config.clone()).await.unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let slow = Arc::new(SlowUpdates {
            inner: net.kv(n).bucket(config.clone()).await.unwrap(),
            delay_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let e = LeaseElection::start(
            slow.clone(),
            KEY,
            NodeId::new(n).unwrap(),
            format!("{n}-instance"),
            timing,
            Arc::new(TokioClock),
        )
        .unwrap();
        e.set_candidate(true).await.unwrap();
        nodes.push((n.to_owned(), slow, Arc::new(e)));
    }
    let bound = timing.takeover_after() + Duration::from_secs(2);
    // A store round trip well inside the act window.
    let rtt = Duration::from_millis(400);
    for round in 0..5 {
        sample_until(&nodes, bound, |t| t.len() == 1).await;
        let (old, e0) = tokens(&nodes)[0].clone();
        let (_, old_bucket, _) = nodes.iter().find(|(n, _, _)| *n == old).unwrap();
        old_bucket
            .delay_ms
            .store(rtt.as_millis() as u64, Ordering::SeqCst);
        // Wait for the leader's renewal to be in flight.
        let deadline = Instant::now() + timing.renew_interval * 2;
        while old_bucket.in_flight.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no renewal started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let standby = nodes
            .iter()
            .map(|(n, _, _)| n.clone())
            .find(|n| *n != old)
            .unwrap();
        let forged = format!(
            r#"{{"v":1,"node":"{old}","instance":"forged","epoch":0,"handoff_to":"{standby}"}}"#
        );
        let t0 = Instant::now();
        attacker.put(KEY, Bytes::from(forged)).await.unwrap();
        assert!(
            old_bucket.in_flight.load(Ordering::SeqCst) > 0,
            "the forgery must land during the renewal"
        );
        sample_until(
            &nodes,
            Duration::from_secs(1),
            |t| matches!(t, [(n, e)] if *n == standby && *e > e0),
        )
        .await;
        eprintln!(
            "round {round}: {old} -> {standby} after {:?} (renewal RTT {rtt:?})",
            t0.elapsed()
        );
        old_bucket.delay_ms.store(0, Ordering::SeqCst);
        // Let the old leader's renewal come back (conflict) while still sampling.
        sample_until(&nodes, Duration::from_secs(1), |_| t0.elapsed() >= rtt * 2).await;
    }
}
