//! The placement bucket is read through a watch-fed copy on every node: a change made while a
//! node was cut off reaches that node's reads once it is reconnected (in-memory network,
//! paused time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster::placement::planner;
use cluster::{App, PlatformOptions};
use cluster_testkit::scenario::{SimCluster, wait_until};

#[tokio::test(start_paused = true)]
async fn a_change_made_during_a_partition_reaches_the_node_after_it_heals() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2", "n3"] {
        c.start_node(n, vec![App::spread("api").unwrap()])
            .await
            .unwrap();
    }
    wait_until("api everywhere", Duration::from_secs(10), || {
        ["n1", "n2", "n3"]
            .iter()
            .all(|n| c.node(n).app("api").is_running())
    })
    .await;
    let n3 = c.node("n3").platform.clone();
    assert!(!n3.is_cordoned("n2").await.unwrap());
    // Shorter than the member TTL: n3 stays a member.
    c.network.partition("n3");
    c.node("n1")
        .platform
        .cordon_node("n2", "maintenance")
        .await
        .unwrap();
    assert!(
        c.node("n1").platform.is_cordoned("n2").await.unwrap(),
        "the writer reads its write"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.network.heal("n3");
    let healed = tokio::time::Instant::now();
    loop {
        if n3.is_cordoned("n2").await.unwrap() {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(2),
            "n3 never saw the cordon made during its partition"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // And the other way: an uncordon is seen by every node.
    n3.uncordon_node("n2").await.unwrap();
    for n in ["n1", "n2"] {
        let p = c.node(n).platform.clone();
        let start = tokio::time::Instant::now();
        while p.is_cordoned("n2").await.unwrap() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{n} missed the uncordon"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
