//! RPC between in-memory nodes: echo, errors, unknown methods, timeouts, broadcast, middleware,
//! leader routing and cross-app calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_core::Error;
use cluster_runtime::App;
use cluster_runtime::{PlatformOptions, Routing, json_response};
use cluster_testkit::scenario::SimCluster;
use tokio::time::Instant;

fn echo_app(name: &str, node: &str, log: Option<Arc<Mutex<Vec<String>>>>) -> App {
    let app = App::spread(name).unwrap();
    let node = node.to_owned();
    app.handle("echo", |req| async move { Ok(req.payload) })
        .unwrap();
    app.handle("whoami", move |_req| {
        let node = node.clone();
        async move { Ok(Bytes::from(node)) }
    })
    .unwrap();
    app.handle(
        "fail",
        |_req| async move { Err("database is on fire".into()) },
    )
    .unwrap();
    app.handle("slow", |_req| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(Bytes::new())
    })
    .unwrap();
    app.handle("sum", |req| async move {
        let v: Vec<i64> = req.json()?;
        json_response(&v.iter().sum::<i64>())
    })
    .unwrap();
    if let Some(log) = log {
        for tag in ["outer", "inner"] {
            let log = log.clone();
            app.use_middleware(move |req, next| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!("{tag} in"));
                    let out = next.run(req).await;
                    log.lock().unwrap().push(format!("{tag} out"));
                    out
                }
            });
        }
    }
    app
}

async fn cluster_with(n: usize, log: Option<Arc<Mutex<Vec<String>>>>) -> SimCluster {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for i in 1..=n {
        let node = format!("n{i}");
        let app = echo_app("svc", &node, log.clone());
        cluster.start_node(&node, vec![app]).await.unwrap();
    }
    cluster
}

#[tokio::test(start_paused = true)]
async fn echo_error_unknown_method_and_timeout() {
    let cluster = cluster_with(2, None).await;
    let rpc = cluster.node("n1").app("svc").rpc();
    let to_n2 = Routing::ToNode("n2".parse().unwrap());
    assert_eq!(rpc.call(to_n2.clone(), "echo", "hi").await.unwrap(), "hi");
    assert_eq!(rpc.call(to_n2.clone(), "whoami", "").await.unwrap(), "n2");
    let sum: i64 = rpc
        .call_json(to_n2.clone(), "sum", &vec![1, 2, 3])
        .await
        .unwrap();
    assert_eq!(sum, 6);
    match rpc.call(to_n2.clone(), "fail", "").await {
        Err(Error::Handler(m)) => assert_eq!(m, "database is on fire"),
        other => panic!("expected handler error, got {other:?}"),
    }
    match rpc.call(to_n2.clone(), "nope", "").await {
        Err(Error::UnknownMethod { method, app }) => {
            assert_eq!((method.as_str(), app.as_str()), ("nope", "svc"))
        }
        other => panic!("expected unknown method, got {other:?}"),
    }
    let started = Instant::now();
    let err = rpc
        .call_with_timeout(to_n2.clone(), "slow", "", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(400));
    let err = rpc
        .call(Routing::ToNode("n9".parse().unwrap()), "echo", "")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NodeNotFound(_)), "{err}");
    assert!(matches!(
        rpc.call(to_n2.clone(), "bad.name", "").await,
        Err(Error::InvalidId(_))
    ));
    let big = vec![0u8; 2 * 1024 * 1024];
    assert!(matches!(
        rpc.call(to_n2, "echo", big).await,
        Err(Error::PayloadTooLarge { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn to_any_spreads_over_instances() {
    let cluster = cluster_with(3, None).await;
    let rpc = cluster.node("n1").app("svc").rpc();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let who = rpc.call(Routing::ToAny, "whoami", "").await.unwrap();
        seen.insert(String::from_utf8(who.to_vec()).unwrap());
    }
    assert_eq!(
        seen.len(),
        3,
        "queue group must reach every instance: {seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn broadcast_gathers_every_member_and_returns_early() {
    let cluster = cluster_with(3, None).await;
    cluster_testkit::scenario::wait_until("membership", Duration::from_secs(2), || {
        cluster.node("n1").platform.members().len() == 3
    })
    .await;
    let rpc = cluster.node("n1").app("svc").rpc();
    let started = Instant::now();
    let replies = rpc
        .broadcast("whoami", "", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "broadcast must return when all members answered, took {:?}",
        started.elapsed()
    );
    let mut nodes: Vec<String> = replies
        .iter()
        .map(|r| String::from_utf8(r.result.clone().unwrap().to_vec()).unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2", "n3"]);
}

#[tokio::test(start_paused = true)]
async fn middleware_runs_outer_to_inner_and_back() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let cluster = cluster_with(1, Some(log.clone())).await;
    let rpc = cluster.node("n1").app("svc").rpc();
    rpc.call(Routing::ToNode("n1".parse().unwrap()), "echo", "x")
        .await
        .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec!["outer in", "inner in", "inner out", "outer out"]
    );
}

#[tokio::test(start_paused = true)]
async fn leader_routing_and_cross_app_api() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        let node = n.to_owned();
        db.handle("who", move |req| {
            let node = node.clone();
            async move {
                // Leader-routed requests only ever reach the leader.
                if !req.app.is_leader() {
                    return Err("served by a non-leader".into());
                }
                Ok(Bytes::from(node))
            }
        })
        .unwrap();
        cluster
            .start_node(n, vec![db, App::spread("api").unwrap()])
            .await
            .unwrap();
    }
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    // From another app on any node, Singleton apps route to the leader by default.
    for n in ["n1", "n2", "n3"] {
        let api = cluster.node(n).platform.api("db").unwrap();
        assert_eq!(api.default_routing().unwrap(), Routing::ToLeader);
        let who = api.call_auto("who", "").await.unwrap();
        assert_eq!(who, leader.as_bytes());
    }
    // Node-routed calls run on that node whatever its role.
    let standby = cluster.names().into_iter().find(|n| *n != leader).unwrap();
    let rpc = cluster.node("n1").app("db").rpc();
    let reply = rpc
        .call(Routing::ToNode(standby.parse().unwrap()), "who", "")
        .await;
    assert_eq!(reply, Err(Error::Handler("served by a non-leader".into())));
    // Unknown apps give a clear error.
    let err = cluster
        .node("n1")
        .platform
        .api("nope")
        .unwrap()
        .call_auto("x", "")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AppNotFound(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn leader_routing_refuses_on_standby_with_a_hint() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2"] {
        let db = App::singleton("db").unwrap();
        db.handle(
            "ping",
            |_req| async move { Ok(Bytes::from_static(b"pong")) },
        )
        .unwrap();
        cluster.start_node(n, vec![db]).await.unwrap();
    }
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let standby = if leader == "n1" { "n2" } else { "n1" };
    // A raw leader-routed request straight to the standby's subject.
    let transport = cluster.network.transport("probe");
    let meta = cluster_core::wire::rpc::RequestMeta::new(
        "ping".parse().unwrap(),
        "probe".parse().unwrap(),
        None,
        Some(&Routing::ToLeader),
        Duration::from_secs(1),
    );
    let names = cluster_core::wire::names::Names::new("prod".parse().unwrap());
    let subject = names.rpc_node(&"db".parse().unwrap(), &standby.parse().unwrap());
    use cluster_core::Transport;
    let reply = transport
        .request(
            &subject,
            meta.to_headers(),
            Bytes::new(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    match cluster_core::wire::rpc::parse_reply(&reply.headers) {
        Err(Error::NotLeader {
            leader: Some(l),
            epoch: Some(_),
        }) => assert_eq!(l.as_str(), leader),
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
    // And the client follows that hint transparently.
    let rpc = cluster.node(standby).app("db").rpc();
    assert_eq!(
        rpc.call(Routing::ToLeader, "ping", "").await.unwrap(),
        "pong"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_requests_are_rejected_and_counted() {
    let cluster = cluster_with(1, None).await;
    let transport = cluster.network.transport("probe");
    use cluster_core::{Headers, Transport};
    let subject = "cluster.prod.app.svc.rpc.n1";
    let reply = transport
        .request(
            subject,
            Headers::new().with("Cluster-Version", "99"),
            Bytes::from_static(b"x"),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let err = cluster_core::wire::rpc::parse_reply(&reply.headers).unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    // A request without a reply subject is dropped and counted too.
    transport
        .publish(subject, None, Headers::new(), Bytes::new())
        .await
        .unwrap();
    cluster_testkit::scenario::wait_until("both counted", Duration::from_secs(1), || {
        cluster.node("n1").platform.stats().malformed() == 2
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn leader_routing_follows_a_not_leader_hint_when_the_callers_view_is_stale() {
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    for n in ["n1", "n2", "n3"] {
        let db = App::singleton("db").unwrap();
        let node = n.to_owned();
        db.handle("who", move |req| {
            let node = node.clone();
            async move {
                if !req.app.is_leader() {
                    return Err("served by a non-leader".into());
                }
                Ok(Bytes::from(node))
            }
        })
        .unwrap();
        cluster.start_node(n, vec![db]).await.unwrap();
    }
    let (old, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    let others: Vec<String> = cluster.names().into_iter().filter(|n| *n != old).collect();
    let (caller, new) = (others[0].clone(), others[1].clone());
    // The caller hears about the hand-over 2 s late (its watch events and messages are delayed).
    cluster.network.set_delay(&caller, Duration::from_secs(2));
    cluster
        .node(&old)
        .app("db")
        .hand_off(&new.parse().unwrap())
        .await
        .unwrap();
    let (leader, _) = cluster.wait_leader("db", Duration::from_secs(5)).await;
    assert_eq!(leader, new);
    assert_eq!(
        cluster
            .node(&caller)
            .app("db")
            .leader()
            .map(|l| l.to_string()),
        Some(old.clone()),
        "the caller's view must still be stale for this test to mean anything"
    );
    // The request goes to the old leader, which answers NotLeader naming the new one; the
    // client follows that hint once and gets the new leader's answer.
    let reply = cluster
        .node(&caller)
        .app("db")
        .rpc()
        .call_with_timeout(Routing::ToLeader, "who", "", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reply, new.as_bytes());
}
