//! VIP failover driven by real leadership: two simulated hosts (network namespaces) each run a
//! node of an in-memory cluster (`SimCluster`, real time) whose Singleton app holds the VIP; a
//! third namespace observes the neighbour entry of the VIP. Each node's `VipResource` was
//! created inside its host's namespace, so every address change and ARP packet is real.
//! Needs root and iproute2 (`ip`); fails with an install hint otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use cluster_core::RetryPolicy;
use cluster_core::Role;
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::SimCluster;
use cluster_vip::{Vip, VipResource};
use common::{Lan, eventually, holds_in};

const VIP: &str = "198.51.100.100";
const WITHIN: Duration = Duration::from_secs(15);

fn app(resource: Arc<VipResource>) -> App {
    let app = App::singleton("db").unwrap();
    app.add_resource(
        resource,
        RetryPolicy {
            attempts: 2,
            backoff: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
        },
    );
    app
}

/// Samples, in a loop, whether the incoming holder and then the outgoing one hold the VIP.
/// The incoming host only gains the address during a handover and the outgoing one only loses
/// it, so "incoming holds, then outgoing still holds" means both held it at the second sample.
struct OverlapMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u32, Vec<String>)>>,
}

impl OverlapMonitor {
    fn start(lan: &Lan, incoming: &str, outgoing: &str) -> Self {
        let (inc, out) = (lan.ns(incoming), lan.ns(outgoing));
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = 0;
            let mut overlaps = Vec::new();
            loop {
                // Read before sampling, so one full sample follows the stop request.
                let last = s.load(Ordering::Relaxed);
                if holds_in(&inc, VIP) && holds_in(&out, VIP) {
                    overlaps.push(format!("sample {samples}: both {inc} and {out} hold {VIP}"));
                }
                samples += 1;
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (samples, overlaps)
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, overlaps) = self.thread.take().unwrap().join().unwrap();
        assert!(samples >= 2, "the monitor took only {samples} samples");
        assert!(overlaps.is_empty(), "two holders: {overlaps:?}");
    }
}

impl Drop for OverlapMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn wait_single_holder(lan: &Lan, holder: &str, other: &str) {
    eventually(
        &format!("{holder} holds the VIP and {other} does not"),
        WITHIN,
        || lan.holds(holder, VIP) && !lan.holds(other, VIP),
    )
    .await;
    let mac = lan.mac(holder);
    eventually(
        &format!("the observer's neighbour entry for the VIP is {holder}'s MAC {mac}"),
        WITHIN,
        || lan.neighbour("obs", VIP).as_deref() == Some(mac.as_str()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vip_follows_leadership_and_never_has_two_holders() {
    let lan = Lan::new(&["a", "b", "obs"]);
    lan.accept_garp("obs");
    let vip = Vip::new(&format!("{VIP}/32"), "eth0")
        .unwrap()
        .with_garp(3, Duration::from_millis(200));
    let (va, vb) = (vip.clone(), vip);
    let res_a = Arc::new(lan.in_ns("a", move || VipResource::new(va)).unwrap());
    let res_b = Arc::new(lan.in_ns("b", move || VipResource::new(vb)).unwrap());

    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster.start_node("n1", vec![app(res_a)]).await.unwrap();
    let (leader, _) = cluster.wait_leader("db", WITHIN).await;
    assert_eq!(leader, "n1");
    wait_single_holder(&lan, "a", "b").await;
    cluster.start_node("n2", vec![app(res_b)]).await.unwrap();

    // 1. Graceful step-down: the VIP moves to b, never held by both.
    let monitor = OverlapMonitor::start(&lan, "b", "a");
    let t = std::time::Instant::now();
    cluster.node("n1").app("db").step_down().await.unwrap();
    let (leader, _) = cluster.wait_leader("db", WITHIN).await;
    assert_eq!(leader, "n2");
    wait_single_holder(&lan, "b", "a").await;
    eprintln!(
        "step-down: VIP on b and observer updated after {:?}",
        t.elapsed()
    );
    monitor.finish();

    // 2. The leader is isolated: it must drop the VIP (at its lease deadline) before a takes it.
    let monitor = OverlapMonitor::start(&lan, "a", "b");
    let t = std::time::Instant::now();
    cluster.network.partition("n2");
    eventually("n1 leads again", WITHIN, || {
        cluster.leader("db").as_deref() == Some("n1")
    })
    .await;
    wait_single_holder(&lan, "a", "b").await;
    eprintln!(
        "isolated leader: VIP on a and observer updated after {:?}",
        t.elapsed()
    );
    assert_ne!(
        cluster.node("n2").app("db").role(),
        Role::Leader,
        "the isolated node demoted itself"
    );

    // 3. The partition heals: b rejoins as a standby and a keeps the VIP.
    cluster.network.heal("n2");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.leader("db").as_deref(), Some("n1"));
    assert!(lan.holds("a", VIP) && !lan.holds("b", VIP));
    monitor.finish();

    // 4. Stopping the leader hands over; stopping the last node releases everything.
    let monitor = OverlapMonitor::start(&lan, "b", "a");
    cluster.stop_node("n1").await.unwrap();
    eventually("n2 leads", WITHIN, || {
        cluster.leader("db").as_deref() == Some("n2")
    })
    .await;
    wait_single_holder(&lan, "b", "a").await;
    monitor.finish();
    cluster.stop_node("n2").await.unwrap();
    assert!(
        !lan.holds("a", VIP) && !lan.holds("b", VIP),
        "no holder left after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_claim_the_vip_steps_down_and_the_other_leads() {
    let lan = Lan::new(&["a", "b", "stray", "obs"]);
    lan.accept_garp("obs");
    let vip = Vip::new(&format!("{VIP}/32"), "eth0")
        .unwrap()
        .with_garp(1, Duration::from_millis(100))
        .with_claim_check(Some(cluster_vip::ClaimCheck::default()));
    let (va, vb) = (vip.clone(), vip);
    let res_a = Arc::new(lan.in_ns("a", move || VipResource::new(va)).unwrap());
    let res_b = Arc::new(lan.in_ns("b", move || VipResource::new(vb)).unwrap());

    // A host outside the cluster answers for the VIP: nobody may claim it.
    lan.add_address("stray", &format!("{VIP}/32"));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster.start_node("n1", vec![app(res_a)]).await.unwrap();
    cluster.start_node("n2", vec![app(res_b)]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cluster.leaders("db"),
        Vec::<String>::new(),
        "no node leads without its VIP"
    );
    assert!(!lan.holds("a", VIP) && !lan.holds("b", VIP));

    // Once the stray host lets go, one node claims it and leads.
    lan.del_address("stray", &format!("{VIP}/32"));
    let (leader, _) = cluster.wait_leader("db", WITHIN).await;
    let (holder, other) = if leader == "n1" {
        ("a", "b")
    } else {
        ("b", "a")
    };
    wait_single_holder(&lan, holder, other).await;
    cluster.stop_node("n1").await.unwrap();
    cluster.stop_node("n2").await.unwrap();
}
