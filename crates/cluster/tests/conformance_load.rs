//! The load-probe conformance suite against the facade's `/proc` probe (Linux: it must know
//! the load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cluster::core::LoadProbe;
use cluster::load::ProcLoadProbe;
use cluster_testkit::conformance::load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_suite_proc_probe() {
    assert!(
        ProcLoadProbe.sample().is_some(),
        "on Linux /proc gives a load"
    );
    load::run_all(Arc::new(ProcLoadProbe)).await;
}
