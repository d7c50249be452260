//! `gc_backend_state{app,state}` and `gc_backend_restarts_total{app}` follow the coordinator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster_backend::metrics::{BACKEND_RESTARTS, BACKEND_STATE};
use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_backend::{BackendOptions, BackendResource, RestartPolicy};
use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_runtime::App;
use cluster_testkit::metrics::RecordedMetrics;
use common::eventually;

#[tokio::test]
async fn backend_metrics_move() {
    let metrics = RecordedMetrics::install();
    let backend = Arc::new(ProcessBackend::new(ProcessConfig::new("sleep", ["1000"])));
    let app = App::spread("metered").unwrap();
    let options = BackendOptions {
        health_interval: Duration::from_millis(50),
        restart: RestartPolicy {
            max_restarts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            cooldown: Duration::from_secs(600),
        },
        ..BackendOptions::default()
    };
    let resource = BackendResource::new(backend.clone(), options).with_app(&app);
    resource.activate(Epoch(1)).await.unwrap();
    let state = |s: &str| {
        metrics
            .find(BACKEND_STATE, &[("app", "metered"), ("state", s)])
            .first()
            .map(|(_, v)| v.gauge)
    };
    assert_eq!(state("running"), Some(1.0));
    assert_eq!(state("stopped"), Some(0.0));
    let pid = backend.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    eventually("the backend was restarted", Duration::from_secs(10), || {
        backend.pid().is_some_and(|p| p != pid) && resource.stats().state == "running"
    })
    .await;
    let restarts = metrics.find(BACKEND_RESTARTS, &[("app", "metered")]);
    assert_eq!(restarts.len(), 1);
    assert_eq!(restarts[0].1.counter, 1);
    resource.deactivate().await.unwrap();
    assert_eq!(state("stopped"), Some(1.0));
    assert_eq!(state("running"), Some(0.0));
}
