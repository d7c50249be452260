//! `gc_election_epoch` tells the truth: the leader's epoch while a valid lease exists, 0 while
//! there is none (here: the lease overwritten with a record nobody trusts, until a candidate
//! takes it over after T(1+ε)). In-memory node on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, KvStore};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_runtime::metrics as m;
use cluster_testkit::metrics::RecordedMetrics;
use cluster_testkit::scenario::{SimCluster, wait_until};

const APP: &str = "epochgauge";

#[tokio::test(start_paused = true)]
async fn the_epoch_gauge_is_zero_while_there_is_no_leader() {
    let metrics = RecordedMetrics::install();
    let gauge = || {
        let found = metrics.find(m::ELECTION_EPOCH, &[("app", APP)]);
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].1.gauge
    };
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster
        .start_node("n1", vec![App::singleton(APP).unwrap()])
        .await
        .unwrap();
    cluster.wait_leader(APP, Duration::from_secs(10)).await;
    wait_until("the epoch gauge set", Duration::from_secs(2), || {
        !metrics.find(m::ELECTION_EPOCH, &[("app", APP)]).is_empty() && gauge() > 0.0
    })
    .await;
    let first = gauge();
    let attacker = cluster
        .network
        .kv("attacker")
        .bucket(BucketConfig::new("prod_election").with_per_key_ttl())
        .await
        .unwrap();
    attacker
        .put(&format!("lease.{APP}"), Bytes::from_static(b"not json"))
        .await
        .unwrap();
    // The term ends at once; nobody leads until the takeover after T(1+ε) (3.45 s).
    wait_until("the epoch gauge at 0", Duration::from_secs(1), || {
        gauge() == 0.0
    })
    .await;
    eprintln!("gauge {first} -> 0 while leaderless");
    wait_until("a new epoch", Duration::from_secs(10), || gauge() > first).await;
    eprintln!("gauge -> {} after the takeover", gauge());
}
