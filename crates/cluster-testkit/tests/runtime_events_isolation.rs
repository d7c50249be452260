//! Events (wildcards, bursts, metadata, unsubscribe) and app isolation on in-memory nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::{Error, Lock};
use cluster_runtime::App;
use cluster_runtime::{Event, PlatformOptions};
use cluster_testkit::scenario::{SimCluster, wait_until};
use futures::StreamExt;

async fn two_nodes(apps: &[&str]) -> SimCluster {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2"] {
        let list = apps.iter().map(|a| App::spread(a).unwrap()).collect();
        cluster.start_node(n, list).await.unwrap();
    }
    cluster
}

#[tokio::test(start_paused = true)]
async fn wildcard_routing_and_source_metadata() {
    let cluster = two_nodes(&["users"]).await;
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let s = seen.clone();
    let _sub = cluster
        .node("n2")
        .app("users")
        .events()
        .subscribe("user.*", move |e| s.lock().unwrap().push(e))
        .await
        .unwrap();
    let mut deep = cluster
        .node("n2")
        .app("users")
        .events()
        .stream("user.>")
        .await
        .unwrap();
    let events = cluster.node("n1").app("users").events();
    events.publish("user.created", "alice").await.unwrap();
    events.publish("user.deleted", "bob").await.unwrap();
    events.publish("order.created", "x").await.unwrap();
    events
        .publish("user.profile.updated", "carol")
        .await
        .unwrap();
    wait_until("two matching events", Duration::from_secs(1), || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        vec!["user.created", "user.deleted"]
    );
    assert_eq!(seen[0].data, "alice");
    assert_eq!(seen[0].source_node.as_str(), "n1");
    assert_eq!(
        seen[0].source_app.as_ref().map(|a| a.as_str()),
        Some("users")
    );
    assert!(!seen[0].id.is_empty() && seen[0].id != seen[1].id);
    let mut deep_subjects = Vec::new();
    for _ in 0..3 {
        deep_subjects.push(deep.next().await.unwrap().subject);
    }
    assert_eq!(
        deep_subjects,
        vec!["user.created", "user.deleted", "user.profile.updated"]
    );
    // Wildcards are refused for publishing; bad patterns for subscribing.
    assert!(matches!(
        events.publish("user.*", "x").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        events.stream("a.>.b").await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_1000_events_arrives_complete_and_in_order() {
    let cluster = two_nodes(&["feed"]).await;
    let mut stream = cluster
        .node("n2")
        .app("feed")
        .events()
        .stream("tick")
        .await
        .unwrap();
    let events = cluster.node("n1").app("feed").events();
    for i in 0..1000u32 {
        events.publish("tick", i.to_string()).await.unwrap();
    }
    for i in 0..1000u32 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event in time")
            .expect("stream open");
        assert_eq!(e.data, i.to_string(), "event {i} lost or reordered");
    }
}

#[tokio::test(start_paused = true)]
async fn unsubscribe_stops_delivery_and_platform_events_are_separate() {
    let cluster = two_nodes(&["a"]).await;
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    let sub = cluster
        .node("n2")
        .platform
        .events()
        .subscribe(">", move |_| *c.lock().unwrap() += 1)
        .await
        .unwrap();
    let platform_events = cluster.node("n1").platform.events();
    platform_events.publish("deploy.done", "v1").await.unwrap();
    // App events do not leak into the platform namespace.
    cluster
        .node("n1")
        .app("a")
        .events()
        .publish("deploy.done", "v1")
        .await
        .unwrap();
    wait_until("one platform event", Duration::from_secs(1), || {
        *count.lock().unwrap() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*count.lock().unwrap(), 1);
    sub.unsubscribe();
    platform_events.publish("deploy.done", "v2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(*count.lock().unwrap(), 1, "no delivery after unsubscribe");
}

#[tokio::test(start_paused = true)]
async fn apps_cannot_reach_each_others_data_locks_or_events() {
    let cluster = two_nodes(&["alpha", "beta"]).await;
    let alpha = cluster.node("n1").app("alpha");
    let beta = cluster.node("n1").app("beta");
    alpha.kv().put("secret", "42").await.unwrap();
    // Beta sees nothing of alpha's keys through any KV API.
    assert_eq!(beta.kv().get("secret").await.unwrap(), None);
    assert_eq!(beta.kv().entry("secret").await.unwrap(), None);
    assert!(beta.kv().keys("").await.unwrap().is_empty());
    beta.kv().put("secret", "mine").await.unwrap();
    assert_eq!(alpha.kv().get("secret").await.unwrap().unwrap(), "42");
    // The same app on another node shares its data.
    assert_eq!(
        cluster
            .node("n2")
            .app("alpha")
            .kv()
            .get("secret")
            .await
            .unwrap()
            .unwrap(),
        "42"
    );
    // Locks of the same name in two apps are different locks.
    let la = alpha.lock("migration").unwrap();
    let lb = beta.lock("migration").unwrap();
    assert!(la.try_lock().await.unwrap());
    assert!(
        lb.try_lock().await.unwrap(),
        "beta's lock is not alpha's lock"
    );
    // ... and a platform lock is distinct from both.
    let lp = cluster.node("n2").platform.lock("migration").unwrap();
    assert!(lp.try_lock().await.unwrap());
    // Events of the same subject in two apps stay apart.
    let mut beta_events = beta.events().stream(">").await.unwrap();
    alpha.events().publish("changed", "a").await.unwrap();
    beta.events().publish("changed", "b").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(1), beta_events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.data, "b");
    assert_eq!(first.source_app.unwrap().as_str(), "beta");
}

#[tokio::test(start_paused = true)]
async fn app_locks_across_nodes_count_exactly_fifteen() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2", "n3"] {
        cluster
            .start_node(n, vec![App::spread("jobs").unwrap()])
            .await
            .unwrap();
    }
    cluster
        .node("n1")
        .app("jobs")
        .kv()
        .put("counter", "0")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in ["n1", "n2", "n3"] {
        for _ in 0..5 {
            let app = cluster.node(n).app("jobs").clone();
            tasks.push(tokio::spawn(async move {
                let lock = app.lock("counter").unwrap();
                lock.lock(Duration::from_secs(60)).await.unwrap();
                let v: u32 = std::str::from_utf8(&app.kv().get("counter").await.unwrap().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
                app.kv().put("counter", (v + 1).to_string()).await.unwrap();
                lock.unlock().await.unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = cluster
        .node("n2")
        .app("jobs")
        .kv()
        .get("counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "15");
}

#[tokio::test(start_paused = true)]
async fn invalid_names_are_rejected_with_the_rule() {
    let err = App::spread("Bad_Name").unwrap_err();
    assert!(err.to_string().contains("invalid app name"), "{err}");
    assert!(App::new("x", cluster_core::Mode::Replicas { n: 0 }).is_err());
    let app = App::spread("ok").unwrap();
    assert!(
        app.handle("no.dots", |r| async move { Ok(r.payload) })
            .is_err()
    );
    assert!(app.lock("a b").is_err());
    let built = cluster_runtime::Platform::builder("Prod", "n1").build();
    let msg = built.unwrap_err().to_string();
    assert!(
        msg.contains("platform name") && msg.contains("no transport"),
        "{msg}"
    );
    // Replicas and Ring need the placement controller: refused, not silently run everywhere.
    let cluster = SimCluster::new("prod", PlatformOptions::fast());
    let p = cluster_runtime::Platform::builder("prod", "n1")
        .transport(cluster.network.transport("n1"))
        .kv_store(cluster.network.kv("n1"))
        .build()
        .unwrap();
    let err = p
        .register(&App::new("w", cluster_core::Mode::Replicas { n: 3 }).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    p.register(&app).unwrap();
    assert!(
        p.register(&App::spread("ok").unwrap()).is_err(),
        "duplicate app name"
    );
}
