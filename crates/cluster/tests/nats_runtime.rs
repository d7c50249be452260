//! The runtime over a real nats-server: elections, step-down, locks, RPC, events, KV isolation,
//! duplicate node ids, and a connection cut by a fault proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster::{App, Error, Lock, Routing};
use cluster_testkit::nats_server::{FaultProxy, NatsServer};
use common::{NatsNode, options, start_node, wait_leader, wait_until};
use futures::StreamExt;
use tokio::time::Instant;

/// (node, "active" | "passive", when)
type HookLog = Arc<Mutex<Vec<(String, &'static str, Instant)>>>;

fn db_app(log: &HookLog, node: &str) -> App {
    let app = App::singleton("db").unwrap();
    for (kind, active) in [("active", true), ("passive", false)] {
        let log = log.clone();
        let node = node.to_owned();
        let hook = move |_ctx: cluster::HookContext| {
            let log = log.clone();
            let node = node.clone();
            async move {
                log.lock().unwrap().push((node, kind, Instant::now()));
                Ok(())
            }
        };
        if active {
            app.on_active(hook);
        } else {
            app.on_passive(hook);
        }
    }
    app.handle("who", |req| async move {
        Ok(Bytes::from(
            req.app
                .fencing_token()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        ))
    })
    .unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_leader_for_one_two_and_three_nodes_and_step_down() {
    let server = NatsServer::start();
    let urls = vec![server.url()];
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut nodes: Vec<NatsNode> = Vec::new();
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        nodes.push(
            start_node(&urls, "p1", n, vec![db_app(&log, n)], options(1))
                .await
                .unwrap(),
        );
        let refs: Vec<&NatsNode> = nodes.iter().collect();
        let (leader, _) = wait_leader(&refs, "db", Duration::from_secs(10)).await;
        // Stable for a while with i+1 nodes.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                common::leaders(&refs, "db"),
                vec![leader.clone()],
                "with {} nodes",
                i + 1
            );
        }
    }
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    let (first, _) = wait_leader(&refs, "db", Duration::from_secs(5)).await;
    let leader = refs
        .iter()
        .find(|n| n.platform.node_id().as_str() == first)
        .unwrap();
    let e1 = leader.app("db").fencing_token().unwrap();
    let t0 = Instant::now();
    leader.app("db").step_down().await.unwrap();
    let (second, at) = wait_leader(&refs, "db", Duration::from_secs(5)).await;
    assert_ne!(first, second);
    assert!(
        at - t0 < Duration::from_millis(500),
        "graceful handover took {:?}",
        at - t0
    );
    let next = refs
        .iter()
        .find(|n| n.platform.node_id().as_str() == second)
        .unwrap();
    let e2 = next.app("db").fencing_token().unwrap();
    assert!(e2 > e1, "epoch {e1} then {e2}");
    // Leader-routed RPC from any node reaches the new leader, which reports its epoch.
    let who = refs[0]
        .platform
        .api("db")
        .unwrap()
        .call_auto("who", "")
        .await
        .unwrap();
    assert_eq!(who, e2.to_string().as_bytes());
    // The first leader respects its cooldown: the second steps down, the third node must win
    // unless the cooldown has passed.
    next.app("db").step_down().await.unwrap();
    let (third, at3) = wait_leader(&refs, "db", Duration::from_secs(5)).await;
    if third == first {
        assert!(
            at3 - t0 >= options(1).election.cooldown,
            "cooldown not respected"
        );
    }
    // The audit stream over NATS holds the joins, acquisitions and step-downs, readable from
    // any node.
    let audit = refs[2].platform.audit();
    for n in &nodes {
        n.platform.audit().flush().await;
    }
    let page = audit
        .query(&cluster::core::audit::AuditFilter {
            category: Some("election".into()),
            app: Some("db".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let events: Vec<String> = page.entries.iter().map(|e| e.record.event()).collect();
    assert!(
        events.iter().filter(|e| *e == "election.acquired").count() >= 3
            && events.iter().filter(|e| *e == "election.stepdown").count() >= 2,
        "{events:?}"
    );
    let joins = audit
        .query(&cluster::core::audit::AuditFilter {
            category: Some("member".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(joins.entries.len(), 3, "{joins:?}");
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_rpc_events_and_kv_isolation_over_nats() {
    let server = NatsServer::start();
    let urls = vec![server.url()];
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let jobs = App::spread("jobs").unwrap();
        let me = n.to_owned();
        jobs.handle("whoami", move |_| {
            let me = me.clone();
            async move { Ok(Bytes::from(me)) }
        })
        .unwrap();
        jobs.handle("echo", |r| async move { Ok(r.payload) })
            .unwrap();
        nodes.push(
            start_node(
                &urls,
                "p2",
                n,
                vec![jobs, App::spread("other").unwrap()],
                options(1),
            )
            .await
            .unwrap(),
        );
    }
    let refs: Vec<&NatsNode> = nodes.iter().collect();
    wait_until("membership", Duration::from_secs(5), || {
        refs.iter().all(|n| n.platform.members().len() == 3)
    })
    .await;

    // Locks: 3 nodes x 5 tasks incrementing a KV counter under an app lock -> 15.
    refs[0].app("jobs").kv().put("counter", "0").await.unwrap();
    let mut tasks = Vec::new();
    for n in &refs {
        for _ in 0..5 {
            let app = n.app("jobs").clone();
            tasks.push(tokio::spawn(async move {
                let lock = app.lock("counter").unwrap();
                lock.lock(Duration::from_secs(30)).await.unwrap();
                let v: u32 = std::str::from_utf8(&app.kv().get("counter").await.unwrap().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                app.kv().put("counter", (v + 1).to_string()).await.unwrap();
                lock.unlock().await.unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        refs[1]
            .app("jobs")
            .kv()
            .get("counter")
            .await
            .unwrap()
            .unwrap(),
        "15"
    );

    // KV isolation.
    assert_eq!(
        refs[0].app("other").kv().get("counter").await.unwrap(),
        None
    );
    assert!(refs[0].app("other").kv().keys("").await.unwrap().is_empty());

    // RPC: echo, unknown method, broadcast returning early.
    let rpc = refs[0].app("jobs").rpc();
    let n2 = Routing::ToNode("n2".parse().unwrap());
    assert_eq!(rpc.call(n2.clone(), "echo", "hi").await.unwrap(), "hi");
    assert!(matches!(
        rpc.call(n2, "nope", "").await,
        Err(Error::UnknownMethod { .. })
    ));
    let t0 = Instant::now();
    let replies = rpc
        .broadcast("whoami", "", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(replies.len(), 3);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "broadcast returned after {:?}",
        t0.elapsed()
    );

    // Events: a burst of 1000 arrives complete and in order, with source metadata.
    let mut stream = refs[2].app("jobs").events().stream("tick.*").await.unwrap();
    let ev = refs[0].app("jobs").events();
    for i in 0..1000u32 {
        ev.publish("tick.n", i.to_string()).await.unwrap();
    }
    for i in 0..1000u32 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.data, i.to_string());
        assert_eq!(e.source_node.as_str(), "n1");
    }
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_node_id_is_refused_and_graceful_restart_is_immediate() {
    let server = NatsServer::start();
    let urls = vec![server.url()];
    let first = start_node(&urls, "p3", "n1", vec![], options(1))
        .await
        .unwrap();
    let err = start_node(&urls, "p3", "n1", vec![], options(1))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::NodeIdInUse(_)), "{err}");
    first.stop().await.unwrap();
    let again = start_node(&urls, "p3", "n1", vec![], options(1))
        .await
        .unwrap();
    again.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_by_the_proxy_stops_acting_before_another_node_leads() {
    let server = NatsServer::start();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let direct = vec![server.url()];
    let log = Arc::new(Mutex::new(Vec::new()));
    // n1 goes through the proxy and starts first so it leads.
    let n1 = start_node(
        &[proxy.url()],
        "p4",
        "n1",
        vec![db_app(&log, "n1")],
        options(1),
    )
    .await
    .unwrap();
    wait_leader(&[&n1], "db", Duration::from_secs(10)).await;
    let n2 = start_node(&direct, "p4", "n2", vec![db_app(&log, "n2")], options(1))
        .await
        .unwrap();
    let n3 = start_node(&direct, "p4", "n3", vec![db_app(&log, "n3")], options(1))
        .await
        .unwrap();
    let e1 = n1.app("db").fencing_token().unwrap();
    proxy.blackhole();
    let refs = [&n2, &n3];
    let (successor, _) = wait_leader(&refs, "db", Duration::from_secs(15)).await;
    wait_until("n1 ran on_passive", Duration::from_secs(5), || {
        log.lock()
            .unwrap()
            .iter()
            .any(|(n, k, _)| n == "n1" && *k == "passive")
    })
    .await;
    let log = log.lock().unwrap().clone();
    let n1_passive = log
        .iter()
        .find(|(n, k, _)| n == "n1" && *k == "passive")
        .unwrap()
        .2;
    let succ_active = log
        .iter()
        .find(|(n, k, _)| *n == successor && *k == "active")
        .unwrap()
        .2;
    assert!(
        n1_passive < succ_active,
        "the cut-off leader must stop before the successor starts"
    );
    assert!(!n1.app("db").is_leader());
    assert!(
        n1.app("db").check_epoch(e1).is_err(),
        "old token must be rejected"
    );
    proxy.heal();
    for n in [n2, n3] {
        n.stop().await.unwrap();
    }
    n1.platform.shutdown();
}
