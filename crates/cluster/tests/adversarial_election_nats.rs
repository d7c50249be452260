//! The lease election against a hostile or broken store, over a real nats-server: a raw
//! async-nats client writes the election bucket as an attacker or a buggy tool would, or the
//! server loses its store under running nodes. Every test samples `is_leader` on all nodes every
//! 2 ms (never two leaders), waits for a leader again within `T(1+ε) + 2 s`, and checks epochs
//! stay monotonic and the election write rate stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster::placement::planner;
use cluster::{App, Epoch};
use cluster_testkit::nats_server::{NatsCluster, NatsServer};
use common::{NatsNode, connect_options, options};
use tokio::time::Instant;

const PLATFORM: &str = "adv";
const BUCKET: &str = "adv_election";
const STREAM: &str = "KV_adv_election";

/// `T(1+ε) + 2 s` for the fast profile (T = 3 s, ε = 0.15).
fn bound() -> Duration {
    let t = options(1).election;
    t.takeover_after() + Duration::from_secs(2)
}

async fn start(url: &str, node: &str) -> NatsNode {
    start_on(&[url.to_owned()], node, 1).await
}

async fn start_on(urls: &[String], node: &str, replicas: usize) -> NatsNode {
    let conn = cluster::nats::connect(connect_options(urls, node))
        .await
        .unwrap();
    let p = cluster::nats::platform(&conn, PLATFORM, node, replicas)
        .unwrap()
        .options(options(replicas))
        .planner(planner())
        .build()
        .unwrap();
    let app = App::singleton("db").unwrap();
    p.register(&app).unwrap();
    let runner = p.clone();
    let run = tokio::spawn(async move { runner.run().await });
    p.wait_started().await.unwrap();
    NatsNode {
        platform: p,
        conn,
        apps: BTreeMap::from([("db".to_owned(), app)]),
        run: Some(run),
    }
}

async fn three(url: &str) -> Vec<NatsNode> {
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(start(url, n).await);
    }
    nodes
}

fn apps(nodes: &[NatsNode]) -> Vec<(String, App)> {
    nodes
        .iter()
        .map(|n| (n.platform.node_id().to_string(), n.app("db").clone()))
        .collect()
}

fn leaders(apps: &[(String, App)]) -> Vec<(String, Epoch)> {
    apps.iter()
        .filter(|(_, a)| a.is_leader())
        .filter_map(|(n, a)| a.fencing_token().map(|e| (n.clone(), e)))
        .collect()
}

/// Samples `is_leader` on every node every 2 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    overlaps: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(apps: Vec<(String, App)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let overlaps = Arc::new(AtomicU64::new(0));
        let (s, n, o) = (stop.clone(), samples.clone(), overlaps.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let l = apps.iter().filter(|(_, a)| a.is_leader()).count();
                n.fetch_add(1, Ordering::SeqCst);
                if l > 1 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Self {
            stop,
            samples,
            overlaps,
            task,
        }
    }

    /// (samples, samples with two leaders or more)
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        (
            self.samples.load(Ordering::SeqCst),
            self.overlaps.load(Ordering::SeqCst),
        )
    }
}

/// Waits until exactly one node leads (and `accept` holds for it); returns it and its epoch.
async fn leader_within(
    apps: &[(String, App)],
    within: Duration,
    accept: impl Fn(&str, Epoch) -> bool,
) -> (String, Epoch) {
    let deadline = Instant::now() + within;
    loop {
        let l = leaders(apps);
        assert!(l.len() <= 1, "two leaders: {l:?}");
        if let [(n, e)] = l.as_slice()
            && accept(n, *e)
        {
            return (n.clone(), *e);
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn attacker(
    url: &str,
) -> (
    async_nats::jetstream::Context,
    async_nats::jetstream::kv::Store,
) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value(BUCKET).await.unwrap();
    (js, kv)
}

async fn last_seq(js: &async_nats::jetstream::Context) -> u64 {
    let mut stream = js.get_stream(STREAM).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

async fn stop_all(nodes: Vec<NatsNode>) {
    for n in nodes {
        let _ = n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_handoff_to_a_standby_never_gives_two_leaders() {
    let server = NatsServer::start();
    let nodes = three(&server.url()).await;
    let apps = apps(&nodes);
    let (_, kv) = attacker(&server.url()).await;
    let sampler = Sampler::start(apps.clone());
    let mut took = Vec::new();
    for _ in 0..5 {
        let (old, e0) = leader_within(&apps, bound(), |_, _| true).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let standby = apps
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| *n != old)
            .unwrap();
        let forged = serde_json::json!({
            "v": 1, "node": old, "instance": "forged", "epoch": 0, "handoff_to": standby,
        });
        let t0 = Instant::now();
        kv.put("lease.db", Bytes::from(forged.to_string()))
            .await
            .unwrap();
        let (new, e1) = leader_within(&apps, bound(), |n, _| n == standby).await;
        assert!(e1 > e0, "epoch went from {e0} to {e1}");
        took.push((old, new, t0.elapsed()));
    }
    let (samples, overlaps) = sampler.finish().await;
    eprintln!("forged handoff: {overlaps} overlapping samples of {samples}; hand-overs: {took:?}");
    assert_eq!(
        overlaps, 0,
        "two leaders in {overlaps} samples of {samples}"
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_epoch_without_ttl_is_taken_over_without_a_hot_loop() {
    let server = NatsServer::start();
    let nodes = three(&server.url()).await;
    let apps = apps(&nodes);
    let (js, kv) = attacker(&server.url()).await;
    let (_, e0) = leader_within(&apps, bound(), |_, _| true).await;
    let sampler = Sampler::start(apps.clone());
    let seq0 = last_seq(&js).await;
    let t0 = Instant::now();
    let forged = r#"{"v":1,"node":"n9","instance":"x","epoch":999999}"#;
    kv.put("lease.db", Bytes::from(forged)).await.unwrap();
    let (_, e1) = leader_within(&apps, bound(), |_, e| e != e0).await;
    let took = t0.elapsed();
    // A leader again, with an epoch from the store: above the old one, not poisoned.
    assert!(e1 > e0 && e1 < Epoch(999_999), "epoch {e0} -> {e1}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, e2) = leader_within(&apps, bound(), |_, _| true).await;
    assert_eq!(e2, e1, "the new term is stable");
    let writes = last_seq(&js).await - seq0;
    let rate = writes as f64 / t0.elapsed().as_secs_f64();
    let (samples, overlaps) = sampler.finish().await;
    eprintln!(
        "forged epoch: leader again after {took:?} (epoch {e0} -> {e1}); {writes} election writes \
         in {:?} ({rate:.1}/s, renewals of 2 leases included); {overlaps} overlaps in {samples}",
        t0.elapsed()
    );
    assert_eq!(overlaps, 0);
    // Two leases renewed every 500 ms are 4 writes/s; a hot loop was ~476/s.
    assert!(rate < 10.0, "{rate:.1} election writes/s");
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_app_lease_and_controller_lease_are_taken_over() {
    let server = NatsServer::start();
    let nodes = three(&server.url()).await;
    let apps = apps(&nodes);
    let (js, kv) = attacker(&server.url()).await;
    let (_, e0) = leader_within(&apps, bound(), |_, _| true).await;
    let sampler = Sampler::start(apps.clone());
    let seq0 = last_seq(&js).await;
    let t0 = Instant::now();
    kv.put("lease.db", Bytes::from_static(b"not json"))
        .await
        .unwrap();
    kv.put("controller.placement", Bytes::from_static(br#"{"v":1}"#))
        .await
        .unwrap();
    let (_, e1) = leader_within(&apps, bound(), |_, e| e != e0).await;
    let app_took = t0.elapsed();
    assert!(e1 > e0, "epoch {e0} -> {e1}");
    // The controller lease holds a valid record of one of our nodes again.
    let deadline = t0 + bound();
    let controller_took = loop {
        let entry = kv.entry("controller.placement").await.unwrap();
        let ok = entry.is_some_and(|e| {
            cluster::core::election::LeaseRecord::decode(&e.value)
                .is_ok_and(|r| ["n1", "n2", "n3"].contains(&r.node.as_str()))
        });
        if ok {
            break t0.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no placement controller within {:?}",
            bound()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let writes = last_seq(&js).await - seq0;
    let rate = writes as f64 / t0.elapsed().as_secs_f64();
    let (samples, overlaps) = sampler.finish().await;
    eprintln!(
        "not json / {{\"v\":1}}: app leader after {app_took:?}, controller after \
         {controller_took:?}; {rate:.1} election writes/s; {overlaps} overlaps in {samples}"
    );
    assert_eq!(overlaps, 0);
    assert!(rate < 10.0, "{rate:.1} election writes/s");
    // Both records were audited as rejected.
    for n in &nodes {
        n.platform.audit().flush().await;
    }
    let page = nodes[0]
        .platform
        .audit()
        .query(&cluster::core::audit::AuditFilter {
            category: Some("election".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let rejected: Vec<(Option<String>, String)> = page
        .entries
        .iter()
        .filter(|e| e.record.event() == "election.record.rejected")
        .map(|e| {
            (
                e.record.app.as_ref().map(|a| a.to_string()),
                e.record.data["key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        rejected.contains(&(Some("db".into()), "lease.db".into()))
            && rejected.contains(&(None, "controller.placement".into())),
        "{rejected:?}"
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_reset_under_running_nodes_recreates_buckets_and_keeps_epochs_monotonic() {
    let mut server = NatsServer::start();
    let nodes = three(&server.url()).await;
    let apps = apps(&nodes);
    let (first, _) = leader_within(&apps, bound(), |_, _| true).await;
    // Move revisions well above what the fresh store will hand out, then start a new term, so
    // only the epoch floor can keep the next epoch above it.
    let (_, kv) = attacker(&server.url()).await;
    for i in 0..100 {
        kv.put("junk", Bytes::from(i.to_string())).await.unwrap();
    }
    kv.delete("junk").await.unwrap();
    let old = apps.iter().find(|(n, _)| *n == first).unwrap().1.clone();
    old.step_down().await.unwrap();
    let (_, e0) = leader_within(&apps, bound(), |_, e| e > Epoch(100)).await;
    let highest_seen = apps
        .iter()
        .filter_map(|(_, a)| a.election_state().and_then(|s| s.leader).map(|l| l.epoch))
        .max()
        .unwrap()
        .max(e0);
    let sampler = Sampler::start(apps.clone());
    let t_stop = Instant::now();
    server.stop();
    std::fs::remove_dir_all(server.store_dir()).unwrap();
    server.start_again();
    let t_back = Instant::now();
    // Truthful status during the gap: once the old lease cannot be valid any more (T after it
    // was last renewed, + 1 s), no node shows a leader of an epoch at or below the old one.
    let lapse = t_stop + options(1).election.lease_ttl + Duration::from_secs(1);
    let mut stale_after_lapse = 0u64;
    let mut saw_no_leader = false;
    let deadline = t_back + bound();
    let (leader, e1) = loop {
        let now = Instant::now();
        for (_, a) in &apps {
            let shown = a.election_state().and_then(|s| s.leader);
            if now > lapse && shown.as_ref().is_some_and(|l| l.epoch <= highest_seen) {
                stale_after_lapse += 1;
            }
            saw_no_leader |= shown.is_none();
        }
        let l = leaders(&apps);
        assert!(l.len() <= 1, "two leaders: {l:?}");
        if let [(n, e)] = l.as_slice()
            && *e > highest_seen
        {
            break (n.clone(), *e);
        }
        assert!(
            now < deadline,
            "no new leader within {:?} of the server's return (leaders {l:?})",
            bound()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let took_from_back = t_back.elapsed();
    let took_from_stop = t_stop.elapsed();
    // The election bucket exists again.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_key_value(BUCKET)
        .await
        .expect("election bucket recreated");
    let (samples, overlaps) = sampler.finish().await;
    eprintln!(
        "store reset: new leader {leader} epoch {e1} (highest before {highest_seen}) {took_from_back:?} \
         after the server was back ({took_from_stop:?} after the stop); stale leader samples after \
         the lapse: {stale_after_lapse}; a node showed no leader: {saw_no_leader}; \
         {overlaps} overlaps in {samples}"
    );
    assert!(e1 > highest_seen);
    assert_eq!(stale_after_lapse, 0);
    assert_eq!(overlaps, 0);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_election_stream_leader_never_shows_a_lapsed_leader() {
    let mut nats = NatsCluster::start(3);
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(start_on(&nats.urls(), n, 3).await);
    }
    let apps = apps(&nodes);
    let (_, e0) = leader_within(&apps, Duration::from_secs(20), |_, _| true).await;
    let timing = options(3).election;
    // Truthful status: a node shows a leader only from a lease it saw change less than T ago
    // (checked with 1 s of slack: the election publishes the lapse on a timer).
    let limit = timing.lease_ttl + Duration::from_secs(1);
    let stream_leader = nats
        .stream_leader(STREAM)
        .expect("the election stream has a leader");
    let t_kill = Instant::now();
    nats.kill(stream_leader);
    let mut stale = Vec::new();
    let mut gap_start: Option<Instant> = None;
    let mut longest_gap = Duration::ZERO;
    let mut samples = 0u64;
    let mut shown_during_gap = 0u64;
    let end = t_kill + Duration::from_secs(12);
    while Instant::now() < end {
        let now = Instant::now();
        samples += 1;
        let held = leaders(&apps);
        assert!(held.len() <= 1, "two leaders: {held:?}");
        for (n, a) in &apps {
            let Some(state) = a.election_state() else {
                continue;
            };
            if let Some(l) = &state.leader {
                if held.is_empty() {
                    shown_during_gap += 1;
                }
                let age = state.lease_seen_at.map(|at| now.duration_since(at));
                if state.leading.is_none() && age.is_none_or(|a| a > limit) {
                    stale.push((n.clone(), l.node.to_string(), l.epoch, now - t_kill, age));
                }
            }
        }
        match (held.is_empty(), gap_start) {
            (true, None) => gap_start = Some(now),
            (false, Some(g)) => {
                longest_gap = longest_gap.max(now - g);
                gap_start = None;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(g) = gap_start {
        longest_gap = longest_gap.max(Instant::now() - g);
    }
    let (_, e1) = leader_within(&apps, Duration::from_secs(30), |_, _| true).await;
    eprintln!(
        "stream-leader SIGKILL: longest leaderless gap {longest_gap:?} (epoch {e0} -> {e1}); \
         samples showing a leader while none acted: {shown_during_gap}; stale leader samples {} \
         of {samples}: {:?}",
        stale.len(),
        stale.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        stale.is_empty(),
        "a lapsed leader was shown in {} samples, first: {:?}",
        stale.len(),
        stale.first()
    );
    assert!(e1 >= e0);
    stop_all(nodes).await;
}
