//! The daemon's observability servers: health (`health_addr`) and Prometheus metrics
//! (`metrics_addr`). See `docs/architecture/observability.md`.

mod health;
pub(crate) mod http;
mod metrics;

use std::net::SocketAddr;

use cluster::{App, Platform};
use tokio::task::JoinHandle;
use tracing::info;

pub(crate) use health::Connected;

use crate::config::Config;
use crate::exit::CliResult;

/// The running servers; dropping this stops them.
#[derive(Default)]
pub(crate) struct Servers {
    tasks: Vec<JoinHandle<()>>,
    /// Bound address of the health server.
    pub(crate) health: Option<SocketAddr>,
    /// Bound address of the metrics server.
    pub(crate) metrics: Option<SocketAddr>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Installs the metrics recorder when `metrics_addr` is configured. Call before the platform
/// is built so every series is recorded from the start.
pub(crate) fn install_metrics(
    config: &Config,
) -> CliResult<Option<metrics_exporter_prometheus::PrometheusHandle>> {
    match config.metrics_addr {
        Some(_) => metrics::install().map(Some),
        None => Ok(None),
    }
}

/// Starts the configured servers; a bind failure is an error (the daemon does not start).
pub(crate) async fn start(
    config: &Config,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    platform: &Platform,
    apps: &[App],
    connected: Option<Connected>,
) -> CliResult<Servers> {
    let mut servers = Servers::default();
    if let (Some(addr), Some(handle)) = (config.metrics_addr, prometheus) {
        let (bound, task) = metrics::serve(addr, handle).await?;
        info!(addr = %bound, "metrics server listening (/metrics)");
        servers.metrics = Some(bound);
        servers.tasks.push(task);
    }
    if let Some(addr) = config.health_addr {
        let (bound, task) = health::serve(addr, platform.clone(), apps.to_vec(), connected).await?;
        info!(addr = %bound, "health server listening (/live /ready /health /health/checks)");
        servers.health = Some(bound);
        servers.tasks.push(task);
    }
    Ok(servers)
}
