//! Membership on in-memory nodes, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::{Error, Labels};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::{SimCluster, wait_until};
use tokio::time::Instant;

fn watcher(log: &Arc<Mutex<Vec<String>>>) -> App {
    let app = App::spread("watch").unwrap();
    let l = log.clone();
    app.on_member_join(move |_ctx, m| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push(format!("join {}", m.node_id));
            Ok(())
        }
    });
    let l = log.clone();
    app.on_member_leave(move |_ctx, m| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push(format!("leave {}", m.node_id));
            Ok(())
        }
    });
    app
}

#[tokio::test(start_paused = true)]
async fn members_see_each_other_with_labels_and_apps() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for (n, zone) in [("n1", "a"), ("n2", "b")] {
        let labels = Labels::from_pairs([("zone", zone)]).unwrap();
        cluster
            .start_node_with(n, vec![App::spread("api").unwrap()], labels)
            .await
            .unwrap();
    }
    wait_until("both members visible", Duration::from_secs(2), || {
        cluster.node("n1").platform.members().len() == 2
    })
    .await;
    let members = cluster.node("n1").platform.members();
    let n2 = members.iter().find(|m| m.node_id.as_str() == "n2").unwrap();
    assert!(n2.labels.matches("zone", "b"));
    assert_eq!(n2.apps[0].name.as_str(), "api");
    assert!(n2.healthy);
}

#[tokio::test(start_paused = true)]
async fn crashed_node_leaves_membership_within_the_ttl_and_leave_hooks_fire() {
    let options = PlatformOptions::fast();
    let mut cluster = SimCluster::new("prod", options.clone());
    let log = Arc::new(Mutex::new(Vec::new()));
    cluster.start_node("n1", vec![watcher(&log)]).await.unwrap();
    cluster
        .start_node("n2", vec![App::spread("watch").unwrap()])
        .await
        .unwrap();
    wait_until("n1 sees n2 join", Duration::from_secs(2), || {
        log.lock().unwrap().contains(&"join n2".to_owned())
    })
    .await;
    let crashed = Instant::now();
    cluster.crash_node("n2");
    wait_until("n1 sees n2 leave", options.member_ttl * 2, || {
        log.lock().unwrap().contains(&"leave n2".to_owned())
    })
    .await;
    let took = crashed.elapsed();
    assert!(
        took <= options.member_ttl + Duration::from_millis(50),
        "crash detected after {took:?}, member TTL {:?}",
        options.member_ttl
    );
    assert_eq!(cluster.node("n1").platform.members().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn duplicate_node_id_is_refused_and_restart_after_graceful_leave_works_at_once() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster.start_node("n1", vec![]).await.unwrap();
    // A second process with the same node id, on another connection.
    let imposter = cluster_runtime::Platform::builder("prod", "n1")
        .options(PlatformOptions::fast())
        .transport(cluster.network.transport("n1-imposter"))
        .kv_store(cluster.network.kv("n1-imposter"))
        .build()
        .unwrap();
    let err = imposter.run().await.unwrap_err();
    assert!(matches!(err, Error::NodeIdInUse(_)), "{err}");
    assert!(err.to_string().contains("already in use"), "{err}");
    // The live node is unaffected.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(cluster.node("n1").platform.members().len(), 1);
    // Graceful stop, then an immediate restart with the same id.
    cluster.stop_node("n1").await.unwrap();
    cluster.start_node("n1", vec![]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn partitioned_node_rejoins_after_heal() {
    let options = PlatformOptions::fast();
    let mut cluster = SimCluster::new("prod", options.clone());
    let log = Arc::new(Mutex::new(Vec::new()));
    cluster.start_node("n1", vec![watcher(&log)]).await.unwrap();
    cluster.start_node("n2", vec![]).await.unwrap();
    cluster.network.partition("n2");
    wait_until("n2 expires", options.member_ttl * 3, || {
        log.lock().unwrap().contains(&"leave n2".to_owned())
    })
    .await;
    cluster.network.heal("n2");
    wait_until("n2 joins again", options.member_ttl * 3, || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "join n2")
            .count()
            == 2
    })
    .await;
}
