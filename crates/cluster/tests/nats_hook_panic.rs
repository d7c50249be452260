//! A panicking `on_active` over a real nats-server: the node steps down (no zombie lease
//! holder), another node leads within the bound, never two leaders at once (sampled every
//! 2 ms), the platform keeps running and the panic is counted and audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::App;
use cluster_core::audit::AuditFilter;
use cluster_testkit::nats_server::NatsServer;
use common::{NatsNode, leaders, options, start_node};
use tokio::time::Instant;

/// The first `on_active` anywhere panics; every later one succeeds.
type Victim = Arc<Mutex<Option<(String, Instant)>>>;

fn db_app(node: &str, panicked: &Arc<AtomicBool>, victim: &Victim) -> App {
    let app = App::singleton("db").unwrap();
    let (p, v, n) = (panicked.clone(), victim.clone(), node.to_owned());
    app.on_active(move |_| {
        let (p, v, n) = (p.clone(), v.clone(), n.clone());
        async move {
            if !p.swap(true, Ordering::SeqCst) {
                *v.lock().unwrap() = Some((n, Instant::now()));
                panic!("on_active exploded");
            }
            Ok(())
        }
    });
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_on_active_over_nats_steps_down_and_another_node_leads() {
    let server = NatsServer::start();
    let urls = vec![server.url()];
    let panicked = Arc::new(AtomicBool::new(false));
    let victim: Victim = Arc::default();
    let mut nodes: Vec<NatsNode> = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(
            start_node(
                &urls,
                "panics",
                n,
                vec![db_app(n, &panicked, &victim)],
                options(1),
            )
            .await
            .unwrap(),
        );
    }
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    // The lease TTL of the fast profile is 3 s; a failed activation resigns at once, so a
    // leader must follow well within TTL(1+ε) + 2 s of the panic.
    let started = Instant::now();
    let bound = Duration::from_secs(3) * 115 / 100 + Duration::from_secs(2);
    let leader = loop {
        let l = leaders(&refs, "db");
        assert!(l.len() <= 1, "two leaders of db: {l:?}");
        if let Some(l) = l.into_iter().next() {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20) + bound,
            "no leader of db"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let (victim, panicked_at) = victim
        .lock()
        .unwrap()
        .clone()
        .expect("on_active ran and panicked");
    assert_ne!(
        leader, victim,
        "the node whose on_active panicked stepped down"
    );
    let took = panicked_at.elapsed();
    println!("panic in on_active on {victim}: {leader} leads {took:?} later");
    assert!(
        took < bound,
        "a new leader {took:?} after the panic (bound {bound:?})"
    );
    let victim_node = refs
        .iter()
        .find(|n| n.platform.node_id().as_str() == victim)
        .unwrap();
    assert_eq!(victim_node.platform.stats().panics(), 1);
    // Stable for a while: one leader, the victim standby, its platform running.
    for _ in 0..250 {
        assert_eq!(leaders(&refs, "db"), vec![leader.clone()]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(victim_node.app("db").is_running());
    let audit = victim_node.platform.audit();
    audit.flush().await;
    let records = audit
        .query(&AuditFilter {
            category: Some("node".into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        records
            .entries
            .iter()
            .any(|e| e.record.action == "hook.panicked"
                && e.record.node.as_str() == victim
                && e.record.data["hook"] == "on_active"),
        "no hook.panicked record: {:?}",
        records.entries
    );
    for n in nodes {
        n.stop().await.unwrap();
    }
}
