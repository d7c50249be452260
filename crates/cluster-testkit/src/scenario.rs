//! A small harness for multi-node scenarios on the in-memory network.
//!
//! Every node is a real [`Platform`] wired to one [`MemoryNetwork`]; the harness starts, stops,
//! crashes and partitions nodes and waits for conditions. Under
//! `#[tokio::test(start_paused = true)]` the whole cluster runs on tokio's paused clock, so lease
//! timeouts of seconds take milliseconds of real time and every step is observable.

// Harness code reports failures by panicking, like assertions in a test.
#![allow(clippy::panic, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_core::{Labels, Result};
use cluster_runtime::PlatformOptions;
use cluster_runtime::{App, Platform};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::MemoryNetwork;

/// One simulated node.
pub struct SimNode {
    /// The node's platform.
    pub platform: Platform,
    /// The node's apps, by name.
    pub apps: BTreeMap<String, App>,
    run: Option<JoinHandle<Result<()>>>,
}

impl SimNode {
    /// The node's app `name`.
    pub fn app(&self, name: &str) -> &App {
        self.apps
            .get(name)
            .unwrap_or_else(|| panic!("node {} has no app {name}", self.platform.node_id()))
    }
}

/// A set of simulated nodes of one platform on one in-memory network.
pub struct SimCluster {
    /// The shared network (for fault injection).
    pub network: MemoryNetwork,
    platform: String,
    options: PlatformOptions,
    planner: Option<std::sync::Arc<dyn cluster_core::Planner>>,
    nodes: BTreeMap<String, SimNode>,
}

impl SimCluster {
    /// A cluster of platform `platform` with `options` for every node.
    pub fn new(platform: &str, options: PlatformOptions) -> Self {
        Self {
            network: MemoryNetwork::new(),
            platform: platform.to_owned(),
            options,
            planner: None,
            nodes: BTreeMap::new(),
        }
    }

    /// Every node started afterwards enforces placement with `planner`.
    pub fn with_planner(mut self, planner: std::sync::Arc<dyn cluster_core::Planner>) -> Self {
        self.planner = Some(planner);
        self
    }

    /// Builds node `node` with `apps`, starts it and waits until it runs. Returns the error if
    /// the platform fails to start.
    pub async fn start_node(&mut self, node: &str, apps: Vec<App>) -> Result<&SimNode> {
        self.start_node_with(node, apps, Labels::new()).await
    }

    /// Like [`SimCluster::start_node`], with labels.
    pub async fn start_node_with(
        &mut self,
        node: &str,
        apps: Vec<App>,
        labels: Labels,
    ) -> Result<&SimNode> {
        let mut builder = Platform::builder(&self.platform, node)
            .options(self.options.clone())
            .labels(labels)
            .transport(self.network.transport(node))
            .kv_store(self.network.kv(node))
            .audit(self.network.audit());
        if let Some(planner) = &self.planner {
            builder = builder.planner(planner.clone());
        }
        let platform = builder.build()?;
        for app in &apps {
            platform.register(app)?;
        }
        let runner = platform.clone();
        let mut run = tokio::spawn(async move { runner.run().await });
        tokio::select! {
            started = platform.wait_started() => if let Err(e) = started {
                // Prefer the error `run` returned (the reason start failed).
                return Err(run.await.expect("platform task").err().unwrap_or(e));
            },
            result = &mut run => {
                return Err(result.expect("platform task").expect_err("run ended before start"));
            }
        }
        let apps = apps
            .into_iter()
            .map(|a| (a.name().to_string(), a))
            .collect();
        self.nodes.insert(
            node.to_owned(),
            SimNode {
                platform,
                apps,
                run: Some(run),
            },
        );
        Ok(&self.nodes[node])
    }

    /// The node `name`.
    pub fn node(&self, name: &str) -> &SimNode {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Names of the nodes still in the harness.
    pub fn names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Gracefully stops `name` and waits for its `run` to return.
    pub async fn stop_node(&mut self, name: &str) -> Result<()> {
        let mut node = self
            .nodes
            .remove(name)
            .unwrap_or_else(|| panic!("no node {name}"));
        node.platform.shutdown();
        match node.run.take() {
            Some(run) => run.await.expect("platform task"),
            None => Ok(()),
        }
    }

    /// Crashes `name`: cuts it off the network and stops all its tasks without any cleanup.
    pub fn crash_node(&mut self, name: &str) {
        let node = self
            .nodes
            .remove(name)
            .unwrap_or_else(|| panic!("no node {name}"));
        self.network.partition(name);
        node.platform.abort();
        if let Some(run) = node.run {
            run.abort();
        }
    }

    /// Nodes whose instance of `app` is leader right now.
    pub fn leaders(&self, app: &str) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.apps.get(app).is_some_and(|a| a.is_leader()))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The single leader of `app`; panics if there are several.
    pub fn leader(&self, app: &str) -> Option<String> {
        let leaders = self.leaders(app);
        assert!(leaders.len() <= 1, "two leaders of {app}: {leaders:?}");
        leaders.into_iter().next()
    }

    /// Waits until `app` has a leader (checking there is never more than one), returning it
    /// and when it was first seen.
    pub async fn wait_leader(&self, app: &str, within: Duration) -> (String, Instant) {
        let mut found = None;
        wait_until(&format!("a leader of {app}"), within, || {
            found = self.leader(app);
            found.is_some()
        })
        .await;
        (found.expect("leader"), Instant::now())
    }
}

/// Polls `cond` every millisecond until it holds, panicking after `within`.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not reached within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
