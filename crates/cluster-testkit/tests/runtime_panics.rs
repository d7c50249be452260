//! A panicking hook, resource or handler is a failure handled like an error, never a zombie:
//! the node steps down, another node leads, the platform keeps running, and the panic is
//! counted (`Stats::panics`, `gc_hook_panics_total`) and audited (`node` `hook.panicked`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster_core::audit::AuditFilter;
use cluster_core::{ActiveResource, RetryPolicy};
use cluster_core::{Epoch, Error, Result};
use cluster_runtime::{App, Platform};
use cluster_runtime::{PlatformOptions, Routing};
use cluster_testkit::scenario::{SimCluster, wait_until};

type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Copy, Default)]
struct Faults {
    /// `on_active` panics the first time it runs.
    active_once: bool,
    /// `on_passive` panics every time.
    passive: bool,
}

fn singleton(node: &str, log: &Log, faults: Faults) -> App {
    let app = App::singleton("db").unwrap();
    let (l, n) = (log.clone(), node.to_owned());
    let panicked = Arc::new(AtomicBool::new(false));
    app.on_active(move |_| {
        let (l, n, panicked) = (l.clone(), n.clone(), panicked.clone());
        async move {
            l.lock().unwrap().push(format!("{n} on_active"));
            if faults.active_once && !panicked.swap(true, Ordering::SeqCst) {
                panic!("on_active exploded");
            }
            Ok(())
        }
    });
    let (l, n) = (log.clone(), node.to_owned());
    app.on_passive(move |_| {
        let (l, n) = (l.clone(), n.clone());
        async move {
            l.lock().unwrap().push(format!("{n} on_passive"));
            if faults.passive {
                panic!("on_passive exploded");
            }
            Ok(())
        }
    });
    app
}

/// The `hook.panicked` audit records of `platform`, as `(hook, app)`.
async fn panic_audits(platform: &Platform) -> Vec<(String, Option<String>)> {
    let audit = platform.audit();
    audit.flush().await;
    let page = audit
        .query(&AuditFilter {
            category: Some("node".into()),
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    page.entries
        .into_iter()
        .filter(|e| e.record.action == "hook.panicked" && e.record.node == *platform.node_id())
        .map(|e| {
            (
                e.record.data["hook"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e.record.app.map(|a| a.to_string()),
            )
        })
        .collect()
}

fn has(log: &Log, line: &str) -> bool {
    log.lock().unwrap().iter().any(|l| l == line)
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_active_steps_down_and_another_node_leads() {
    let log = Log::default();
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let faults = Faults {
        active_once: true,
        ..Faults::default()
    };
    cluster
        .start_node("n1", vec![singleton("n1", &log, faults)])
        .await
        .unwrap();
    wait_until("n1 ran on_active", Duration::from_secs(5), || {
        has(&log, "n1 on_active")
    })
    .await;
    cluster
        .start_node("n2", vec![singleton("n2", &log, Faults::default())])
        .await
        .unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(
        leader, "n2",
        "the node whose on_active panicked stepped down"
    );
    assert!(
        has(&log, "n1 on_passive"),
        "the failed activation was undone"
    );
    let n1 = &cluster.node("n1").platform;
    assert_eq!(n1.stats().panics(), 1);
    assert_eq!(
        panic_audits(n1).await,
        vec![("on_active".to_owned(), Some("db".to_owned()))]
    );
    // n1's leadership machine is alive: after its cooldown it takes over when n2 steps down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node("n2").app("db").step_down().await.unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(leader, "n1");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_passive_still_releases_and_the_node_can_lead_again() {
    let log = Log::default();
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let faults = Faults {
        passive: true,
        ..Faults::default()
    };
    cluster
        .start_node("n1", vec![singleton("n1", &log, faults)])
        .await
        .unwrap();
    cluster.wait_leader("db", Duration::from_secs(5)).await;
    cluster
        .start_node("n2", vec![singleton("n2", &log, Faults::default())])
        .await
        .unwrap();
    cluster.node("n1").app("db").step_down().await.unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(leader, "n2");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node("n2").app("db").step_down().await.unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(
        leader, "n1",
        "n1 campaigns again after its on_passive panicked"
    );
    let n1 = &cluster.node("n1").platform;
    assert_eq!(n1.stats().panics(), 1);
    assert_eq!(
        panic_audits(n1).await,
        vec![("on_passive".to_owned(), Some("db".to_owned()))]
    );
}

/// A resource whose activation panics on one node.
struct Exploding {
    node: String,
    log: Log,
    explode: bool,
}

#[async_trait]
impl ActiveResource for Exploding {
    fn name(&self) -> &str {
        "vip"
    }

    async fn activate(&self, _epoch: Epoch) -> Result<()> {
        if self.explode {
            panic!("vip activation exploded");
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("{} vip up", self.node));
        Ok(())
    }

    async fn deactivate(&self) -> Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} vip down", self.node));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_resource_activation_steps_down_like_a_failing_one() {
    let log = Log::default();
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for (node, explode) in [("n1", true), ("n2", false)] {
        let app = singleton(node, &log, Faults::default());
        app.add_resource(
            Arc::new(Exploding {
                node: node.into(),
                log: log.clone(),
                explode,
            }),
            RetryPolicy {
                attempts: 2,
                backoff: Duration::from_millis(10),
                timeout: Duration::from_secs(1),
            },
        );
        cluster.start_node(node, vec![app]).await.unwrap();
    }
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_eq!(leader, "n2", "a node whose resource panics never leads");
    wait_until("n1 stays standby", Duration::from_secs(3), || {
        !cluster.node("n1").app("db").is_leader()
    })
    .await;
    assert!(!has(&log, "n1 on_active"));
    let n1 = &cluster.node("n1").platform;
    assert!(n1.stats().panics() >= 2, "each attempt's panic is counted");
    assert!(
        panic_audits(n1)
            .await
            .iter()
            .all(|(hook, _)| hook == "resource.activate")
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_member_hook_does_not_stop_later_notifications() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let joined = Log::default();
    let app = App::spread("web").unwrap();
    let j = joined.clone();
    app.on_member_join(move |_, m| {
        let j = j.clone();
        async move {
            j.lock().unwrap().push(m.node_id.to_string());
            panic!("on_member_join exploded");
        }
    });
    cluster.start_node("n1", vec![app]).await.unwrap();
    for n in ["n2", "n3"] {
        cluster
            .start_node(n, vec![App::spread("web").unwrap()])
            .await
            .unwrap();
    }
    wait_until("both joins delivered", Duration::from_secs(5), || {
        joined.lock().unwrap().len() == 2
    })
    .await;
    let n1 = &cluster.node("n1").platform;
    assert_eq!(n1.stats().panics(), 2);
    assert_eq!(panic_audits(n1).await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_rpc_handler_answers_an_error_and_the_server_keeps_serving() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2"] {
        let app = App::spread("svc").unwrap();
        app.handle("boom", |_req| async move {
            if true {
                panic!("handler exploded");
            }
            Ok(Bytes::new())
        })
        .unwrap();
        app.handle("echo", |req| async move { Ok(req.payload) })
            .unwrap();
        cluster.start_node(n, vec![app]).await.unwrap();
    }
    let rpc = cluster.node("n1").app("svc").rpc();
    let to_n2 = Routing::ToNode("n2".parse().unwrap());
    match rpc
        .call_with_timeout(to_n2.clone(), "boom", "", Duration::from_secs(5))
        .await
    {
        Err(Error::Handler(m)) => assert!(m.contains("panicked: handler exploded"), "{m}"),
        other => panic!("expected a handler error, got {other:?}"),
    }
    assert_eq!(
        rpc.call(to_n2, "echo", "still here").await.unwrap(),
        "still here"
    );
    let n2 = &cluster.node("n2").platform;
    assert_eq!(n2.stats().panics(), 1);
    assert_eq!(
        panic_audits(n2).await,
        vec![("rpc".to_owned(), Some("svc".to_owned()))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_event_handler_loses_only_that_event() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2"] {
        cluster
            .start_node(n, vec![App::spread("users").unwrap()])
            .await
            .unwrap();
    }
    let seen = Log::default();
    let s = seen.clone();
    let _sub = cluster
        .node("n2")
        .app("users")
        .events()
        .subscribe("user.*", move |e| {
            assert_ne!(e.subject, "user.boom", "handler exploded");
            s.lock().unwrap().push(e.subject);
        })
        .await
        .unwrap();
    let events = cluster.node("n1").app("users").events();
    for subject in ["user.a", "user.boom", "user.b"] {
        events.publish(subject, "x").await.unwrap();
    }
    wait_until("the events after the panic", Duration::from_secs(2), || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), vec!["user.a", "user.b"]);
    let n2 = &cluster.node("n2").platform;
    assert_eq!(n2.stats().panics(), 1);
    assert_eq!(
        panic_audits(n2).await,
        vec![("event".to_owned(), Some("users".to_owned()))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_audit_records_is_bounded_and_counted() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster
        .start_node("n1", vec![App::spread("web").unwrap()])
        .await
        .unwrap();
    let platform = &cluster.node("n1").platform;
    let audit = platform.audit();
    audit.flush().await;
    let before = platform.stats().dropped();
    // Without yielding, the writer cannot drain: everything past the queue's capacity drops.
    const FLOOD: usize = 10_000;
    for i in 0..FLOOD {
        audit
            .record("flood", "test", None, serde_json::json!({ "i": i }))
            .unwrap();
    }
    let dropped = (platform.stats().dropped() - before) as usize;
    assert!(dropped > 0 && dropped < FLOOD, "dropped {dropped}");
    audit.flush().await;
    let stored = audit
        .query(&AuditFilter {
            category: Some("flood".into()),
            limit: FLOOD,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .entries
        .len();
    assert_eq!(stored + dropped, FLOOD, "every record is stored or counted");
    // The queue recovers: a record after the flood is stored.
    audit
        .record("flood", "after", None, serde_json::json!({}))
        .unwrap();
    audit.flush().await;
    let after = audit
        .query(&AuditFilter {
            category: Some("flood".into()),
            limit: FLOOD,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(after.entries.iter().any(|e| e.record.action == "after"));
}

/// A metrics recorder that panics once, inside the leadership machine, when a node records
/// the acquisition of a term (after `on_active` succeeded).
struct Trap(AtomicBool);

impl metrics::Recorder for Trap {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let acquired = key.name() == "gc_election_transitions_total"
            && key
                .labels()
                .any(|l| l.key() == "reason" && l.value() == "acquired");
        if acquired && self.0.swap(false, Ordering::SeqCst) {
            panic!("the leadership machine exploded");
        }
        metrics::Counter::noop()
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_leadership_machine_undoes_resigns_and_restarts() {
    // The current-thread test runtime runs every task on this thread: the local recorder
    // sees the machine's metrics.
    let trap = Trap(AtomicBool::new(true));
    let _guard = metrics::set_default_local_recorder(&trap);
    let log = Log::default();
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    cluster
        .start_node("n1", vec![singleton("n1", &log, Faults::default())])
        .await
        .unwrap();
    wait_until("n1 undid its term", Duration::from_secs(5), || {
        has(&log, "n1 on_passive")
    })
    .await;
    let n1 = cluster.node("n1");
    assert!(!n1.app("db").is_leader());
    wait_until("n1 gave the lease up", Duration::from_secs(1), || {
        n1.app("db")
            .election_state()
            .is_some_and(|s| s.leading.is_none())
    })
    .await;
    assert_eq!(n1.platform.stats().panics(), 1);
    assert_eq!(
        panic_audits(&n1.platform).await,
        vec![("leadership".to_owned(), Some("db".to_owned()))]
    );
    cluster
        .start_node("n2", vec![singleton("n2", &log, Faults::default())])
        .await
        .unwrap();
    cluster.wait_leader("db", Duration::from_secs(10)).await;
    // The restarted machine takes commands and leads again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = cluster.leader("db").unwrap();
    cluster.node(&leader).app("db").step_down().await.unwrap();
    let (next, _) = cluster.wait_leader("db", Duration::from_secs(10)).await;
    assert_ne!(next, leader);
}
