//! Leader routing to an app not running on the caller's node reads the app's lease record: it
//! must apply the election's trust rules (a record whose epoch hint is inconsistent with the
//! store, or that does not decode, is held by an unknown holder: no leader to route to).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use cluster_core::{BucketConfig, Error, KvStore};
use cluster_runtime::App;
use cluster_runtime::{PlatformOptions, Routing};
use cluster_testkit::scenario::SimCluster;

#[tokio::test(start_paused = true)]
async fn leader_routing_ignores_an_untrusted_lease_record() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster
        .start_node("n1", vec![App::spread("api").unwrap()])
        .await
        .unwrap();
    // n2 answers on db's node subject (a Spread instance: it refuses leader-routed requests
    // with NotLeader); the caller only sees db's lease record.
    cluster
        .start_node("n2", vec![App::spread("db").unwrap()])
        .await
        .unwrap();
    let attacker = cluster
        .network
        .kv("attacker")
        .bucket(BucketConfig::new("prod_election").with_per_key_ttl())
        .await
        .unwrap();
    let api = cluster.node("n1").platform.api("db").unwrap();
    let call = || api.call_with_timeout(Routing::ToLeader, "who", "", Duration::from_millis(300));

    // A trusted record naming n2 is routed to n2 (which answers): the path is live.
    attacker
        .put(
            "lease.db",
            Bytes::from_static(br#"{"v":1,"node":"n2","instance":"i2","epoch":0}"#),
        )
        .await
        .unwrap();
    let err = call().await.unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }), "{err}");

    for forged in [
        // An epoch hint above floor + revision: forged.
        &br#"{"v":1,"node":"n2","instance":"x","epoch":999999}"#[..],
        b"not json",
        br#"{"v":7,"node":"n2","instance":"x","epoch":0}"#,
        br#"{"v":1,"node":"n2","instance":"x","epoch":0,"handoff_to":"n1"}"#,
    ] {
        attacker
            .put("lease.db", Bytes::from_static(forged))
            .await
            .unwrap();
        let err = call().await.unwrap_err();
        assert!(
            matches!(err, Error::NoLeader(_)),
            "{}: {err}",
            String::from_utf8_lossy(forged)
        );
    }
}
