//! ZoneAware keeps the zone spread (in-memory nodes, paused time): a zone-aware Replicas(2) app
//! placed on the two nodes of one zone (they joined first) is moved by the controller once a
//! node of another zone joins, make-before-break (never fewer than 2 running instances,
//! sampled every millisecond), and then stays put.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster::placement::{AppPlacementExt, NamedStrategy, planner};
use cluster::{App, Labels, Mode, PlatformOptions};
use cluster_testkit::scenario::{SimCluster, wait_until};

fn worker() -> App {
    let w = App::new("worker", Mode::Replicas { n: 2 }).unwrap();
    w.strategy(NamedStrategy::ZoneAware { key: "zone".into() })
        .unwrap();
    w
}

fn zone(z: &str) -> Labels {
    Labels::from_pairs([("zone", z)]).unwrap()
}

fn running(c: &SimCluster) -> Vec<String> {
    c.names()
        .into_iter()
        .filter(|n| c.node(n).apps.get("worker").is_some_and(|a| a.is_running()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_zone_aware_replicas_app_sharing_a_zone_moves_to_a_new_zone() {
    let mut c = SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner());
    for n in ["n1", "n2"] {
        c.start_node_with(n, vec![worker()], zone("a"))
            .await
            .unwrap();
    }
    wait_until("both replicas in zone a", Duration::from_secs(20), || {
        running(&c) == ["n1", "n2"]
    })
    .await;
    c.start_node_with("n3", vec![worker()], zone("b"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut samples = 0u64;
    loop {
        let r = running(&c);
        samples += 1;
        assert!(
            r.len() >= 2,
            "fewer than 2 replicas during the repair: {r:?}"
        );
        if r.len() == 2 && r.contains(&"n3".to_owned()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "zone spread not restored: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("zone repair observed over {samples} samples");
    // Stable afterwards: one replica per zone, no further moves.
    for _ in 0..5000 {
        let r = running(&c);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r.contains(&"n3".to_owned()), "{r:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
