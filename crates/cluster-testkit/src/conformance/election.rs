//! Conformance suite for [`Election`] (see its contract).
//!
//! The suite drives several candidates of one scope through terms, step-downs, crashes and
//! hand-offs and checks at every observation that at most one candidate holds a fencing token,
//! that epochs strictly increase, and that take-overs happen neither before the previous
//! leader's deadline nor much after the lease TTL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::election::ElectionTiming;
use cluster_core::{Election, Epoch, NodeId, TokioClock};
use cluster_runtime::LeaseElection;
use tokio::time::Instant;

use super::kv::KvFactory;
use super::{announce, ok, unique_name, within};

/// Hands out candidates of one election scope.
///
/// # To ensure correctness
///
/// * [`ElectionFactory::candidate`] returns a new, independent participant (its own
///   connection) for `scope` as node `node`; candidates of the same scope compete.
/// * Dropping a candidate must stop it without releasing anything, like a crashed process.
#[async_trait]
pub trait ElectionFactory: Send + Sync {
    /// A new candidate for `scope` on `node`, not yet campaigning.
    async fn candidate(&self, scope: &str, node: &str) -> Arc<dyn Election>;

    /// The timing the candidates use.
    fn timing(&self) -> ElectionTiming;
}

/// The lease election ([`LeaseElection`]) over any [`KvFactory`], one connection per
/// candidate: this is how the suite checks the election on each KV implementation.
pub struct LeaseElectionFactory<F> {
    kv: F,
    timing: ElectionTiming,
    replicas: usize,
}

impl<F: KvFactory> LeaseElectionFactory<F> {
    /// Elections over `kv` with `timing`.
    pub fn new(kv: F, timing: ElectionTiming) -> Self {
        Self {
            kv,
            timing,
            replicas: 1,
        }
    }

    /// Sets the replicas of the election bucket.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }
}

/// Timing used by the suite: TTL 2 s, renew 400 ms, ε 0.1, cooldown 1 s.
pub fn suite_timing() -> ElectionTiming {
    ElectionTiming {
        lease_ttl: Duration::from_secs(2),
        renew_interval: Duration::from_millis(400),
        safety_margin: 0.1,
        cooldown: Duration::from_secs(1),
    }
}

#[async_trait]
impl<F: KvFactory> ElectionFactory for LeaseElectionFactory<F> {
    async fn candidate(&self, scope: &str, node: &str) -> Arc<dyn Election> {
        let store = ok("connect", self.kv.connect().await);
        let mut config = cluster_core::BucketConfig::new(scope).with_per_key_ttl();
        config.replicas = self.replicas;
        let bucket = ok("open election bucket", store.bucket(config).await);
        let election = ok(
            "start election",
            LeaseElection::start(
                bucket,
                "lease.app",
                NodeId::new(node).expect("valid node id"),
                uuid::Uuid::new_v4().simple().to_string(),
                self.timing,
                Arc::new(TokioClock),
            ),
        );
        Arc::new(election)
    }

    fn timing(&self) -> ElectionTiming {
        self.timing
    }
}

/// Runs every scenario.
pub async fn run_all(factory: &dyn ElectionFactory) {
    single_leader_and_agreement(factory).await;
    resign_hands_over_at_once_and_cooldown(factory).await;
    crash_takeover_after_deadline_within_ttl(factory).await;
    handoff_to_named_successor(factory).await;
    not_candidate_never_leads(factory).await;
}

struct Group {
    nodes: Vec<(String, Arc<dyn Election>)>,
}

impl Group {
    async fn start(factory: &dyn ElectionFactory, scenario: &str, n: usize) -> Self {
        let scope = unique_name(scenario);
        let mut nodes = Vec::new();
        for i in 1..=n {
            let name = format!("n{i}");
            let e = factory.candidate(&scope, &name).await;
            nodes.push((name, e));
        }
        Self { nodes }
    }

    async fn campaign_all(&self) {
        for (_, e) in &self.nodes {
            ok("set_candidate", e.set_candidate(true).await);
        }
    }

    /// Names and epochs of candidates holding a fencing token; panics on two.
    fn leaders(&self, what: &str) -> Option<(usize, Epoch)> {
        let holders: Vec<(usize, Epoch)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, (_, e))| e.fencing_token().map(|t| (i, t)))
            .collect();
        assert!(
            holders.len() <= 1,
            "{what}: two candidates hold a fencing token at once: {holders:?}"
        );
        holders.first().copied()
    }

    /// Waits until some candidate leads (checking safety on the way).
    async fn wait_leader(&self, what: &str, exclude: Option<usize>) -> (usize, Epoch, Instant) {
        within(what, async {
            loop {
                if let Some((i, e)) = self.leaders(what)
                    && Some(i) != exclude
                {
                    return (i, e, Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

/// N candidates: exactly one leads, and every candidate observes the same leader and epoch.
pub async fn single_leader_and_agreement(factory: &dyn ElectionFactory) {
    announce("election", "single_leader_and_agreement");
    for n in [1, 2, 3] {
        let g = Group::start(factory, "el_single", n).await;
        g.campaign_all().await;
        let (leader, epoch, _) = g.wait_leader("a leader is elected", None).await;
        within("all candidates agree on the leader", async {
            loop {
                let agree = g.nodes.iter().all(|(_, e)| {
                    let s = e.status().borrow().clone();
                    s.leader
                        .as_ref()
                        .map(|l| (l.node.as_str().to_owned(), l.epoch))
                        == Some((g.nodes[leader].0.clone(), epoch))
                });
                if agree {
                    return;
                }
                g.leaders("agreement");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        // Leadership is stable across several renewals.
        let until = Instant::now() + factory.timing().lease_ttl * 2;
        while Instant::now() < until {
            assert_eq!(
                g.leaders("stable"),
                Some((leader, epoch)),
                "leadership must be stable"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (_, e) in &g.nodes {
            e.close().await;
        }
    }
}

/// A resigning leader's successor wins well before the TTL, with a higher epoch; the resigned
/// node does not lead again before its cooldown.
pub async fn resign_hands_over_at_once_and_cooldown(factory: &dyn ElectionFactory) {
    announce("election", "resign_hands_over_at_once_and_cooldown");
    let t = factory.timing();
    let g = Group::start(factory, "el_resign", 3).await;
    g.campaign_all().await;
    let (first, e1, _) = g.wait_leader("first leader", None).await;
    let resigned_at = Instant::now();
    ok("resign", g.nodes[first].1.resign().await);
    assert_eq!(
        g.nodes[first].1.fencing_token(),
        None,
        "no token after resign"
    );
    let (second, e2, at) = g.wait_leader("successor after resign", Some(first)).await;
    assert!(e2 > e1, "epochs must increase: {e1} then {e2}");
    assert!(
        at - resigned_at < t.lease_ttl / 2,
        "handover after resign took {:?}; it must not wait for the TTL",
        at - resigned_at
    );
    // The successor resigns at once: the first node is in cooldown, so the third must win.
    ok("resign second", g.nodes[second].1.resign().await);
    let (third, e3, at3) = g.wait_leader("third leader", Some(second)).await;
    if third == first {
        assert!(
            at3 - resigned_at >= t.cooldown,
            "node {first} led again {:?} after resigning, before its cooldown {:?}",
            at3 - resigned_at,
            t.cooldown
        );
    }
    assert!(e3 > e2, "epochs must increase: {e2} then {e3}");
    for (_, e) in &g.nodes {
        e.close().await;
    }
}

/// A crashed leader (dropped without releasing) is replaced after its own deadline has passed,
/// and within the TTL plus a bound.
pub async fn crash_takeover_after_deadline_within_ttl(factory: &dyn ElectionFactory) {
    announce("election", "crash_takeover_after_deadline_within_ttl");
    let t = factory.timing();
    let mut g = Group::start(factory, "el_crash", 3).await;
    g.campaign_all().await;
    let (leader, e1, _) = g.wait_leader("first leader", None).await;
    let deadline = g.nodes[leader]
        .1
        .status()
        .borrow()
        .leading
        .map(|l| l.deadline)
        .expect("leader has a deadline");
    let crashed_at = Instant::now();
    drop(g.nodes.remove(leader));
    let (_, e2, at) = g.wait_leader("successor after crash", None).await;
    assert!(e2 > e1, "epochs must increase: {e1} then {e2}");
    assert!(
        at >= deadline,
        "a successor led {:?} before the crashed leader's own deadline",
        deadline - at
    );
    let bound = t.lease_ttl + t.renew_interval + Duration::from_millis(500);
    assert!(
        at - crashed_at <= bound,
        "take-over after a crash took {:?} (bound {bound:?})",
        at - crashed_at
    );
    for (_, e) in &g.nodes {
        e.close().await;
    }
}

/// A hand-off goes to exactly the named node.
pub async fn handoff_to_named_successor(factory: &dyn ElectionFactory) {
    announce("election", "handoff_to_named_successor");
    let g = Group::start(factory, "el_handoff", 3).await;
    g.campaign_all().await;
    let (leader, e1, _) = g.wait_leader("first leader", None).await;
    let target = (leader + 2) % 3;
    let target_id = NodeId::new(g.nodes[target].0.as_str()).expect("valid");
    ok("handoff", g.nodes[leader].1.handoff(&target_id).await);
    let (next, e2, _) = g.wait_leader("named successor", Some(leader)).await;
    assert_eq!(next, target, "hand-off must go to the named node");
    assert!(e2 > e1, "epochs must increase");
    // A non-leader cannot hand off.
    let other = (leader + 1) % 3;
    let err = g.nodes[other].1.handoff(&target_id).await;
    assert!(
        matches!(err, Err(cluster_core::Error::NotLeader { .. })),
        "handoff by a non-leader must fail with NotLeader, got {err:?}"
    );
    for (_, e) in &g.nodes {
        e.close().await;
    }
}

/// A node that is not campaigning never leads, even when the lease is free.
pub async fn not_candidate_never_leads(factory: &dyn ElectionFactory) {
    announce("election", "not_candidate_never_leads");
    let g = Group::start(factory, "el_passive", 2).await;
    ok("campaign n1", g.nodes[0].1.set_candidate(true).await);
    let (leader, _, _) = g.wait_leader("n1 leads", None).await;
    assert_eq!(leader, 0);
    ok("stop n1", g.nodes[0].1.set_candidate(false).await);
    assert_eq!(
        g.nodes[0].1.fencing_token(),
        None,
        "stopping campaigning resigns"
    );
    let until = Instant::now() + factory.timing().lease_ttl;
    while Instant::now() < until {
        assert_eq!(
            g.leaders("nobody campaigns"),
            None,
            "nobody campaigns, nobody leads"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, e) in &g.nodes {
        e.close().await;
    }
}
