//! The transport conformance suite against the in-memory network, on real and on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_memory::MemoryNetwork;
use cluster_testkit::conformance::transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_suite_real_time() {
    transport::run_all(&MemoryNetwork::new()).await;
}

#[tokio::test(start_paused = true)]
async fn transport_suite_paused_time() {
    transport::run_all(&MemoryNetwork::new()).await;
}

#[tokio::test(start_paused = true)]
async fn transport_suite_paused_time_with_delays() {
    let net = MemoryNetwork::new();
    for n in 1..=40 {
        net.set_delay(
            &format!("client-{n}"),
            std::time::Duration::from_millis(n * 3),
        );
    }
    transport::run_all(&net).await;
}
