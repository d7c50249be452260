//! Helpers for tests of the runtime over real NATS.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::nats::{ConnectOptions, NatsConnection};
use cluster::{App, Platform, PlatformOptions, Result};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Test timing: the fast election profile (TTL 3 s) and fast membership (TTL 3 s).
pub fn options(replicas: usize) -> PlatformOptions {
    PlatformOptions {
        replicas,
        ..PlatformOptions::fast()
    }
}

/// Connection options with quick reconnects.
pub fn connect_options(urls: &[String], name: &str) -> ConnectOptions {
    ConnectOptions::new(urls.iter().cloned())
        .name(name)
        .ping_interval(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(2))
}

/// One node over its own NATS connection.
pub struct NatsNode {
    pub platform: Platform,
    pub conn: NatsConnection,
    pub apps: BTreeMap<String, App>,
    pub run: Option<JoinHandle<Result<()>>>,
}

impl NatsNode {
    pub fn app(&self, name: &str) -> &App {
        &self.apps[name]
    }

    /// Graceful stop.
    pub async fn stop(mut self) -> Result<()> {
        self.platform.shutdown();
        let r = self.run.take().unwrap().await.unwrap();
        let _ = self.conn.close().await;
        r
    }
}

/// Starts node `node` of `platform` with `apps` over a new connection to `urls`.
pub async fn start_node(
    urls: &[String],
    platform: &str,
    node: &str,
    apps: Vec<App>,
    options: PlatformOptions,
) -> Result<NatsNode> {
    let conn = cluster::nats::connect(connect_options(urls, node)).await?;
    let p = cluster::nats::platform(&conn, platform, node, options.replicas)?
        .options(options)
        .build()?;
    run_node(conn, p, apps).await
}

/// Registers `apps` on the built platform `p` (connected through `conn`), runs it and waits
/// until it started.
pub async fn run_node(conn: NatsConnection, p: Platform, apps: Vec<App>) -> Result<NatsNode> {
    for a in &apps {
        p.register(a)?;
    }
    let runner = p.clone();
    let mut run = tokio::spawn(async move { runner.run().await });
    tokio::select! {
        r = p.wait_started() => if let Err(e) = r {
            // Prefer the error `run` returned (the reason start failed).
            return Err(run.await.unwrap().err().unwrap_or(e));
        },
        r = &mut run => return Err(r.unwrap().expect_err("run ended before start")),
    }
    Ok(NatsNode {
        platform: p,
        conn,
        apps: apps
            .into_iter()
            .map(|a| (a.name().to_string(), a))
            .collect(),
        run: Some(run),
    })
}

/// Names of nodes whose `app` is leader.
pub fn leaders(nodes: &[&NatsNode], app: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.apps.get(app).is_some_and(|a| a.is_leader()))
        .map(|n| n.platform.node_id().to_string())
        .collect()
}

/// Waits (real time) until exactly one node leads `app`, asserting never two.
pub async fn wait_leader(nodes: &[&NatsNode], app: &str, within: Duration) -> (String, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let l = leaders(nodes, app);
        assert!(l.len() <= 1, "two leaders of {app}: {l:?}");
        if let Some(l) = l.into_iter().next() {
            return (l, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "no leader of {app} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `cond` (real time).
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
