//! Three idle `cluster` daemons (fast profile, a Singleton and a Spread app, placement on) make
//! O(1) JetStream API calls per second per node and no failing ones (no get of a missing key),
//! by the server's own counters (`/jsz` `api.total`, `api.errors`). An operation count over a
//! fixed window, not a speed limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cluster_testkit::nats_server::NatsServer;
use common::{Daemon, Scratch, cli, config, wait_for};

const WINDOW: Duration = Duration::from_secs(10);
/// Generous bound of JetStream API calls per second per idle daemon.
const MAX_CALLS_PER_NODE_PER_S: f64 = 5.0;

fn api_counters(server: &NatsServer) -> (u64, u64) {
    let (status, body) = server.monitor_get("/jsz").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (
        v["api"]["total"].as_u64().unwrap(),
        v["api"]["errors"].as_u64().unwrap(),
    )
}

#[test]
fn three_idle_daemons_make_few_api_calls_and_none_that_fail() {
    let server = NatsServer::start();
    let dir = Scratch::new("idle");
    let cfg = dir.file("cluster.toml", &config("idle", &server.url()));
    let cfg_s = cfg.to_str().unwrap();
    let daemons: Vec<Daemon> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Daemon::start(&cfg, n, &dir.0))
        .collect();
    wait_for("3 members and a db leader", Duration::from_secs(30), || {
        let r = cli(&["--config", cfg_s, "--json", "status"]);
        if r.code != 0 {
            return None;
        }
        let v = r.json();
        let members = v["members"].as_array()?.len();
        let led = v["apps"]
            .as_array()?
            .iter()
            .any(|a| a["name"] == "db" && a["leader"].is_string());
        (members == 3 && led).then_some(())
    });
    // Let start-up settle (placement rounds, first renewals).
    std::thread::sleep(Duration::from_secs(3));
    let (total0, errors0) = api_counters(&server);
    std::thread::sleep(WINDOW);
    let (total1, errors1) = api_counters(&server);
    let per_node = (total1 - total0) as f64 / WINDOW.as_secs_f64() / daemons.len() as f64;
    let errors = errors1 - errors0;
    println!(
        "idle daemons: {per_node:.2} JetStream API calls/s per node ({} in {WINDOW:?}), \
         API errors +{errors}",
        total1 - total0
    );
    assert!(
        per_node <= MAX_CALLS_PER_NODE_PER_S,
        "{per_node:.2} JetStream API calls/s per idle daemon (bound {MAX_CALLS_PER_NODE_PER_S})"
    );
    assert_eq!(errors, 0, "failing JetStream API calls while idle");
    drop(daemons);
}
