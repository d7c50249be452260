//! The lease election against records written by an attacker or a buggy tool, over the
//! in-memory KV on paused time: forged epochs, undecodable records, forged hand-offs and forged
//! epoch floors. Fencing tokens are sampled every millisecond (never two at once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_core::election::{ElectionTiming, RejectedRecord};
use cluster_core::{BucketConfig, Election, Epoch, KvBucket, KvStore, NodeId, TokioClock};
use cluster_runtime::LeaseElection;
use cluster_testkit::MemoryNetwork;
use tokio::time::Instant;

const KEY: &str = "lease.db";

struct Setup {
    /// The attacker's handle on the election bucket.
    bucket: Arc<dyn KvBucket>,
    nodes: Vec<(String, Arc<LeaseElection>)>,
    rejected: Arc<Mutex<Vec<RejectedRecord>>>,
}

async fn setup(timing: ElectionTiming) -> Setup {
    let net = MemoryNetwork::new();
    let config = BucketConfig::new("p_election").with_per_key_ttl();
    let bucket = net.kv("attacker").bucket(config.clone()).await.unwrap();
    let rejected: Arc<Mutex<Vec<RejectedRecord>>> = Arc::default();
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let b = net.kv(n).bucket(config.clone()).await.unwrap();
        let r = rejected.clone();
        let e = LeaseElection::start_reporting(
            b,
            KEY,
            NodeId::new(n).unwrap(),
            format!("{n}-instance"),
            timing,
            Arc::new(TokioClock),
            Arc::new(move |rec: &RejectedRecord| r.lock().unwrap().push(rec.clone())),
        )
        .unwrap();
        e.set_candidate(true).await.unwrap();
        nodes.push((n.to_owned(), Arc::new(e)));
    }
    Setup {
        bucket,
        nodes,
        rejected,
    }
}

fn tokens(nodes: &[(String, Arc<LeaseElection>)]) -> Vec<(String, Epoch)> {
    nodes
        .iter()
        .filter_map(|(n, e)| e.fencing_token().map(|t| (n.clone(), t)))
        .collect()
}

/// Waits (sampling every ms, asserting never two tokens) for one leader accepted by `accept`.
async fn leader(
    nodes: &[(String, Arc<LeaseElection>)],
    within: Duration,
    accept: impl Fn(&str, Epoch) -> bool,
) -> (String, Epoch) {
    let deadline = Instant::now() + within;
    loop {
        let t = tokens(nodes);
        assert!(t.len() <= 1, "two leaders: {t:?}");
        if let [(n, e)] = t.as_slice()
            && accept(n, *e)
        {
            return (n.clone(), *e);
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Samples every ms for `d`, asserting never two tokens.
async fn hold(nodes: &[(String, Arc<LeaseElection>)], d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let t = tokens(nodes);
        assert!(t.len() <= 1, "two leaders: {t:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn bound(t: ElectionTiming) -> Duration {
    t.takeover_after() + Duration::from_secs(2)
}

/// The bucket's current revision (one probe write).
async fn revision(bucket: &Arc<dyn KvBucket>) -> u64 {
    bucket.put("probe", Bytes::new()).await.unwrap().0
}

#[tokio::test(start_paused = true)]
async fn forged_epoch_and_garbage_are_taken_over_with_a_bounded_write_rate() {
    let timing = ElectionTiming::fast();
    let s = setup(timing).await;
    for forged in [
        &br#"{"v":1,"node":"n9","instance":"x","epoch":999999}"#[..],
        b"not json",
        br#"{"v":1}"#,
        br#"{"v":7,"node":"n1","instance":"n1-instance","epoch":0}"#,
    ] {
        let (_, e0) = leader(&s.nodes, bound(timing), |_, _| true).await;
        let rev0 = revision(&s.bucket).await;
        let t0 = Instant::now();
        s.bucket.put(KEY, Bytes::from_static(forged)).await.unwrap();
        let (_, e1) = leader(&s.nodes, bound(timing), |_, e| e != e0).await;
        let took = t0.elapsed();
        assert!(
            took >= timing.takeover_after(),
            "taken over too early: {took:?}"
        );
        assert!(e1 > e0 && e1 < Epoch(999_999), "epoch {e0} -> {e1}");
        hold(&s.nodes, Duration::from_secs(5)).await;
        let (_, e2) = leader(&s.nodes, bound(timing), |_, _| true).await;
        assert_eq!(e2, e1, "stable term after the takeover");
        let writes = revision(&s.bucket).await - rev0 - 2;
        let rate = writes as f64 / t0.elapsed().as_secs_f64();
        eprintln!(
            "{}: leader again after {took:?}, epoch {e0} -> {e1}, {writes} writes ({rate:.1}/s)",
            String::from_utf8_lossy(forged)
        );
        // One lease renewed every 500 ms is 2 writes/s.
        assert!(rate < 4.0, "{rate:.1} election writes/s");
    }
    let rejected = s.rejected.lock().unwrap().clone();
    // Each forged record reported by each of the three nodes.
    assert_eq!(rejected.len(), 12, "{rejected:?}");
    assert!(rejected.iter().all(|r| r.key == KEY));
}

#[tokio::test(start_paused = true)]
async fn forged_handoff_ends_the_term_before_the_standby_leads() {
    let timing = ElectionTiming::fast();
    let s = setup(timing).await;
    for _ in 0..10 {
        let (old, e0) = leader(&s.nodes, bound(timing), |_, _| true).await;
        hold(&s.nodes, Duration::from_millis(700)).await;
        let standby = s
            .nodes
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| *n != old)
            .unwrap();
        let forged = format!(
            r#"{{"v":1,"node":"{old}","instance":"forged","epoch":0,"handoff_to":"{standby}"}}"#
        );
        s.bucket.put(KEY, Bytes::from(forged)).await.unwrap();
        let (new, e1) = leader(&s.nodes, Duration::from_secs(1), |n, _| n == standby).await;
        assert_eq!(new, standby);
        assert!(e1 > e0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_forged_floor_neither_overflows_nor_stops_elections() {
    let timing = ElectionTiming::fast();
    let s = setup(timing).await;
    let (_, e0) = leader(&s.nodes, bound(timing), |_, _| true).await;
    // Above the bound: malformed, read as 0.
    s.bucket
        .put(
            "epoch-floor",
            Bytes::from_static(br#"{"v":1,"floor":18446744073709551615}"#),
        )
        .await
        .unwrap();
    // Force a new term: an unknown holder taken over after T(1+ε).
    s.bucket
        .put(KEY, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let (_, e1) = leader(&s.nodes, bound(timing), |_, e| e != e0).await;
    assert!(e1 > e0 && e1 < Epoch(1 << 53), "epoch {e0} -> {e1}");
    assert!(
        s.rejected
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.key == "epoch-floor")
    );
    // A valid but huge floor: epochs jump above it and stay monotonic.
    s.bucket
        .put(
            "epoch-floor",
            Bytes::from_static(br#"{"v":1,"floor":9007199254740992}"#),
        )
        .await
        .unwrap();
    s.bucket
        .put(KEY, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let (_, e2) = leader(&s.nodes, bound(timing), |_, e| e != e1).await;
    assert!(e2 > Epoch(1 << 53), "epoch {e1} -> {e2}");
}

#[tokio::test(start_paused = true)]
async fn a_lower_revision_raises_the_floor_so_epochs_stay_monotonic() {
    // Simulates what a node sees after a store reset: it has seen a high epoch, then the store
    // hands out low revisions. Here the high epoch comes from a (consistent) floor that then
    // disappears, as after the bucket was lost.
    let timing = ElectionTiming::fast();
    let s = setup(timing).await;
    s.bucket
        .put(
            "epoch-floor",
            Bytes::from_static(br#"{"v":1,"floor":5000}"#),
        )
        .await
        .unwrap();
    let (_, e0) = leader(&s.nodes, bound(timing), |_, _| true).await;
    s.bucket
        .put(KEY, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let (_, e1) = leader(&s.nodes, bound(timing), |_, e| e != e0).await;
    assert!(e1 > Epoch(5000), "{e1}");
    // The floor is lost; the next term must still be above e1.
    s.bucket.delete("epoch-floor", None).await.unwrap();
    s.bucket
        .put(KEY, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let (_, e2) = leader(&s.nodes, bound(timing), |_, e| e != e1).await;
    assert!(e2 > e1, "epoch {e1} -> {e2}");
    let floor = s
        .bucket
        .get("epoch-floor")
        .await
        .unwrap()
        .expect("floor raised again");
    let rec = cluster_core::election::FloorRecord::decode(&floor.value).unwrap();
    assert!(rec.floor >= e1.0, "floor {} below {e1}", rec.floor);
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_stops_changing_is_shown_only_until_t_then_no_leader() {
    let timing = ElectionTiming::fast();
    let net = MemoryNetwork::new();
    let config = BucketConfig::new("p_election").with_per_key_ttl();
    let attacker = net.kv("attacker").bucket(config.clone()).await.unwrap();
    let observer = LeaseElection::start(
        net.kv("n1").bucket(config).await.unwrap(),
        KEY,
        NodeId::new("n1").unwrap(),
        "n1-instance",
        timing,
        Arc::new(TokioClock),
    )
    .unwrap();
    let mut status = observer.status();
    assert!(status.borrow().leaderless_since.is_some());
    // A valid record, without TTL, never renewed (a holder that hung, or a buggy tool).
    attacker
        .put(
            KEY,
            Bytes::from_static(br#"{"v":1,"node":"n9","instance":"i9","epoch":0}"#),
        )
        .await
        .unwrap();
    status
        .wait_for(|s| s.leader.as_ref().is_some_and(|l| l.node.as_str() == "n9"))
        .await
        .unwrap();
    let seen = Instant::now();
    assert_eq!(status.borrow().leaderless_since, None);
    // No store event follows: the election's own timer must publish the lapse.
    status.wait_for(|s| s.leader.is_none()).await.unwrap();
    let shown = seen.elapsed();
    eprintln!(
        "a lease that stopped changing was shown for {shown:?} (T = {:?})",
        timing.lease_ttl
    );
    assert!(
        shown <= timing.lease_ttl + Duration::from_millis(10),
        "shown {shown:?} after it last changed"
    );
    assert!(
        shown + Duration::from_millis(10) >= timing.lease_ttl,
        "{shown:?}"
    );
    let since = status.borrow().leaderless_since.expect("no leader since");
    assert!(since >= seen);
}
