//! Drains on in-memory nodes (paused time): without force an instance that cannot move keeps
//! running and the drain times out naming it; with force it is stopped and audited; a drain
//! with `max_concurrent` never has more migrations in flight than allowed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cluster::core::audit::AuditFilter;
use cluster::placement::{AppPlacementExt, planner};
use cluster::{App, Mode, PlatformOptions, Role};
use cluster_runtime::{AdminClient, DrainOptions};
use cluster_testkit::scenario::{SimCluster, wait_until};

fn cluster() -> SimCluster {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SimCluster::new("prod", PlatformOptions::fast()).with_planner(planner())
}

fn running(c: &SimCluster, app: &str) -> Vec<String> {
    c.names()
        .into_iter()
        .filter(|n| c.node(n).apps.get(app).is_some_and(|a| a.is_running()))
        .collect()
}

/// `pinned` may only run on n1; `api` runs everywhere; `db` is a free Singleton led by n1.
async fn three_nodes() -> SimCluster {
    let mut c = cluster();
    for n in ["n1", "n2", "n3"] {
        let pinned = App::singleton("pinned").unwrap();
        pinned.on_nodes(["n1"]).unwrap();
        let api = App::spread("api").unwrap();
        let db = App::singleton("db").unwrap();
        db.prefer_node("n1", 100).unwrap();
        c.start_node(n, vec![pinned, api, db]).await.unwrap();
    }
    wait_until("placed", Duration::from_secs(20), || {
        running(&c, "api").len() == 3
            && running(&c, "db").len() == 3
            && c.leader("pinned") == Some("n1".into())
            && c.leader("db") == Some("n1".into())
    })
    .await;
    c
}

async fn audit_events(c: &SimCluster, node: &str) -> Vec<(String, Option<String>)> {
    for n in c.names() {
        c.node(&n).platform.audit().flush().await;
    }
    let reader = c.node(node).platform.audit();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = reader
            .query(&AuditFilter {
                after,
                limit: 50,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        out.extend(page.entries.iter().map(|e| {
            (
                e.record.event(),
                e.record.app.as_ref().map(ToString::to_string),
            )
        }));
        after = page.next_after;
        if !page.truncated {
            break;
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn without_force_an_instance_that_cannot_move_keeps_running_and_the_drain_names_it() {
    let c = three_nodes().await;
    let mut seen = Vec::new();
    let err = c
        .node("n2")
        .platform
        .drain_node(
            "n1",
            DrainOptions {
                timeout: Duration::from_secs(15),
                force: false,
                max_concurrent: 0,
            },
            |p| seen.push(p.clone()),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, cluster::Error::Timeout(_)), "{err}");
    assert!(msg.contains("pinned") && msg.contains("blocked"), "{msg}");
    assert!(!msg.contains("api") && !msg.contains("db,"), "{msg}");
    // Everything that could move did; the pinned app was never stopped.
    assert!(!running(&c, "api").contains(&"n1".to_owned()));
    assert_ne!(c.leader("db"), Some("n1".into()));
    assert_eq!(c.leader("pinned"), Some("n1".into()));
    assert_eq!(c.node("n1").app("pinned").role(), Role::Leader);
    let last = seen.last().unwrap();
    assert_eq!(
        last.remaining
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["pinned"]
    );
    let why = &last.blocked[&cluster::AppName::new("pinned").unwrap()];
    assert!(why.contains("n1"), "{why}");
    // The reason names the drain, not a health problem n1 does not have.
    assert!(
        why.contains("node draining eliminated n1") && !why.contains("unhealthy"),
        "{why}"
    );
    // The failed drain stays recorded (placement.status lists n1 as draining): the node's own
    // status says so too.
    let client = AdminClient::new(c.network.transport("_cli"), "prod".parse().unwrap());
    let n1 = cluster::NodeId::new("n1").unwrap();
    assert!(client.node_status(&n1).await.unwrap().draining);
    assert!(c.node("n3").platform.is_cordoned("n1").await.unwrap());
    let record = c.node("n3").platform.assignment().await.unwrap().unwrap();
    assert!(record.pending.is_empty(), "{:?}", record.pending);
    assert!(record.assignment.places(
        &cluster::AppName::new("pinned").unwrap(),
        &cluster::NodeId::new("n1").unwrap()
    ));
    // Still running well after the failed drain (the drain record is still in place).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.leader("pinned"), Some("n1".into()));
    let events = audit_events(&c, "n3").await;
    assert!(
        events
            .iter()
            .any(|(e, a)| e == "placement.migration.failed" && a.as_deref() == Some("pinned")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(e, a)| e == "placement.constraint.invalid" && a.as_deref() == Some("pinned")),
        "{events:?}"
    );
    // Uncordoning ends the drain: no longer draining anywhere.
    c.node("n2").platform.uncordon_node("n1").await.unwrap();
    assert!(!client.node_status(&n1).await.unwrap().draining);
}

#[tokio::test(start_paused = true)]
async fn with_force_an_instance_that_cannot_move_is_stopped_and_the_node_ends_up_empty() {
    let c = three_nodes().await;
    let done = c
        .node("n2")
        .platform
        .drain_node(
            "n1",
            DrainOptions {
                timeout: Duration::from_secs(30),
                force: true,
                max_concurrent: 0,
            },
            |_| {},
        )
        .await
        .unwrap();
    assert!(done.remaining.is_empty());
    assert_eq!(done.total, 3);
    assert!(running(&c, "pinned").is_empty(), "stopped, not moved");
    assert_eq!(c.node("n1").app("pinned").role(), Role::Stopped);
    assert!(!running(&c, "api").contains(&"n1".to_owned()));
    let (db, _) = c.wait_leader("db", Duration::from_secs(10)).await;
    assert_ne!(db, "n1");
    let record = c.node("n3").platform.assignment().await.unwrap().unwrap();
    assert!(
        record
            .pending
            .contains_key(&cluster::AppName::new("pinned").unwrap()),
        "{record:?}"
    );
    let events = audit_events(&c, "n3").await;
    for event in ["placement.constraint.invalid", "operator.drain.forced-stop"] {
        assert!(
            events
                .iter()
                .any(|(e, a)| e == event && a.as_deref() == Some("pinned")),
            "{event} missing: {events:?}"
        );
    }
    assert!(
        !events
            .iter()
            .any(|(e, a)| e == "operator.drain.forced-stop" && a.as_deref() != Some("pinned")),
        "only the app that could not move is force-stopped: {events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_with_max_concurrent_moves_one_instance_at_a_time() {
    let mut c = cluster();
    let draining = Arc::new(AtomicBool::new(false));
    let starting = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let apps = ["a1", "a2", "a3", "a4"];
    for n in ["n1", "n2", "n3"] {
        let mut list = Vec::new();
        for name in apps {
            let app = App::new(name, Mode::Replicas { n: 1 }).unwrap();
            app.prefer_node("n1", 100).unwrap();
            let (d, s, p) = (draining.clone(), starting.clone(), peak.clone());
            app.on_start(move |_| {
                let (d, s, p) = (d.clone(), s.clone(), p.clone());
                async move {
                    if d.load(Ordering::SeqCst) {
                        let now = s.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(now, Ordering::SeqCst);
                        // A slow start: the migration stays in flight meanwhile.
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        s.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            });
            list.push(app);
        }
        c.start_node(n, list).await.unwrap();
    }
    wait_until("all on n1", Duration::from_secs(20), || {
        apps.iter().all(|a| running(&c, a) == vec!["n1"])
    })
    .await;
    draining.store(true, Ordering::SeqCst);
    let mut remaining_seen = BTreeSet::new();
    let done = c
        .node("n2")
        .platform
        .drain_node(
            "n1",
            DrainOptions {
                timeout: Duration::from_secs(120),
                force: false,
                max_concurrent: 1,
            },
            |p| {
                remaining_seen.insert(p.remaining.len());
            },
        )
        .await
        .unwrap();
    assert!(done.remaining.is_empty());
    for a in apps {
        let r = running(&c, a);
        assert_eq!(r.len(), 1, "{a}: {r:?}");
        assert_ne!(r[0], "n1");
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one migration at a time");
    // Progress went down one by one.
    assert_eq!(remaining_seen, BTreeSet::from([0, 1, 2, 3, 4]));
}
