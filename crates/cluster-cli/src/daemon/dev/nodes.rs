//! The nodes of the dev platform: N platforms on one in-memory network in this process, each
//! with its own apps, that can be crashed and restarted to show failover.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use cluster::{App, Labels, NodeId, Platform, PlatformOptions};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::config::AppConfig;
use crate::exit::{CliResult, Code, Failure};

/// One running dev node.
struct DevNode {
    platform: Platform,
    run: JoinHandle<cluster::Result<()>>,
}

/// How to build a dev node's platform and apps.
pub(crate) struct DevSpec {
    /// The platform name.
    pub(crate) platform: String,
    /// Options of every node.
    pub(crate) options: PlatformOptions,
    /// Labels of every node.
    pub(crate) labels: Labels,
    /// Apps from the configuration file; the example apps when empty.
    pub(crate) apps: Vec<AppConfig>,
}

/// The dev platform's nodes. Node ids are known from the start; a crashed node keeps its id
/// and can be restarted.
pub(crate) struct DevNodes {
    network: cluster::dev::Network,
    spec: DevSpec,
    ids: Vec<NodeId>,
    running: Mutex<BTreeMap<NodeId, DevNode>>,
}

impl DevNodes {
    /// The dev platform with nodes `ids` (none started yet).
    pub(crate) fn new(network: cluster::dev::Network, spec: DevSpec, ids: Vec<NodeId>) -> Self {
        Self {
            network,
            spec,
            ids,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// The apps every node runs (names and modes, for the banner).
    pub(crate) async fn app_list(&self) -> CliResult<Vec<App>> {
        self.apps(&self.ids[0]).await
    }

    async fn apps(&self, node: &NodeId) -> CliResult<Vec<App>> {
        if self.spec.apps.is_empty() {
            super::example_apps(node)
        } else {
            crate::daemon::build_apps(&self.spec.apps, None).await
        }
    }

    /// Starts `node` and waits until it runs.
    pub(crate) async fn start(&self, node: &NodeId) -> CliResult {
        self.known(node)?;
        if self.lock().contains_key(node) {
            return Err(Failure::new(
                Code::Invalid,
                format!("{node} is running; `kill` it first"),
            ));
        }
        self.network.heal(node.as_str());
        let apps = self.apps(node).await?;
        let platform =
            cluster::placement::dev_platform(&self.network, &self.spec.platform, node.as_str())?
                .options(self.spec.options.clone())
                .labels(self.spec.labels.clone())
                .build()?;
        for app in &apps {
            platform.register(app)?;
        }
        let runner = platform.clone();
        let mut run = tokio::spawn(async move { runner.run().await });
        tokio::select! {
            started = platform.wait_started() => if let Err(e) = started {
                platform.abort();
                return Err(Failure::new(Code::Error, format!("{node} did not start: {e}")));
            },
            r = &mut run => {
                let why = match r {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it stopped".to_owned(),
                    Err(e) => e.to_string(),
                };
                return Err(Failure::new(Code::Error, format!("{node} did not start: {why}")));
            }
        }
        self.lock().insert(node.clone(), DevNode { platform, run });
        Ok(())
    }

    /// Crashes `node`: cut off the network and every task stopped without any cleanup, so the
    /// others see its lease and membership expire as after a real crash.
    pub(crate) fn kill(&self, node: &NodeId) -> CliResult {
        self.known(node)?;
        let Some(dev) = self.lock().remove(node) else {
            return Err(Failure::new(
                Code::Invalid,
                format!("{node} is not running (already killed?); `restart` it"),
            ));
        };
        self.network.partition(node.as_str());
        dev.platform.abort();
        dev.run.abort();
        Ok(())
    }

    /// Restarts a killed node.
    pub(crate) async fn restart(&self, node: &NodeId) -> CliResult {
        self.start(node).await
    }

    /// The platform of `node`, while it runs.
    pub(crate) fn platform(&self, node: &NodeId) -> Option<Platform> {
        self.lock().get(node).map(|n| n.platform.clone())
    }

    /// Gracefully stops every running node, each within `bound`.
    pub(crate) async fn shutdown(&self, bound: Duration) {
        let nodes: Vec<(NodeId, DevNode)> = std::mem::take(&mut *self.lock()).into_iter().collect();
        for (_, n) in &nodes {
            n.platform.shutdown();
        }
        for (id, n) in nodes {
            match tokio::time::timeout(bound, n.run).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!(node = %id, error = %e, "dev node stopped with an error"),
                Ok(Err(e)) => warn!(node = %id, error = %e, "dev node task failed"),
                Err(_) => {
                    warn!(node = %id, "dev node did not stop in time; abandoned");
                    n.platform.abort();
                }
            }
        }
    }

    fn known(&self, node: &NodeId) -> CliResult {
        if self.ids.contains(node) {
            return Ok(());
        }
        let ids: Vec<&str> = self.ids.iter().map(NodeId::as_str).collect();
        Err(Failure::new(
            Code::NotFound,
            format!("no dev node {node}; the dev nodes are {}", ids.join(", ")),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, DevNode>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
