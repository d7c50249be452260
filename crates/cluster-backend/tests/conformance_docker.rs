//! The backend conformance suite against the Docker backend on podman's Docker-compatible
//! API (the local busybox test image): each scenario its own container, reality read from
//! the engine's inspect, crashes by killing the container through the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_backend::docker::{DockerBackend, DockerConfig};
use cluster_core::backend::Backend;
use cluster_testkit::conformance::backend::{self, BackendFactory, BackendUnderTest};
use common::podman::{IMAGE, Podman};
use tokio::sync::Mutex;

struct Containers {
    podman: Arc<Mutex<Podman>>,
}

struct Container {
    podman: Arc<Mutex<Podman>>,
    name: String,
    backend: Arc<DockerBackend>,
}

#[async_trait]
impl BackendUnderTest for Container {
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    async fn really_running(&self) -> bool {
        let client = self.podman.lock().await.client().await;
        match client.inspect_container(&self.name, None).await {
            Ok(inspect) => inspect.state.and_then(|s| s.running) == Some(true),
            Err(_) => false,
        }
    }

    async fn crash(&self) {
        let client = self.podman.lock().await.client().await;
        client
            .kill_container(
                &self.name,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .unwrap();
    }
}

#[async_trait]
impl BackendFactory for Containers {
    async fn fresh(&self) -> Box<dyn BackendUnderTest> {
        let mut podman = self.podman.lock().await;
        let tag = format!("conf{}", podman.count());
        let name = podman.name(&tag);
        let mut config = DockerConfig::new(IMAGE, &name);
        config.host = Some(podman.socket());
        config.network = Some("none".into());
        config.cmd = Some(vec!["sleep".into(), "1000".into()]);
        config.stop_timeout = Duration::from_secs(1);
        Box::new(Container {
            podman: self.podman.clone(),
            name,
            backend: Arc::new(DockerBackend::new(config)),
        })
    }
}

#[tokio::test]
async fn backend_suite_docker() {
    let containers = Containers {
        podman: Arc::new(Mutex::new(Podman::start("docker-conf"))),
    };
    backend::run_all(&containers).await;
}
