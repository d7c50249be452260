//! The election and lock conformance suites over the in-memory KV store, on paused time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cluster_memory::MemoryNetwork;
use cluster_testkit::conformance::election::{self, LeaseElectionFactory, suite_timing};
use cluster_testkit::conformance::lock::{self, KvLockFactory};

#[tokio::test(start_paused = true)]
async fn election_suite_paused_time() {
    election::run_all(&LeaseElectionFactory::new(
        MemoryNetwork::new(),
        suite_timing(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_suite_real_time() {
    election::run_all(&LeaseElectionFactory::new(
        MemoryNetwork::new(),
        suite_timing(),
    ))
    .await;
}

#[tokio::test(start_paused = true)]
async fn lock_suite_paused_time() {
    lock::run_all(&KvLockFactory::new(MemoryNetwork::new())).await;
}
