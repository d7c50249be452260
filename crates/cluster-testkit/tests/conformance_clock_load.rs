//! The clock and load-probe conformance suites against the core's implementations:
//! `TokioClock` (real and paused time) and `FixedLoad`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cluster_core::FixedLoad;
use cluster_core::TokioClock;
use cluster_testkit::conformance::{clock, load};

#[tokio::test]
async fn tokio_clock_real_time() {
    clock::run_all(&TokioClock).await;
}

#[tokio::test(start_paused = true)]
async fn tokio_clock_paused_time() {
    clock::run_all(&TokioClock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_load() {
    let probe = Arc::new(FixedLoad::new(None));
    load::run_all(probe.clone()).await;
    load::reports_its_source(probe.as_ref(), &|l| probe.set(l));
    probe.set(Some(cluster_core::NodeLoad::from_fractions(1.5, 0.5, 0.5)));
    load::run_all(probe).await;
}
