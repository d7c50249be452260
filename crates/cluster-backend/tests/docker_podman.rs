//! The Docker backend against podman's Docker-compatible API (a real engine, a local image
//! built from Debian's busybox-static, no registry).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster_backend::docker::{DockerBackend, DockerConfig, DockerResources, EPOCH_LABEL};
use cluster_backend::health::HealthProbe;
use cluster_backend::{BackendOptions, BackendResource, RestartPolicy};
use cluster_core::ActiveResource;
use cluster_core::Epoch;
use cluster_core::backend::{Backend, BackendState};
use common::podman::{IMAGE, Podman};

/// `extra_args` given as `docker run` options reach the engine as container configuration:
/// the environment, a bind mount, a capability, the network, the user and resource limits;
/// an unsupported option fails `start` before anything is created.
#[tokio::test]
async fn extra_args_become_container_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let mut podman = Podman::start("docker-args");
    let name = podman.name("args");
    let data = common::scratch("docker-args-data");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("marker"), "marker-from-volume\n").unwrap();
    std::fs::set_permissions(data.join("marker"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = DockerConfig::new(IMAGE, &name);
    config.host = Some(podman.socket());
    config.stop_timeout = Duration::from_secs(1);
    config.cmd = Some(vec![
        "sh".into(),
        "-c".into(),
        "cat /data/marker; env; exec sleep 60".into(),
    ]);
    config.extra_args = [
        "-e",
        "FROM_ARGS=yes",
        "-v",
        &format!("{}:/data:ro", data.display()),
        "--cap-add",
        "NET_ADMIN",
        "--network=host",
        "--user",
        "1234:1234",
        "--memory",
        "48m",
        "--cpus",
        "0.5",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let backend = DockerBackend::new(config.clone());
    backend.start(Epoch(4)).await.unwrap();
    let mut logs = Vec::new();
    for _ in 0..250 {
        logs = backend.logs_tail(50).await;
        if logs.iter().any(|l| l.contains("FROM_ARGS=yes")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        logs.iter().any(|l| l.contains("marker-from-volume")),
        "the bind mount is missing: {logs:?}"
    );
    assert!(logs.iter().any(|l| l == "FROM_ARGS=yes"), "{logs:?}");
    let inspect = podman
        .client()
        .await
        .inspect_container(&name, None)
        .await
        .unwrap();
    let cfg = inspect.config.unwrap();
    assert_eq!(cfg.user.as_deref(), Some("1234:1234"));
    assert_eq!(
        cfg.cmd.unwrap().len(),
        3,
        "extra_args must not reach the command"
    );
    let host = inspect.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("host"));
    assert_eq!(host.memory, Some(48 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    let caps = host.cap_add.unwrap_or_default();
    assert!(
        caps.iter().any(|c| c.ends_with("NET_ADMIN")),
        "capabilities {caps:?}"
    );
    // An unsupported option is refused at start, before the engine is asked anything: the
    // running container is not adopted, and with none running none is created.
    config.extra_args = vec!["--privileged".into()];
    let refused = || async {
        let err = DockerBackend::new(config.clone())
            .start(Epoch(5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, cluster_core::Error::InvalidArgument(m) if m.contains("--privileged")),
            "{err}"
        );
    };
    refused().await;
    let still = podman
        .client()
        .await
        .inspect_container(&name, None)
        .await
        .unwrap();
    let labels = still.config.unwrap().labels.unwrap();
    assert_eq!(labels.get(EPOCH_LABEL).map(String::as_str), Some("4"));
    backend.stop(Duration::from_secs(5)).await.unwrap();
    refused().await;
    let gone = podman.client().await.inspect_container(&name, None).await;
    assert!(gone.is_err(), "a container was created despite the refusal");
    std::fs::remove_dir_all(data).unwrap();
}

#[tokio::test]
async fn container_lifecycle_labels_resources_logs_and_removal() {
    let mut podman = Podman::start("docker-life");
    let name = podman.name("web");
    let port = common::free_port();
    let mut config = DockerConfig::new(IMAGE, &name);
    config.host = Some(podman.socket());
    config.network = Some("host".into());
    config.cmd = Some(vec![
        "sh".into(),
        "-c".into(),
        format!("echo hello-from-container; exec httpd -f -p 127.0.0.1:{port} -h /www"),
    ]);
    config.env = vec!["MODE=test".into()];
    config.labels = BTreeMap::from([("app".to_owned(), "demo".to_owned())]);
    config.resources = Some(DockerResources {
        memory_bytes: Some(64 * 1024 * 1024),
        pids_limit: Some(100),
        ..Default::default()
    });
    config.stop_timeout = Duration::from_secs(1);
    config.probe = HealthProbe::Http(format!("http://127.0.0.1:{port}/index.html"));
    let backend = DockerBackend::new(config);

    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
    backend.start(Epoch(9)).await.unwrap();
    let status = backend.status().await.unwrap();
    assert_eq!(status.state, BackendState::Running);
    let id = status.id.clone().unwrap();
    backend.start(Epoch(9)).await.unwrap();
    assert_eq!(
        backend.status().await.unwrap().id,
        Some(id),
        "start is idempotent"
    );

    let mut healthy = false;
    for _ in 0..500 {
        if backend.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy, "the container's httpd never answered");

    let inspect = podman
        .client()
        .await
        .inspect_container(&name, None)
        .await
        .unwrap();
    let cfg = inspect.config.unwrap();
    let labels = cfg.labels.unwrap();
    assert_eq!(labels.get(EPOCH_LABEL).map(String::as_str), Some("9"));
    assert_eq!(labels.get("app").map(String::as_str), Some("demo"));
    let env = cfg.env.unwrap();
    assert!(env.contains(&"CLUSTER_EPOCH=9".to_owned()) && env.contains(&"MODE=test".to_owned()));
    let host = inspect.host_config.unwrap();
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.network_mode.as_deref(), Some("host"));

    let mut logs = Vec::new();
    for _ in 0..200 {
        logs = backend.logs_tail(10).await;
        if !logs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        logs.iter().any(|l| l.contains("hello-from-container")),
        "{logs:?}"
    );

    backend.stop(Duration::from_secs(5)).await.unwrap();
    let gone = podman.client().await.inspect_container(&name, None).await;
    assert!(gone.is_err(), "the container was not removed");
    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
    backend.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error_and_a_crash_is_reported() {
    let mut podman = Podman::start("docker-bad");
    let mut config = DockerConfig::new(
        "localhost/cluster-no-such-image:latest",
        podman.name("none"),
    );
    config.host = Some(podman.socket());
    let err = DockerBackend::new(config)
        .start(Epoch(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    assert!(err.to_string().contains("cluster-no-such-image"), "{err}");

    let mut config = DockerConfig::new(IMAGE, podman.name("crash"));
    config.host = Some(podman.socket());
    config.network = Some("none".into());
    config.cmd = Some(vec!["sh".into(), "-c".into(), "echo dying; exit 3".into()]);
    let backend = DockerBackend::new(config);
    backend.start(Epoch(1)).await.unwrap();
    let mut state = BackendState::Running;
    for _ in 0..500 {
        state = backend.status().await.unwrap().state;
        if matches!(state, BackendState::Failed(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match &state {
        BackendState::Failed(reason) => assert!(reason.contains("code 3"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(backend.health().await.is_err());
    assert!(
        backend
            .logs_tail(5)
            .await
            .iter()
            .any(|l| l.contains("dying"))
    );
    backend.stop(Duration::from_secs(5)).await.unwrap();

    let mut config = DockerConfig::new(IMAGE, podman.name("unreachable"));
    config.host = Some(format!("unix://{}/nothing.sock", podman.dir.display()));
    let err = DockerBackend::new(config)
        .start(Epoch(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "unavailable", "{err}");
}

#[tokio::test]
async fn the_coordinator_restarts_a_killed_container() {
    let mut podman = Podman::start("docker-coord");
    let name = podman.name("coord");
    let mut config = DockerConfig::new(IMAGE, &name);
    config.host = Some(podman.socket());
    config.network = Some("none".into());
    config.cmd = Some(vec!["sleep".into(), "1000".into()]);
    config.stop_timeout = Duration::from_secs(1);
    let backend = Arc::new(DockerBackend::new(config));
    let options = BackendOptions {
        health_interval: Duration::from_millis(100),
        failure_threshold: 1,
        start_timeout: Duration::from_secs(20),
        stop_timeout: Duration::from_secs(2),
        restart: RestartPolicy {
            max_restarts: 2,
            backoff: Duration::from_millis(10),
            ..RestartPolicy::default()
        },
        ..BackendOptions::default()
    };
    let resource = BackendResource::new(backend.clone(), options);
    resource.activate(Epoch(4)).await.unwrap();
    let first = backend.status().await.unwrap().id.unwrap();
    podman
        .client()
        .await
        .kill_container(
            &name,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    common::eventually("restarted", Duration::from_secs(30), || {
        resource.stats().restarts == 1 && resource.stats().state == "running"
    })
    .await;
    let second = backend.status().await.unwrap().id.unwrap();
    assert_ne!(first, second, "a fresh container replaced the killed one");
    assert_eq!(resource.stats().monitors, 1);
    resource.deactivate().await.unwrap();
    assert!(
        podman
            .client()
            .await
            .inspect_container(&name, None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_deadline_guard_kills_the_container_when_the_deadline_passes_without_renewal() {
    use cluster_core::DeadlineWatch;
    use cluster_core::election::{ElectionState, Leadership};
    let leading = |after: Duration| ElectionState {
        leading: Some(Leadership {
            epoch: Epoch(1),
            deadline: tokio::time::Instant::now() + after,
        }),
        ..ElectionState::default()
    };
    let mut podman = Podman::start("docker-deadline");
    let mut config = DockerConfig::new(IMAGE, podman.name("guarded"));
    config.host = Some(podman.socket());
    config.network = Some("none".into());
    config.cmd = Some(vec!["sleep".into(), "1000".into()]);
    let backend = DockerBackend::new(config);
    let (tx, rx) = tokio::sync::watch::channel(leading(Duration::from_millis(400)));
    backend.follow_deadline(DeadlineWatch::new(rx, Duration::from_millis(450)));
    // Renewals every 100 ms (also while the start is in progress) keep it running.
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (r, tx2) = (renewing.clone(), tx.clone());
    let renewer = tokio::spawn(async move {
        while r.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx2.send_replace(leading(Duration::from_millis(400)));
        }
    });
    backend.start(Epoch(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(backend.status().await.unwrap().state, BackendState::Running);
    renewing.store(false, std::sync::atomic::Ordering::SeqCst);
    renewer.await.unwrap();
    drop(tx);
    // No more renewals: the guard kills the container through the docker CLI.
    let t0 = std::time::Instant::now();
    let mut state = BackendState::Running;
    for _ in 0..500 {
        state = backend.status().await.unwrap().state;
        if !state.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    assert!(
        !state.is_up(),
        "the container still runs after its deadline: {state:?}"
    );
    eprintln!(
        "[guard] container down {} ms after the last renewal (deadline 400 ms)",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(300),
        "fired before the deadline ({took:?})"
    );
    backend.stop(Duration::from_secs(5)).await.unwrap();
}
