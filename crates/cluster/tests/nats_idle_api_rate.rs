//! Watch, don't poll: an idle 3-node platform (fast profile, placement on, a Singleton and a
//! Spread app) makes O(1) JetStream API calls per second per node and asks for no key that does
//! not exist (the server's API error counter stays flat).
//!
//! The counts come from the server's monitoring endpoint (`/jsz`: `api.total`, `api.errors`);
//! a raw client subscribed to `$JS.API.>` breaks them down by request for the failure message.
//! These are operation counts over a fixed window, not a speed limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::placement::planner;
use cluster::{App, Mode};
use cluster_testkit::nats_server::NatsServer;
use common::{NatsNode, connect_options, options, wait_until};
use futures::StreamExt;

/// Idle window measured (seconds); `CLUSTER_IDLE_WINDOW_S` overrides it for a longer
/// benchmark run (the mirror's 30 s safety reload falls outside the default window).
fn window() -> Duration {
    let secs = std::env::var("CLUSTER_IDLE_WINDOW_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}
/// Generous bound of JetStream API calls per second per idle node.
const MAX_CALLS_PER_NODE_PER_S: f64 = 5.0;

async fn start(url: &str, node: &str) -> NatsNode {
    let urls = vec![url.to_owned()];
    let conn = cluster::nats::connect(connect_options(&urls, node))
        .await
        .unwrap();
    let p = cluster::nats::platform(&conn, "idle", node, 1)
        .unwrap()
        .options(options(1))
        .planner(planner())
        .build()
        .unwrap();
    let apps = vec![
        App::singleton("db").unwrap(),
        App::new("web", Mode::Spread).unwrap(),
    ];
    common::run_node(conn, p, apps).await.unwrap()
}

/// `(api.total, api.errors)` of the server.
fn api_counters(server: &NatsServer) -> (u64, u64) {
    let (status, body) = server.monitor_get("/jsz").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (
        v["api"]["total"].as_u64().unwrap(),
        v["api"]["errors"].as_u64().unwrap(),
    )
}

/// JetStream API requests seen on `$JS.API.>`, by subject (and requested key for gets).
async fn spy(
    url: &str,
) -> (
    Arc<Mutex<BTreeMap<String, u64>>>,
    tokio::task::JoinHandle<()>,
) {
    let client = async_nats::connect(url).await.unwrap();
    let mut sub = client.subscribe("$JS.API.>").await.unwrap();
    client.flush().await.unwrap();
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let _client = client;
        while let Some(msg) = sub.next().await {
            let mut what = msg.subject.to_string();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                && let Some(key) = v["last_by_subj"].as_str()
            {
                what = format!("{what} {key}");
            }
            *s.lock().unwrap().entry(what).or_default() += 1;
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_platform_makes_few_api_calls_and_no_gets_of_missing_keys() {
    let server = NatsServer::start();
    let url = server.url();
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(start(&url, n).await);
    }
    wait_until("db has a leader", Duration::from_secs(20), || {
        nodes.iter().filter(|n| n.app("db").is_leader()).count() == 1
    })
    .await;
    wait_until("web runs everywhere", Duration::from_secs(20), || {
        nodes.iter().all(|n| n.app("web").is_running())
    })
    .await;
    // Let start-up settle (placement rounds, first renewals).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (seen, spy_task) = spy(&url).await;
    let window = window();
    let (total0, errors0) = api_counters(&server);
    tokio::time::sleep(window).await;
    let (total1, errors1) = api_counters(&server);
    spy_task.abort();

    let rate = |n: u64| n as f64 / window.as_secs_f64() / nodes.len() as f64;
    let per_node = rate(total1 - total0);
    let errors = errors1 - errors0;
    let requests: u64 = seen.lock().unwrap().values().sum();
    let requests_per_node = rate(requests);
    let mut breakdown: Vec<(u64, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (*v, k.clone()))
        .collect();
    breakdown.sort_by(|a, b| b.cmp(a));
    let report = breakdown
        .iter()
        .take(15)
        .map(|(n, k)| format!("  {n:5} {k}"))
        .collect::<Vec<_>>()
        .join("\n");
    println!(
        "idle API calls: {per_node:.2}/s per node by the server's counter ({} in {window:?}, \
         3 nodes), {requests_per_node:.2}/s per node seen on $JS.API.> ({requests}), \
         API errors +{errors}\n{report}",
        total1 - total0
    );
    for (what, rate) in [("counted", per_node), ("seen", requests_per_node)] {
        assert!(
            rate <= MAX_CALLS_PER_NODE_PER_S,
            "{rate:.2} JetStream API calls/s per idle node {what} (bound \
             {MAX_CALLS_PER_NODE_PER_S}):\n{report}"
        );
    }
    assert_eq!(errors, 0, "gets of missing keys while idle:\n{report}");

    for n in nodes {
        n.stop().await.unwrap();
    }
}
