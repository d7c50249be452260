//! `Platform::abort` (a simulated crash) stops everything of the node, also the app's own
//! tasks that hold its election: found by the simulator (`cluster-sim`, seed 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster_runtime::{App, PlatformOptions};
use cluster_testkit::scenario::SimCluster;

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_that_becomes_reachable_again_does_not_keep_its_lease() {
    let options = PlatformOptions::fast();
    let mut cluster = SimCluster::new("prod", options.clone());
    for n in ["n1", "n2", "n3"] {
        cluster
            .start_node(n, vec![App::singleton("db").unwrap()])
            .await
            .unwrap();
    }
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    cluster.crash_node(&first);
    // The crashed node's name is reachable again at once (as when its host comes back): a
    // leftover election task would renew the lease and keep every other node out.
    cluster.network.heal(&first);
    let bound = options.election.takeover_after() + Duration::from_secs(1);
    let (second, _) = cluster.wait_leader("db", bound).await;
    assert_ne!(second, first);
}
