//! The backend conformance suite against the process backend (real processes: a shell with a
//! background child, so stops and crashes concern a whole process group), and the
//! active-resource suite against the backend coordinator over it, deadline guard included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_backend::{BackendOptions, BackendResource};
use cluster_core::ActiveResource;
use cluster_core::backend::Backend;
use cluster_testkit::conformance::backend::{self, BackendFactory, BackendUnderTest};
use cluster_testkit::conformance::resource::{self, Observed, ResourceFactory, ResourceUnderTest};

/// Every service sleeps for its own number of seconds: the marker that finds its processes
/// in `/proc`.
fn marker() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    1_000_000 + (std::process::id() % 100_000) * 100 + NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Live processes whose command line mentions `marker` (the shell, then the two sleeps).
fn processes(marker: u32) -> Vec<u32> {
    let want = marker.to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let mentions = cmdline.windows(want.len()).any(|w| w == want.as_bytes());
        if mentions && common::pid_alive(pid) {
            out.push(pid);
        }
    }
    out
}

struct Service {
    backend: Arc<ProcessBackend>,
    marker: u32,
}

impl Service {
    fn new() -> Self {
        let marker = marker();
        let backend = Arc::new(ProcessBackend::new(ProcessConfig::new(
            "sh",
            [
                "-c".to_owned(),
                format!("sleep {marker} & exec sleep {marker}"),
            ],
        )));
        Self { backend, marker }
    }
}

#[async_trait]
impl BackendUnderTest for Service {
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    async fn really_running(&self) -> bool {
        !processes(self.marker).is_empty()
    }

    /// SIGKILL to every process of the service (its group).
    async fn crash(&self) {
        let pids = processes(self.marker);
        assert!(!pids.is_empty(), "nothing to crash");
        let killed = std::process::Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .status()
            .unwrap();
        assert!(killed.success(), "kill -KILL {pids:?}");
    }
}

struct Processes;

#[async_trait]
impl BackendFactory for Processes {
    async fn fresh(&self) -> Box<dyn BackendUnderTest> {
        Box::new(Service::new())
    }
}

#[tokio::test]
async fn backend_suite_process() {
    backend::run_all(&Processes).await;
}

/// The coordinator over a process backend; held = the service's processes run.
struct Coordinated {
    resource: Arc<BackendResource>,
    marker: u32,
}

#[async_trait]
impl ResourceUnderTest for Coordinated {
    fn resource(&self) -> Arc<dyn ActiveResource> {
        self.resource.clone()
    }

    async fn observe(&self) -> Observed {
        if processes(self.marker).is_empty() {
            return Observed::Released;
        }
        // The service learns its term from CLUSTER_EPOCH; read it back from its environment.
        let epoch = processes(self.marker).into_iter().find_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            env.split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"CLUSTER_EPOCH="))
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        });
        Observed::Held(epoch.map(cluster_core::Epoch))
    }
}

struct Coordinators;

#[async_trait]
impl ResourceFactory for Coordinators {
    async fn fresh(&self) -> Box<dyn ResourceUnderTest> {
        let service = Service::new();
        let options = BackendOptions {
            health_interval: Duration::from_millis(100),
            stop_timeout: Duration::from_secs(2),
            ..BackendOptions::default()
        };
        Box::new(Coordinated {
            resource: Arc::new(BackendResource::new(service.backend, options)),
            marker: service.marker,
        })
    }
}

#[tokio::test]
async fn resource_suite_backend_coordinator() {
    resource::run_all(&Coordinators).await;
}

#[tokio::test]
async fn resource_deadline_guard_backend_coordinator() {
    resource::deadline_passing_without_renewal_releases(&Coordinators, Duration::from_millis(450))
        .await;
}
