//! `App::wait_for_leadership` and `App::leader_changes` on three in-memory nodes, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cluster_core::Error;
use cluster_runtime::{App, PlatformOptions};
use cluster_testkit::scenario::SimCluster;
use futures::StreamExt;

async fn three_nodes() -> SimCluster {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2", "n3"] {
        let apps = vec![App::singleton("db").unwrap(), App::spread("web").unwrap()];
        cluster.start_node(n, apps).await.unwrap();
    }
    cluster
}

fn spawn_wait(
    cluster: &SimCluster,
    node: &str,
) -> tokio::task::JoinHandle<cluster_core::Result<cluster_core::Epoch>> {
    let app = cluster.node(node).app("db").clone();
    tokio::spawn(async move { app.wait_for_leadership().await })
}

#[tokio::test(start_paused = true)]
async fn wait_for_leadership_resolves_on_the_leader_with_its_epoch_and_after_a_handover() {
    let cluster = three_nodes().await;
    let waits: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| (n.to_string(), spawn_wait(&cluster, n)))
        .collect();
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let e1 = cluster.node(&first).app("db").fencing_token().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut pending = Vec::new();
    for (node, wait) in waits {
        if node == first {
            assert_eq!(
                wait.await.unwrap().unwrap(),
                e1,
                "the leader's wait gets its epoch"
            );
        } else {
            assert!(!wait.is_finished(), "{node} resolved without leading");
            pending.push((node, wait));
        }
    }
    // Resolves at once on the leader.
    let again = cluster.node(&first).app("db").wait_for_leadership().await;
    assert_eq!(again.unwrap(), e1);

    cluster.node(&first).app("db").step_down().await.unwrap();
    let (second, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let e2 = cluster.node(&second).app("db").fencing_token().unwrap();
    assert!(e2 > e1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (node, wait) in pending {
        if node == second {
            assert_eq!(wait.await.unwrap().unwrap(), e2);
        } else {
            assert!(!wait.is_finished(), "{node} resolved without leading");
            wait.abort();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn wait_for_leadership_is_cancellable_and_fails_on_shutdown() {
    let mut cluster = three_nodes().await;
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let standby = cluster.names().into_iter().find(|n| *n != leader).unwrap();
    let app = cluster.node(&standby).app("db").clone();
    // A deadline cancels the wait.
    let timed = tokio::time::timeout(Duration::from_secs(2), app.wait_for_leadership()).await;
    assert!(timed.is_err(), "a standby must not resolve: {timed:?}");
    // Shutting the node down fails a pending wait, and every later one.
    let wait = spawn_wait(&cluster, &standby);
    tokio::time::sleep(Duration::from_millis(10)).await;
    cluster.stop_node(&standby).await.unwrap();
    let err = wait.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::ShuttingDown), "{err}");
    let err = app.wait_for_leadership().await.unwrap_err();
    assert!(
        matches!(err, Error::ShuttingDown | Error::InvalidArgument(_)),
        "{err}"
    );
    // Only Singleton apps have a leader.
    let web = cluster.node(&leader).app("web");
    assert!(matches!(
        web.wait_for_leadership().await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        web.leader_changes(),
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn leader_changes_are_deduplicated_shared_by_subscribers_and_end_on_shutdown() {
    let mut cluster = three_nodes().await;
    let (first, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let observer = cluster.names().into_iter().find(|n| *n != first).unwrap();
    let app = cluster.node(&observer).app("db").clone();
    // Two subscribers reading in their own tasks, collecting until the stream ends.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut changes = app.leader_changes().unwrap();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(leader) = changes.next().await {
                    seen.push(leader.map(|l| l.to_string()));
                }
                seen
            })
        })
        .collect();
    // Several handovers, with time for every node to observe each.
    let mut leaders = vec![first.clone()];
    for _ in 0..3 {
        let current = leaders.last().unwrap().clone();
        cluster.node(&current).app("db").step_down().await.unwrap();
        let next = loop {
            let (next, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
            if next != current {
                break next;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        leaders.push(next);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Renewals of an unchanged leader are not changes.
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.stop_node(&observer).await.unwrap();
    let mut all = Vec::new();
    for r in readers {
        let seen = tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .expect("the stream ends when the platform shuts down")
            .unwrap();
        all.push(seen);
    }
    assert_eq!(all[0], all[1], "every subscriber sees the same changes");
    let seen = &all[0];
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "consecutive duplicates in {seen:?}");
    }
    // Every leader of the run appears, in order (the observer may also report gaps as None
    // and, when it was itself the leader and shut down, its own term).
    let named: Vec<String> = seen.iter().flatten().cloned().collect();
    let mut dedup = named.clone();
    dedup.dedup();
    assert_eq!(
        dedup, named,
        "a leader reported twice in a row across a gap: {seen:?}"
    );
    assert_eq!(named, leaders, "leader sequence {seen:?}");
}
