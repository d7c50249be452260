//! The systemd backend against a real systemd user manager, run in private mount and PID
//! namespaces (cluster-testkit's `systemd_user`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cluster_backend::systemd::{SystemdBackend, SystemdBus, SystemdConfig};
use cluster_backend::{BackendOptions, BackendResource, RestartPolicy};
use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_core::backend::{Backend, BackendState};
use cluster_testkit::systemd_user::UserManager;

/// The backend's configuration for a unit of the test manager.
trait UnitConfig {
    fn config(&self, unit: &str) -> SystemdConfig;
}

impl UnitConfig for UserManager {
    fn config(&self, unit: &str) -> SystemdConfig {
        let mut c = SystemdConfig::new(unit);
        c.bus = SystemdBus::Address(self.address());
        c.start_timeout = Duration::from_secs(20);
        c.stop_timeout = Duration::from_secs(20);
        c
    }
}

async fn wait_state(
    backend: &SystemdBackend,
    want: impl Fn(&BackendState) -> bool,
) -> BackendState {
    let mut last = BackendState::Stopped;
    for _ in 0..1000 {
        last = backend.status().await.unwrap().state;
        if want(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("state not reached; last {last:?}");
}

#[tokio::test]
async fn unit_lifecycle_with_dependency_health_endpoint_and_idempotent_start() {
    let m = UserManager::start("sd-life").await;
    let www = common::scratch("sd-www");
    std::fs::write(www.join("ok"), "ok").unwrap();
    let port = common::free_port();
    let bb = common::busybox();
    m.unit(
        "cltest-dep.service",
        "[Service]\nExecStart=/bin/sleep 1000\n",
    )
    .await;
    m.unit(
        "cltest-web.service",
        &format!(
            "[Service]\nExecStart={} httpd -f -p 127.0.0.1:{port} -h {}\n",
            bb.display(),
            www.display()
        ),
    )
    .await;
    let mut config = m.config("cltest-web");
    config.dependencies = vec!["cltest-dep.service".into()];
    config.health_endpoint = Some(format!("http://127.0.0.1:{port}/ok"));
    let backend = SystemdBackend::new(config);
    let dep = SystemdBackend::new(m.config("cltest-dep.service"));

    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
    backend.start(Epoch(1)).await.unwrap();
    assert_eq!(
        dep.status().await.unwrap().state,
        BackendState::Running,
        "dependency started"
    );
    let status = backend.status().await.unwrap();
    assert_eq!(status.state, BackendState::Running);
    let id = status.id.unwrap();
    assert!(id.starts_with("cltest-web.service (pid "), "{id}");
    backend.start(Epoch(1)).await.unwrap();
    assert_eq!(
        backend.status().await.unwrap().id.unwrap(),
        id,
        "start is idempotent"
    );
    let mut healthy = false;
    for _ in 0..500 {
        if backend.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(healthy, "the unit's endpoint never answered");
    // No journald in the namespace: the tail is empty rather than an error.
    let _ = backend.logs_tail(5).await;

    backend.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
    assert!(backend.health().await.is_err());
    backend.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        dep.status().await.unwrap().state,
        BackendState::Running,
        "dependencies stay"
    );
    std::fs::remove_dir_all(www).unwrap();
}

#[tokio::test]
async fn missing_and_failing_units_are_clear_errors_and_a_crash_is_seen() {
    let m = UserManager::start("sd-bad").await;
    let err = SystemdBackend::new(m.config("cltest-nothing"))
        .start(Epoch(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_argument", "{err}");
    assert!(err.to_string().contains("not found"), "{err}");

    m.unit(
        "cltest-noexec.service",
        "[Service]\nType=exec\nExecStart=/nonexistent/server\n",
    )
    .await;
    let err = SystemdBackend::new(m.config("cltest-noexec"))
        .start(Epoch(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("job failed"), "{err}");

    m.unit(
        "cltest-crash.service",
        "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 3'\n",
    )
    .await;
    let crash = SystemdBackend::new(m.config("cltest-crash"));
    crash.start(Epoch(1)).await.unwrap();
    let state = wait_state(&crash, |s| matches!(s, BackendState::Failed(_))).await;
    assert!(
        matches!(state, BackendState::Failed(ref r) if r.contains("failed")),
        "{state:?}"
    );
    crash.stop(Duration::from_secs(5)).await.unwrap();

    let unreachable = SystemdConfig {
        bus: SystemdBus::Address("unix:path=/nonexistent/bus".into()),
        ..m.config("x")
    };
    let err = SystemdBackend::new(unreachable).status().await.unwrap_err();
    assert_eq!(err.kind(), "unavailable", "{err}");
}

#[tokio::test]
async fn a_unit_ignoring_sigterm_is_killed_after_the_stop_timeout() {
    let m = UserManager::start("sd-kill").await;
    m.unit(
        "cltest-stubborn.service",
        "[Service]\nExecStart=/bin/sh -c \"trap '' TERM; while true; do sleep 0.1; done\"\n\
         TimeoutStopSec=300\n",
    )
    .await;
    let backend = SystemdBackend::new(m.config("cltest-stubborn"));
    backend.start(Epoch(1)).await.unwrap();
    backend.stop(Duration::from_millis(500)).await.unwrap();
    let state = backend.status().await.unwrap().state;
    assert!(
        matches!(state, BackendState::Stopped | BackendState::Failed(_)),
        "{state:?}"
    );
}

#[tokio::test]
async fn the_coordinator_restarts_a_killed_unit() {
    let m = UserManager::start("sd-coord").await;
    m.unit(
        "cltest-svc.service",
        "[Service]\nExecStart=/bin/sleep 1000\n",
    )
    .await;
    let backend = Arc::new(SystemdBackend::new(m.config("cltest-svc")));
    let options = BackendOptions {
        health_interval: Duration::from_millis(100),
        failure_threshold: 1,
        restart: RestartPolicy {
            max_restarts: 2,
            backoff: Duration::from_millis(10),
            ..RestartPolicy::default()
        },
        ..m.config("cltest-svc").backend_options()
    };
    let resource = BackendResource::new(backend.clone(), options);
    resource.activate(Epoch(2)).await.unwrap();
    let first = backend.status().await.unwrap().id.unwrap();
    m.kill_unit("cltest-svc.service", 9).await;
    common::eventually("restarted", Duration::from_secs(30), || {
        resource.stats().restarts == 1 && resource.stats().state == "running"
    })
    .await;
    let second = backend.status().await.unwrap().id.unwrap();
    assert_ne!(first, second, "a new main process runs");
    assert_eq!(resource.stats().monitors, 1);
    resource.deactivate().await.unwrap();
    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
}

/// A state whose leadership deadline is `after` from now, for term 1.
fn leading_for(after: Duration) -> cluster_core::election::ElectionState {
    cluster_core::election::ElectionState {
        leading: Some(cluster_core::election::Leadership {
            epoch: Epoch(1),
            deadline: tokio::time::Instant::now() + after,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_deadline_guard_stops_the_unit_when_the_deadline_passes_without_renewal() {
    use cluster_core::DeadlineWatch;
    let m = UserManager::start("sd-deadline").await;
    m.unit(
        "cltest-guarded.service",
        "[Service]\nExecStart=/bin/sleep 1000\n",
    )
    .await;
    let backend = SystemdBackend::new(m.config("cltest-guarded"));
    let (tx, rx) = tokio::sync::watch::channel(leading_for(Duration::from_millis(400)));
    backend.follow_deadline(DeadlineWatch::new(rx, Duration::from_millis(450)));
    // Renewals every 100 ms (also while the start is in progress) keep it running.
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (r, tx2) = (renewing.clone(), tx.clone());
    let renewer = tokio::spawn(async move {
        while r.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx2.send_replace(leading_for(Duration::from_millis(400)));
        }
    });
    backend.start(Epoch(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(backend.status().await.unwrap().state, BackendState::Running);
    renewing.store(false, std::sync::atomic::Ordering::SeqCst);
    renewer.await.unwrap();
    drop(tx);
    // No more renewals (the daemon "hangs"): the guard stops the unit via busctl.
    let t0 = std::time::Instant::now();
    wait_state(&backend, |s| !s.is_up()).await;
    let took = t0.elapsed();
    eprintln!(
        "[guard] unit stopped {} ms after the last renewal (deadline 400 ms)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(300),
        "fired before the deadline ({took:?})"
    );
    backend.stop(Duration::from_secs(5)).await.unwrap();
}
