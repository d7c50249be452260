//! The KV conformance suite against the in-memory store, on real and on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_memory::MemoryNetwork;
use cluster_testkit::conformance::kv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_suite_real_time() {
    kv::run_all(&MemoryNetwork::new()).await;
}

#[tokio::test(start_paused = true)]
async fn kv_suite_paused_time() {
    kv::run_all(&MemoryNetwork::new()).await;
}

#[tokio::test(start_paused = true)]
async fn kv_suite_paused_time_with_delays() {
    let net = MemoryNetwork::new();
    for n in 1..=40 {
        net.set_delay(
            &format!("client-{n}"),
            std::time::Duration::from_millis(n * 7),
        );
    }
    kv::run_all(&net).await;
}
