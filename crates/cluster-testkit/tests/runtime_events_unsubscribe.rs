//! `Events::unsubscribe(pattern)` (spec 03) on in-memory nodes: it stops every handler on that
//! pattern in that namespace, only those, and no handler runs once it returned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster_runtime::{App, Events, PlatformOptions};
use cluster_testkit::scenario::{SimCluster, wait_until};

async fn two_nodes() -> SimCluster {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2"] {
        cluster
            .start_node(n, vec![App::spread("a").unwrap()])
            .await
            .unwrap();
    }
    cluster
}

/// Subscribes a handler counting its calls.
async fn counter(
    events: &Events,
    pattern: &str,
) -> (Arc<AtomicUsize>, cluster_runtime::EventSubscription) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let sub = events
        .subscribe(pattern, move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    (count, sub)
}

#[tokio::test(start_paused = true)]
async fn unsubscribe_by_pattern_stops_all_handlers_on_it_and_no_other() {
    let cluster = two_nodes().await;
    let app = cluster.node("n2").app("a");
    // Two handlers on `job.*` made through two handles of the app's namespace, one on `job.>`,
    // and one on `job.*` in the platform namespace.
    let (first, _s1) = counter(&app.events(), "job.*").await;
    let (second, _s2) = counter(&app.events(), "job.*").await;
    let (deep, _s3) = counter(&app.events(), "job.>").await;
    let (platform, _s4) = counter(&cluster.node("n2").platform.events(), "job.*").await;
    let app_pub = cluster.node("n1").app("a").events();
    let platform_pub = cluster.node("n1").platform.events();
    app_pub.publish("job.done", "1").await.unwrap();
    platform_pub.publish("job.done", "1").await.unwrap();
    wait_until("first events", Duration::from_secs(1), || {
        [&first, &second, &deep, &platform]
            .iter()
            .all(|c| c.load(Ordering::SeqCst) == 1)
    })
    .await;

    assert_eq!(app.events().unsubscribe("job.*").await.unwrap(), 2);
    assert_eq!(
        app.events().unsubscribe("job.*").await.unwrap(),
        0,
        "already stopped"
    );
    assert_eq!(app.events().unsubscribe("nothing.here").await.unwrap(), 0);
    assert!(
        app.events().unsubscribe("a.>.b").await.is_err(),
        "invalid pattern"
    );

    for i in 2..=4 {
        app_pub.publish("job.done", i.to_string()).await.unwrap();
        platform_pub
            .publish("job.done", i.to_string())
            .await
            .unwrap();
    }
    wait_until(
        "later events on the other subscriptions",
        Duration::from_secs(1),
        || deep.load(Ordering::SeqCst) == 4 && platform.load(Ordering::SeqCst) == 4,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        first.load(Ordering::SeqCst),
        1,
        "no delivery after unsubscribe"
    );
    assert_eq!(
        second.load(Ordering::SeqCst),
        1,
        "no delivery after unsubscribe"
    );
    assert_eq!(
        deep.load(Ordering::SeqCst),
        4,
        "another pattern is not affected"
    );
    assert_eq!(
        platform.load(Ordering::SeqCst),
        4,
        "another namespace is not affected"
    );
}

/// On a multi-threaded runtime a handler runs on another worker while `unsubscribe` is called:
/// `unsubscribe` returns only after that call finished, and none starts afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_handler_runs_once_unsubscribe_returned() {
    let cluster = two_nodes().await;
    let app = cluster.node("n2").app("a");
    let running = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, c) = (running.clone(), calls.clone());
    let _sub = app
        .events()
        .subscribe("tick", move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            c.fetch_add(1, Ordering::SeqCst);
            r.fetch_sub(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    let publisher = cluster.node("n1").app("a").events();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let flood = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            publisher.publish("tick", "x").await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    wait_until("a handler is running", Duration::from_secs(10), || {
        running.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(app.events().unsubscribe("tick").await.unwrap(), 1);
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "a handler still ran after unsubscribe"
    );
    let after = calls.load(Ordering::SeqCst);
    assert!(after >= 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    flood.await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after,
        "a handler started after unsubscribe"
    );
}
