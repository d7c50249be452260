//! Backend coordinators inside simulated clusters (in-memory network, real time, real
//! processes): the leader runs exactly one process, a step-down moves it with no overlap, a
//! backend that keeps failing its health check makes the leader step down, and Spread apps
//! run the backend on every node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cluster_backend::health::HealthProbe;
use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_backend::{BackendOptions, BackendResource, RestartPolicy};
use cluster_core::HealthStatus;
use cluster_core::backend::{Backend, BackendStatus};
use cluster_core::{Epoch, Result};
use cluster_runtime::App;
use cluster_runtime::PlatformOptions;
use cluster_testkit::scenario::{SimCluster, wait_until};
use common::{pid_alive, scratch};

/// What every node's backend saw, shared by all nodes of a test.
#[derive(Default)]
struct Journal {
    events: Vec<String>,
    /// The pid each node's backend started last.
    pids: Vec<(String, u32)>,
}

/// A process backend that records its starts and stops and, on every start, checks that no
/// other node's process is still alive (no overlap, checked against `/proc`).
struct Recorded {
    node: String,
    inner: ProcessBackend,
    journal: Arc<Mutex<Journal>>,
}

#[async_trait]
impl Backend for Recorded {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn start(&self, epoch: Epoch) -> Result<()> {
        {
            let j = self.journal.lock().unwrap();
            for (node, pid) in &j.pids {
                assert!(
                    node == &self.node || !pid_alive(*pid),
                    "{} starts while {node}'s process {pid} is alive",
                    self.node
                );
            }
        }
        self.inner.start(epoch).await?;
        let pid = self.inner.pid().unwrap();
        let mut j = self.journal.lock().unwrap();
        j.events.push(format!("{} start", self.node));
        j.pids.retain(|(n, _)| n != &self.node);
        j.pids.push((self.node.clone(), pid));
        Ok(())
    }

    async fn stop(&self, timeout: Duration) -> Result<()> {
        let was_running = self.inner.pid().is_some();
        self.inner.stop(timeout).await?;
        if was_running {
            self.journal
                .lock()
                .unwrap()
                .events
                .push(format!("{} stop", self.node));
        }
        Ok(())
    }

    async fn status(&self) -> Result<BackendStatus> {
        self.inner.status().await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn logs_tail(&self, n: usize) -> Vec<String> {
        self.inner.logs_tail(n).await
    }
}

fn options() -> BackendOptions {
    BackendOptions {
        health_interval: Duration::from_millis(100),
        health_timeout: Duration::from_secs(1),
        failure_threshold: 2,
        start_timeout: Duration::from_secs(2),
        stop_timeout: Duration::from_secs(2),
        startup_backoff: Duration::from_millis(10),
        min_uptime: Duration::from_millis(100),
        restart: RestartPolicy {
            max_restarts: 1,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            cooldown: Duration::from_secs(600),
        },
    }
}

struct Node {
    app: App,
    resource: Arc<BackendResource>,
    backend: Arc<Recorded>,
}

fn node(name: &str, app: App, config: ProcessConfig, journal: &Arc<Mutex<Journal>>) -> Node {
    let backend = Arc::new(Recorded {
        node: name.to_owned(),
        inner: ProcessBackend::new(config),
        journal: journal.clone(),
    });
    let resource = BackendResource::attach(&app, backend.clone(), options());
    Node {
        app,
        resource,
        backend,
    }
}

/// A busybox httpd serving `dir` on a fresh port, healthy while `dir/ok` exists.
fn httpd(dir: &Path) -> ProcessConfig {
    let port = common::free_port();
    let mut config = ProcessConfig::new(
        common::busybox().to_string_lossy(),
        [
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            &dir.to_string_lossy(),
        ],
    );
    config.health = HealthProbe::Http(format!("http://127.0.0.1:{port}/ok"));
    config.graceful_timeout = Duration::from_millis(500);
    config
}

fn serving_dir(tag: &str) -> PathBuf {
    let dir = scratch(tag);
    std::fs::write(dir.join("ok"), "ok").unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_runs_exactly_one_process_and_a_step_down_moves_it_without_overlap() {
    let journal = Arc::new(Mutex::new(Journal::default()));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let n1 = node(
        "n1",
        App::singleton("web").unwrap(),
        ProcessConfig::new("sleep", ["1000"]),
        &journal,
    );
    let n2 = node(
        "n2",
        App::singleton("web").unwrap(),
        ProcessConfig::new("sleep", ["1000"]),
        &journal,
    );
    cluster
        .start_node("n1", vec![n1.app.clone()])
        .await
        .unwrap();
    cluster.wait_leader("web", Duration::from_secs(10)).await;
    cluster
        .start_node("n2", vec![n2.app.clone()])
        .await
        .unwrap();
    assert_eq!(cluster.leader("web").as_deref(), Some("n1"));
    // The leader's backend start and its monitor task run asynchronously after the lease is
    // won: wait for them instead of racing them.
    wait_until(
        "n1 runs its backend and monitors it",
        Duration::from_secs(10),
        || n1.backend.inner.pid().is_some() && n1.resource.stats().monitors == 1,
    )
    .await;
    let first = n1.backend.inner.pid().expect("the leader runs its backend");
    assert!(pid_alive(first));
    assert_eq!(n2.backend.inner.pid(), None, "the standby runs nothing");

    let t0 = std::time::Instant::now();
    n1.app.step_down().await.unwrap();
    wait_until("n2 leads", Duration::from_secs(10), || {
        cluster.leader("web").as_deref() == Some("n2")
    })
    .await;
    eprintln!(
        "step-down to the new leader running its process: {:?}",
        t0.elapsed()
    );
    assert!(
        !pid_alive(first),
        "the old leader's process survived the step-down"
    );
    assert_eq!(n1.backend.inner.pid(), None);
    wait_until(
        "n2 runs its backend and monitors it",
        Duration::from_secs(10),
        || {
            n2.backend.inner.pid().is_some()
                && (n1.resource.stats().monitors, n2.resource.stats().monitors) == (0, 1)
        },
    )
    .await;
    let second = n2
        .backend
        .inner
        .pid()
        .expect("the new leader runs its backend");
    assert!(pid_alive(second));
    assert_eq!(
        journal.lock().unwrap().events,
        vec!["n1 start", "n1 stop", "n2 start"]
    );
    assert_eq!(
        (n1.resource.stats().monitors, n2.resource.stats().monitors),
        (0, 1)
    );

    cluster.stop_node("n2").await.unwrap();
    cluster.stop_node("n1").await.unwrap();
    assert!(
        !pid_alive(second),
        "a stopped node left its backend running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_health_check_makes_the_leader_step_down() {
    let journal = Arc::new(Mutex::new(Journal::default()));
    let (d1, d2) = (serving_dir("fo-n1"), serving_dir("fo-n2"));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let n1 = node("n1", App::singleton("web").unwrap(), httpd(&d1), &journal);
    let n2 = node("n2", App::singleton("web").unwrap(), httpd(&d2), &journal);
    cluster
        .start_node("n1", vec![n1.app.clone()])
        .await
        .unwrap();
    cluster.wait_leader("web", Duration::from_secs(10)).await;
    cluster
        .start_node("n2", vec![n2.app.clone()])
        .await
        .unwrap();
    assert_eq!(cluster.leader("web").as_deref(), Some("n1"));
    let first = n1.backend.inner.pid().unwrap();

    // n1's service starts answering 404: health fails, the restart does not help, n1 gives
    // up, stops its backend and steps down; n2 takes over.
    let t0 = std::time::Instant::now();
    std::fs::remove_file(d1.join("ok")).unwrap();
    wait_until("n2 leads", Duration::from_secs(20), || {
        cluster.leader("web").as_deref() == Some("n2")
    })
    .await;
    eprintln!("health failing to the standby serving: {:?}", t0.elapsed());
    assert!(!pid_alive(first));
    assert_eq!(
        n1.backend.inner.pid(),
        None,
        "n1 serves nothing and does not lead"
    );
    assert!(n2.backend.inner.health().await.is_ok());
    let stats = n1.resource.stats();
    assert_eq!((stats.restarts, stats.give_ups), (1, 1), "{stats:?}");
    assert!(matches!(n1.app.health(), HealthStatus::Unhealthy(_)));
    let events = journal.lock().unwrap().events.clone();
    assert_eq!(events.first().map(String::as_str), Some("n1 start"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("n2 start"),
        "{events:?}"
    );

    cluster.stop_node("n2").await.unwrap();
    cluster.stop_node("n1").await.unwrap();
    for d in [d1, d2] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_app_runs_its_backend_on_every_node() {
    let journal = Arc::new(Mutex::new(Journal::default()));
    let mut cluster = SimCluster::new("prod", PlatformOptions::fast());
    let nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .map(|n| {
            // The no-overlap check of `Recorded` is for Singleton apps: one journal per node.
            let journal = Arc::new(Mutex::new(Journal::default()));
            node(
                n,
                App::spread("pool").unwrap(),
                ProcessConfig::new("sleep", ["1000"]),
                &journal,
            )
        })
        .collect();
    drop(journal);
    for (name, n) in ["n1", "n2"].iter().zip(&nodes) {
        cluster.start_node(name, vec![n.app.clone()]).await.unwrap();
    }
    // `start_node` returns once the platform runs; Spread resources are activated right after.
    wait_until(
        "every node runs its backend",
        Duration::from_secs(10),
        || nodes.iter().all(|n| n.resource.stats().state == "running"),
    )
    .await;
    let pids: Vec<u32> = nodes
        .iter()
        .map(|n| n.backend.inner.pid().unwrap())
        .collect();
    assert!(pids.iter().all(|p| pid_alive(*p)));
    cluster.stop_node("n1").await.unwrap();
    cluster.stop_node("n2").await.unwrap();
    assert!(pids.iter().all(|p| !pid_alive(*p)));
}
