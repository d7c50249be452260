//! The runtime on a 3-server JetStream cluster (R3 buckets): SIGKILL of the server leading the
//! election stream, and SIGSTOP/SIGCONT of a server. Never two leaders; leadership restored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cluster::App;
use cluster_testkit::nats_server::NatsCluster;
use common::{NatsNode, leaders, options, start_node, wait_leader};
use tokio::time::Instant;

async fn three_nodes(urls: &[String], platform: &str) -> Vec<NatsNode> {
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(
            start_node(
                urls,
                platform,
                n,
                vec![App::singleton("db").unwrap()],
                options(3),
            )
            .await
            .unwrap(),
        );
    }
    nodes
}

/// Samples leadership every 5 ms for `window`, asserting at most one leader at every sample;
/// returns whether a leader existed at the end.
async fn never_two_leaders(nodes: &[&NatsNode], window: Duration) -> bool {
    let end = Instant::now() + window;
    let mut last = false;
    while Instant::now() < end {
        let l = leaders(nodes, "db");
        assert!(l.len() <= 1, "two leaders at once: {l:?}");
        last = l.len() == 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_stream_leader_never_gives_two_leaders_and_leadership_recovers() {
    let mut nats = NatsCluster::start(3);
    let nodes = three_nodes(&nats.urls(), "ck").await;
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    wait_leader(&refs, "db", Duration::from_secs(20)).await;
    let stream_leader = nats
        .stream_leader("KV_ck_election")
        .expect("the election stream has a leader");
    nats.kill(stream_leader);
    // JetStream needs up to ~10 s to elect a new stream leader; watch for 20 s.
    never_two_leaders(&refs, Duration::from_secs(20)).await;
    let (leader, _) = wait_leader(&refs, "db", Duration::from_secs(30)).await;
    // All nodes agree on the leader again.
    common::wait_until("agreement after recovery", Duration::from_secs(10), || {
        refs.iter()
            .all(|n| n.app("db").leader().map(|l| l.to_string()) == Some(leader.clone()))
    })
    .await;
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_and_sigcont_of_a_server_resync_without_two_leaders() {
    let mut nats = NatsCluster::start(3);
    let nodes = three_nodes(&nats.urls(), "cs").await;
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    wait_leader(&refs, "db", Duration::from_secs(20)).await;
    for i in 0..3 {
        nats.pause(i);
        never_two_leaders(&refs, Duration::from_secs(4)).await;
        nats.resume(i);
        never_two_leaders(&refs, Duration::from_secs(2)).await;
    }
    let (leader, _) = wait_leader(&refs, "db", Duration::from_secs(30)).await;
    for _ in 0..30 {
        let view: Vec<_> = refs
            .iter()
            .map(|n| {
                (
                    n.platform.node_id().to_string(),
                    n.platform.members().len(),
                    n.app("db").leader(),
                )
            })
            .collect();
        eprintln!(
            "leader {leader}: {view:?} finished: {:?}",
            refs.iter()
                .map(|n| n.run.as_ref().unwrap().is_finished())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut nodes = nodes;
    for n in nodes.iter_mut() {
        if n.run.as_ref().unwrap().is_finished() {
            eprintln!(
                "{} ended: {:?}",
                n.platform.node_id(),
                n.run.take().unwrap().await
            );
        }
    }
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    common::wait_until(
        "members and leader resynced",
        Duration::from_secs(15),
        || {
            refs.iter().all(|n| {
                n.platform.members().len() == 3
                    && n.app("db").leader().map(|l| l.to_string()) == Some(leader.clone())
            })
        },
    )
    .await;
    for n in nodes {
        n.stop().await.unwrap();
    }
}
