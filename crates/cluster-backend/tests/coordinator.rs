//! The coordinator over a real process backend: the first health check right after the start,
//! restarts by policy with exactly one monitor, giving up, clear activation failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster_backend::health::HealthProbe;
use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_backend::{BackendFailure, BackendOptions, BackendResource, RestartPolicy};
use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_core::backend::Backend;
use common::{eventually, pid_alive, scratch};
use tokio::sync::mpsc;

fn fast_options() -> BackendOptions {
    BackendOptions {
        health_interval: Duration::from_millis(50),
        health_timeout: Duration::from_secs(2),
        failure_threshold: 2,
        start_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(5),
        startup_backoff: Duration::from_millis(10),
        min_uptime: Duration::from_millis(200),
        restart: RestartPolicy {
            max_restarts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            cooldown: Duration::from_secs(600),
        },
    }
}

fn sleeper() -> Arc<ProcessBackend> {
    Arc::new(ProcessBackend::new(ProcessConfig::new("sleep", ["1000"])))
}

#[tokio::test]
async fn activation_returns_once_healthy_without_waiting_an_interval() {
    let bb = common::busybox();
    let dir = scratch("coord-httpd");
    std::fs::write(dir.join("ok"), "ok").unwrap();
    let port = common::free_port();
    let mut config = ProcessConfig::new(
        bb.to_string_lossy(),
        [
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            &dir.to_string_lossy(),
        ],
    );
    config.health = HealthProbe::Http(format!("http://127.0.0.1:{port}/ok"));
    let backend = Arc::new(ProcessBackend::new(config));
    // An interval far longer than the test's bound: activation must not wait for it.
    let options = BackendOptions {
        health_interval: Duration::from_secs(3600),
        ..fast_options()
    };
    let resource = BackendResource::new(backend.clone(), options);
    tokio::time::timeout(Duration::from_secs(60), resource.activate(Epoch(3)))
        .await
        .expect("activation waited for a health interval")
        .unwrap();
    backend.health().await.unwrap();
    let stats = resource.stats();
    assert_eq!(
        (stats.state, stats.activations, stats.monitors),
        ("running", 1, 1)
    );
    // Idempotent for the same term: no second process, no second monitor.
    let pid = backend.pid().unwrap();
    resource.activate(Epoch(3)).await.unwrap();
    assert_eq!(backend.pid(), Some(pid));
    assert_eq!(resource.stats().monitors, 1);
    resource.deactivate().await.unwrap();
    assert!(!pid_alive(pid));
    assert_eq!(resource.stats().monitors, 0);
    assert_eq!(resource.stats().state, "stopped");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_older_term_is_fenced_and_leaves_the_run_of_the_newer_one() {
    let backend = sleeper();
    let resource = BackendResource::new(backend.clone(), fast_options());
    resource.activate(Epoch(9)).await.unwrap();
    let pid = backend.pid().unwrap();
    let err = resource.activate(Epoch(8)).await.unwrap_err();
    assert!(
        matches!(
            err,
            cluster_core::Error::Fenced {
                presented: Epoch(8),
                current: Epoch(9)
            }
        ),
        "{err}"
    );
    assert_eq!(resource.stats().activations, 1, "term 8 started nothing");
    eventually("the monitor of term 9 runs", Duration::from_secs(5), || {
        resource.stats().monitors == 1
    })
    .await;
    assert_eq!(backend.pid(), Some(pid), "the run of term 9 is untouched");
    // A newer term takes over.
    resource.activate(Epoch(10)).await.unwrap();
    assert_eq!(resource.stats().activations, 2);
    resource.deactivate().await.unwrap();
    assert!(!pid_alive(pid));
}

#[tokio::test]
async fn crashes_are_restarted_by_policy_with_one_monitor_then_it_gives_up() {
    let backend = sleeper();
    let (tx, mut failures) = mpsc::unbounded_channel::<BackendFailure>();
    let resource = BackendResource::new(backend.clone(), fast_options()).on_failure(move |f| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(f);
        })
    });
    resource.activate(Epoch(5)).await.unwrap();
    for restart in 1..=3u64 {
        let pid = backend.pid().unwrap();
        // SAFETY-free kill through the shell: an external crash of the service.
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        eventually("the backend was restarted", Duration::from_secs(10), || {
            backend.pid().is_some_and(|p| p != pid) && resource.stats().state == "running"
        })
        .await;
        let stats = resource.stats();
        assert_eq!(stats.restarts, restart);
        assert_eq!(
            stats.monitors, 1,
            "exactly one monitor after {restart} restarts"
        );
    }
    assert_eq!(backend.status().await.unwrap().restarts, 3);
    let pid = backend.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let failure = tokio::time::timeout(Duration::from_secs(10), failures.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failure.epoch, Epoch(5));
    assert!(
        failure.reason.contains("after 3 restarts"),
        "{}",
        failure.reason
    );
    let stats = resource.stats();
    assert_eq!(
        (stats.give_ups, stats.monitors, stats.state),
        (1, 0, "failed")
    );
    assert_eq!(backend.pid(), None, "a given-up backend is stopped");
    resource.deactivate().await.unwrap();
}

#[tokio::test]
async fn a_service_that_never_becomes_healthy_fails_activation_and_is_stopped() {
    let port = common::free_port();
    let mut config = ProcessConfig::new("sleep", ["1000"]);
    config.health = HealthProbe::Tcp(format!("127.0.0.1:{port}"));
    let backend = Arc::new(ProcessBackend::new(config));
    let options = BackendOptions {
        start_timeout: Duration::from_millis(500),
        ..fast_options()
    };
    let resource = BackendResource::new(backend.clone(), options);
    let err = resource.activate(Epoch(1)).await.unwrap_err();
    assert!(err.to_string().contains("not healthy within"), "{err}");
    assert_eq!(backend.pid(), None);
    assert_eq!(resource.stats().monitors, 0);
}

#[tokio::test]
async fn a_service_that_exits_at_once_fails_activation_with_its_output() {
    let backend = Arc::new(ProcessBackend::new(ProcessConfig::new(
        "sh",
        ["-c", "echo boom: config missing; exit 2"],
    )));
    let resource = BackendResource::new(backend.clone(), fast_options());
    let err = resource.activate(Epoch(1)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("stopped right after starting"), "{msg}");
    assert!(msg.contains("exit status: 2"), "{msg}");
    assert!(msg.contains("boom: config missing"), "{msg}");
}

#[tokio::test]
async fn a_missing_binary_fails_activation_clearly() {
    let backend = Arc::new(ProcessBackend::new(ProcessConfig::new(
        "/nonexistent/server",
        Vec::<String>::new(),
    )));
    let resource = BackendResource::new(backend, fast_options());
    let err = resource.activate(Epoch(1)).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    assert!(err.to_string().contains("/nonexistent/server"), "{err}");
}
