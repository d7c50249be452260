//! Backends of apps declared in the configuration file: process, systemd and Docker
//! (`cluster-backend`), attached to the app with a `BackendResource` so they run while the app
//! is active on this node (Singleton: the leader; other modes: every placed instance).

use std::sync::Arc;
use std::time::Duration;

use cluster::App;
use cluster::core::backend::Backend;
use cluster_backend::docker::{DockerBackend, DockerConfig};
use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_backend::systemd::{SystemdBackend, SystemdBus, SystemdConfig};
use cluster_backend::{BackendOptions, BackendResource};

use crate::config::{AppConfig, BackendConfig};

/// The backend types this build can run.
pub(crate) fn available() -> &'static [&'static str] {
    &["process", "systemd", "docker"]
}

/// Why a backend type cannot be used (shown by validation).
pub(crate) fn unavailable_reason(kind: &str) -> String {
    format!("backend type {kind:?} is not available in this build")
}

/// Builds the backend of `app` and attaches it (after any resource already added, e.g. the
/// VIP, so it starts after them and stops before them).
pub(crate) fn attach(app: &App, config: &AppConfig, backend: &BackendConfig) {
    let (backend, options): (Arc<dyn Backend>, BackendOptions) = match backend {
        BackendConfig::Process {
            command,
            args,
            env,
            dir,
            graceful_timeout,
        } => {
            let mut c = ProcessConfig::new(command.clone(), args.clone());
            c.env = env.clone();
            c.dir = dir.clone();
            c.graceful_timeout = *graceful_timeout;
            let options = BackendOptions {
                stop_timeout: *graceful_timeout + Duration::from_secs(5),
                ..BackendOptions::default()
            };
            (Arc::new(ProcessBackend::new(c)), options)
        }
        BackendConfig::Systemd {
            unit,
            start_timeout,
            stop_timeout,
            bus,
        } => {
            let mut c = SystemdConfig::new(unit.clone());
            if let Some(t) = start_timeout {
                c.start_timeout = *t;
            }
            if let Some(t) = stop_timeout {
                c.stop_timeout = *t;
            }
            c.bus = match bus.as_deref() {
                None | Some("system") => SystemdBus::System,
                Some("session") => SystemdBus::Session,
                Some(address) => SystemdBus::Address(address.to_owned()),
            };
            let options = c.backend_options();
            (Arc::new(SystemdBackend::new(c)), options)
        }
        BackendConfig::Docker {
            image,
            name,
            env,
            ports,
            volumes,
            network,
            stop_timeout,
            host,
            extra_args,
        } => {
            let name = name.clone().unwrap_or_else(|| config.name.to_string());
            let mut c = DockerConfig::new(image.clone(), name);
            c.env = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            c.ports = ports.clone();
            c.volumes = volumes.clone();
            c.network = network.clone();
            c.host = host.clone();
            c.extra_args = extra_args.clone();
            if let Some(t) = stop_timeout {
                c.stop_timeout = *t;
            }
            let options = BackendOptions {
                stop_timeout: c.stop_timeout + Duration::from_secs(5),
                ..BackendOptions::default()
            };
            (Arc::new(DockerBackend::new(c)), options)
        }
    };
    BackendResource::attach(app, backend, options);
}
