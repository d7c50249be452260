//! The backend conformance suite against the systemd backend on a real systemd user manager
//! (cluster-testkit's `systemd_user`): each scenario its own unit, reality read from the
//! manager's `ActiveState`, crashes by `KillUnit` with `SIGKILL`. The active-resource suite
//! (deadline guard included) runs against the coordinator over such a unit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cluster_backend::systemd::{SystemdBackend, SystemdBus, SystemdConfig};
use cluster_backend::{BackendOptions, BackendResource};
use cluster_core::ActiveResource;
use cluster_core::backend::Backend;
use cluster_testkit::conformance::backend::{self, BackendFactory, BackendUnderTest};
use cluster_testkit::conformance::resource::{self, Observed, ResourceFactory, ResourceUnderTest};
use cluster_testkit::systemd_user::UserManager;

const UNIT: &str = "org.freedesktop.systemd1.Unit";

struct Units {
    manager: Arc<UserManager>,
    next: AtomicU32,
}

struct Unit {
    manager: Arc<UserManager>,
    name: String,
    backend: Arc<SystemdBackend>,
}

#[async_trait]
impl BackendUnderTest for Unit {
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    async fn really_running(&self) -> bool {
        let state = self
            .manager
            .string_property(&self.name, UNIT, "ActiveState")
            .await;
        matches!(
            state.as_deref(),
            Some("active" | "activating" | "deactivating")
        )
    }

    async fn crash(&self) {
        self.manager.kill_unit(&self.name, libc::SIGKILL).await;
    }
}

impl Units {
    async fn start() -> Self {
        Self {
            manager: Arc::new(UserManager::start("sd-conf").await),
            next: AtomicU32::new(0),
        }
    }

    async fn unit(&self) -> Unit {
        let name = format!(
            "cltest-conf{}.service",
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        // No Restart=: a crash stays a crash.
        self.manager
            .unit(&name, "[Service]\nExecStart=/bin/sleep 1000\n")
            .await;
        let mut config = SystemdConfig::new(&name);
        config.bus = SystemdBus::Address(self.manager.address());
        config.start_timeout = Duration::from_secs(20);
        config.stop_timeout = Duration::from_secs(20);
        Unit {
            manager: self.manager.clone(),
            name,
            backend: Arc::new(SystemdBackend::new(config)),
        }
    }
}

#[async_trait]
impl BackendFactory for Units {
    async fn fresh(&self) -> Box<dyn BackendUnderTest> {
        Box::new(self.unit().await)
    }
}

/// The coordinator over a fresh unit; held = the unit is active (the term is not observable).
struct Coordinated {
    resource: Arc<BackendResource>,
    unit: Unit,
}

#[async_trait]
impl ResourceUnderTest for Coordinated {
    fn resource(&self) -> Arc<dyn ActiveResource> {
        self.resource.clone()
    }

    async fn observe(&self) -> Observed {
        if self.unit.really_running().await {
            Observed::Held(None)
        } else {
            Observed::Released
        }
    }
}

#[async_trait]
impl ResourceFactory for Units {
    async fn fresh(&self) -> Box<dyn ResourceUnderTest> {
        let unit = self.unit().await;
        let options = BackendOptions {
            health_interval: Duration::from_millis(100),
            stop_timeout: Duration::from_secs(5),
            ..BackendOptions::default()
        };
        Box::new(Coordinated {
            resource: Arc::new(BackendResource::new(unit.backend.clone(), options)),
            unit,
        })
    }
}

#[tokio::test]
async fn backend_suite_systemd() {
    backend::run_all(&Units::start().await).await;
}

#[tokio::test]
async fn resource_suite_backend_coordinator_systemd() {
    let units = Units::start().await;
    resource::run_all(&units).await;
    resource::deadline_passing_without_renewal_releases(&units, Duration::from_millis(450)).await;
}
