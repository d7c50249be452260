//! Load-aware rebalancing on in-memory nodes (paused time) with loads injected through
//! `FixedLoad` probes: a resource-aware run moves an instance from the most to the least
//! loaded node; nothing is planned onto a node above `max_node_load`; migrations wait while
//! their target is above the policy's `load_threshold` (with the reason in the status).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cluster::placement::{AppPlacementExt, planner};
use cluster::{App, Mode, NodeId, Platform, PlatformOptions};
use cluster_core::FixedLoad;
use cluster_core::NodeLoad;
use cluster_core::wire::rebalance::{
    AutoRebalanceConfig, MigrationPolicy, RateLimit, RebalancePhase, RebalanceStatus,
    ResourceLimits, ResourceThresholds,
};
use cluster_testkit::MemoryNetwork;
use cluster_testkit::scenario::wait_until;
use tokio::time::Instant;

const APPS: usize = 6;

struct Node {
    platform: Platform,
    apps: Vec<App>,
    load: Arc<FixedLoad>,
    run: tokio::task::JoinHandle<cluster::Result<()>>,
}

struct Cluster {
    network: MemoryNetwork,
    nodes: BTreeMap<String, Node>,
}

fn cpu(v: f64) -> Option<NodeLoad> {
    Some(NodeLoad::from_fractions(v, 0.1, 0.0))
}

impl Cluster {
    fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        Self {
            network: MemoryNetwork::new(),
            nodes: BTreeMap::new(),
        }
    }

    async fn start(&mut self, node: &str, load: Option<NodeLoad>) {
        let probe = Arc::new(FixedLoad::new(load));
        let platform = cluster::dev::platform(&self.network, "prod", node)
            .unwrap()
            .options(PlatformOptions::fast())
            .planner(planner())
            .load_probe(probe.clone())
            .build()
            .unwrap();
        // a{i} requests (i + 1) × 100m of CPU (nodes have no capacity labels: unlimited), so
        // a resource step has a heaviest app to pick.
        let apps: Vec<App> = (0..APPS)
            .map(|i| {
                let app = App::new(format!("a{i}"), Mode::Replicas { n: 1 }).unwrap();
                app.resources(&format!("{}m", (i + 1) * 100), "", "")
                    .unwrap();
                app
            })
            .collect();
        for a in &apps {
            platform.register(a).unwrap();
        }
        let runner = platform.clone();
        let run = tokio::spawn(async move { runner.run().await });
        platform.wait_started().await.unwrap();
        self.nodes.insert(
            node.to_owned(),
            Node {
                platform,
                apps,
                load: probe,
                run,
            },
        );
    }

    fn p(&self) -> &Platform {
        &self.nodes["n1"].platform
    }

    /// app → node running it.
    fn where_(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (n, node) in &self.nodes {
            for a in node.apps.iter().filter(|a| a.is_running()) {
                out.insert(a.name().to_string(), n.clone());
            }
        }
        out
    }

    fn count(&self, node: &str) -> usize {
        self.where_().values().filter(|n| *n == node).count()
    }

    fn set_load(&self, node: &str, load: Option<NodeLoad>) {
        self.nodes[node].load.set(load);
    }

    async fn status(&self) -> RebalanceStatus {
        self.p().rebalance_status().await.unwrap()
    }

    async fn wait_status(
        &self,
        what: &str,
        within: Duration,
        cond: impl Fn(&RebalanceStatus) -> bool,
    ) -> RebalanceStatus {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status().await;
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: not reached; {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        for (_, n) in self.nodes {
            n.platform.shutdown();
            let _ = n.run.await;
        }
    }
}

fn policy() -> MigrationPolicy {
    MigrationPolicy {
        cooldown_period_ms: 0,
        rate_limit: RateLimit::default(),
        ..MigrationPolicy::default()
    }
}

/// Three nodes with two apps each (balanced by count), every load 0.3.
async fn balanced_three(config: &AutoRebalanceConfig) -> Cluster {
    let mut c = Cluster::new();
    c.start("n1", cpu(0.3)).await;
    let mut join = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 3,
        cooldown_period_ms: 0,
        ..AutoRebalanceConfig::default()
    };
    join.triggers.on_node_join = true;
    c.p().set_migration_policy(&policy()).await.unwrap();
    c.p().set_auto_rebalance(&join).await.unwrap();
    c.start("n2", cpu(0.3)).await;
    c.start("n3", cpu(0.3)).await;
    wait_until("balanced by count", Duration::from_secs(60), || {
        c.where_().len() == APPS && ["n1", "n2", "n3"].iter().all(|n| c.count(n) == 2)
    })
    .await;
    c.wait_status("join runs done", Duration::from_secs(30), |s| {
        !s.in_progress
    })
    .await;
    c.p().set_auto_rebalance(config).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c
}

#[tokio::test(start_paused = true)]
async fn a_resource_imbalance_moves_an_instance_from_the_hottest_to_the_coolest_node() {
    let mut config = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 1,
        cooldown_period_ms: 30_000,
        resource_aware: true,
        resource_thresholds: ResourceThresholds {
            cpu_imbalance: 0.3,
            ..ResourceThresholds::default()
        },
        max_node_load: ResourceLimits {
            cpu: 0.8,
            ..ResourceLimits::default()
        },
        ..AutoRebalanceConfig::default()
    };
    config.triggers.on_node_join = false;
    config.triggers.on_node_leave = false;
    config.triggers.on_resource_imbalance = true;
    let c = balanced_three(&config).await;
    let before = c.where_();
    let runs = c.status().await.run;
    // Within the thresholds: nothing happens (also after the join runs' cooldown).
    c.set_load("n1", cpu(0.5));
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(c.status().await.run, runs);
    // n1 runs hot, n2 is nearly idle (n3 in between).
    c.set_load("n1", cpu(0.95));
    c.set_load("n2", cpu(0.1));
    c.set_load("n3", cpu(0.5));
    let done = c
        .wait_status("resource run", Duration::from_secs(60), |s| {
            s.run > runs && s.phase == RebalancePhase::Completed
        })
        .await;
    assert!(
        done.reason.contains("resource imbalance: cpu"),
        "{}",
        done.reason
    );
    assert_eq!(done.total, 1, "{done:?}");
    let step = &done.migrations[0];
    assert_eq!(step.from, Some(NodeId::new("n1").unwrap()));
    assert_eq!(step.to, Some(NodeId::new("n2").unwrap()));
    wait_until("moved", Duration::from_secs(20), || {
        c.count("n1") == 1 && c.count("n2") == 3
    })
    .await;
    let after = c.where_();
    let moved: Vec<_> = before
        .iter()
        .filter(|(a, n)| after.get(*a) != Some(n))
        .collect();
    assert_eq!(moved.len(), 1, "exactly one instance moved: {moved:?}");
    // The heaviest app on the hot node (largest CPU request: the highest index) moved.
    let heaviest = before
        .iter()
        .filter(|(_, n)| n.as_str() == "n1")
        .map(|(a, _)| a.clone())
        .max_by_key(|a| a[1..].parse::<usize>().unwrap())
        .unwrap();
    assert_eq!(moved[0].0, &heaviest, "{moved:?}");
    // The cooldown holds further runs back.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(c.status().await.run, done.run);
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn nothing_is_planned_onto_a_node_above_max_node_load() {
    let mut config = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 3,
        cooldown_period_ms: 0,
        max_node_load: ResourceLimits {
            cpu: 0.8,
            ..ResourceLimits::default()
        },
        ..AutoRebalanceConfig::default()
    };
    config.triggers.on_app_count_imbalance = true;
    let mut c = balanced_three(&config).await;
    // n4 joins busy: the count imbalance asks for moves onto it, the load limit refuses.
    c.start("n4", cpu(0.95)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(c.count("n4"), 0, "{:?}", c.where_());
    let plan = c.p().rebalance_status().await.unwrap();
    assert!(!plan.in_progress, "{plan:?}");
    // Its load drops: it gets its share.
    c.set_load("n4", cpu(0.1));
    wait_until("n4 used", Duration::from_secs(60), || c.count("n4") >= 1).await;
    c.stop().await;
}

#[tokio::test(start_paused = true)]
async fn migrations_wait_while_their_target_is_above_the_load_threshold() {
    let mut config = AutoRebalanceConfig {
        enabled: true,
        interval_ms: 0,
        max_concurrent: 3,
        cooldown_period_ms: 0,
        ..AutoRebalanceConfig::default()
    };
    config.triggers.on_node_join = true;
    let mut c = balanced_three(&config).await;
    c.p()
        .set_migration_policy(&MigrationPolicy {
            load_threshold: 0.8,
            ..policy()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.start("n4", cpu(0.9)).await;
    let s = c
        .wait_status("deferred", Duration::from_secs(30), |s| {
            s.in_progress && !s.deferred.is_empty()
        })
        .await;
    assert!(
        s.deferred
            .iter()
            .all(|d| d.reason.contains("n4") && d.reason.contains("load threshold")),
        "{s:?}"
    );
    assert!(s.active.is_empty(), "{s:?}");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(c.count("n4"), 0, "nothing moved onto the loaded node");
    // The load drops: the waiting steps run.
    c.set_load("n4", cpu(0.2));
    let done = c
        .wait_status("completed", Duration::from_secs(60), |s| {
            s.run == s.run.max(1) && !s.in_progress && s.phase == RebalancePhase::Completed
        })
        .await;
    assert!(done.deferred.is_empty(), "{done:?}");
    assert!(c.count("n4") >= 1, "{:?}", c.where_());
    c.stop().await;
}
