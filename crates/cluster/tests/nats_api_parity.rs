//! Spec 03 API parity over a real nats-server: `App::wait_for_leadership`,
//! `App::leader_changes` and `Events::unsubscribe`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster::App;
use cluster_testkit::nats_server::NatsServer;
use common::{NatsNode, options, start_node, wait_leader, wait_until};
use futures::StreamExt;

fn apps() -> Vec<App> {
    vec![App::singleton("db").unwrap(), App::spread("jobs").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_waits_leader_changes_and_unsubscribe_over_nats() {
    let server = NatsServer::start();
    let urls = vec![server.url()];
    let mut nodes: Vec<NatsNode> = Vec::new();
    for n in ["n1", "n2"] {
        nodes.push(
            start_node(&urls, "api", n, apps(), options(1))
                .await
                .unwrap(),
        );
    }
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    let (first, _) = wait_leader(&refs, "db", Duration::from_secs(10)).await;
    let (leader, standby) = if refs[0].platform.node_id().as_str() == first {
        (refs[0], refs[1])
    } else {
        (refs[1], refs[0])
    };
    let e1 = leader.app("db").fencing_token().unwrap();
    assert_eq!(leader.app("db").wait_for_leadership().await.unwrap(), e1);
    let mut changes = standby.app("db").leader_changes().unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.map(|n| n.to_string()), Some(first.clone()));
    let wait = {
        let app = standby.app("db").clone();
        tokio::spawn(async move { app.wait_for_leadership().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !wait.is_finished(),
        "the standby's wait resolved while it was standby"
    );

    leader.app("db").step_down().await.unwrap();
    let e2 = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the standby takes over")
        .unwrap()
        .unwrap();
    assert!(e2 > e1, "{e2} after {e1}");
    let next = loop {
        let item = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .unwrap()
            .unwrap();
        if let Some(node) = item {
            break node;
        }
    };
    assert_eq!(&next, standby.platform.node_id());

    // Events: unsubscribing stops the handler on the subscribing node; another pattern goes on.
    let (stopped, kept) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, k) = (stopped.clone(), kept.clone());
    let events = standby.app("jobs").events();
    let _a = events
        .subscribe("job.*", move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    let _b = events
        .subscribe("job.>", move |_| {
            k.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    let publisher = leader.app("jobs").events();
    publisher.publish("job.done", "1").await.unwrap();
    wait_until("both handlers ran", Duration::from_secs(5), || {
        stopped.load(Ordering::SeqCst) == 1 && kept.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        standby
            .app("jobs")
            .events()
            .unsubscribe("job.*")
            .await
            .unwrap(),
        1
    );
    for i in 2..=5 {
        publisher.publish("job.done", i.to_string()).await.unwrap();
    }
    wait_until("the kept handler got all", Duration::from_secs(5), || {
        kept.load(Ordering::SeqCst) == 5
    })
    .await;
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        1,
        "delivery after unsubscribe"
    );

    drop(refs);
    let mut changes_end = changes;
    for n in nodes {
        n.stop().await.unwrap();
    }
    let rest: Vec<_> = tokio::time::timeout(
        Duration::from_secs(5),
        changes_end.by_ref().collect::<Vec<_>>(),
    )
    .await
    .expect("the leader stream ends at shutdown");
    assert!(rest.len() <= 2, "{rest:?}");
}
