//! A JetStream cluster of real `nats-server` processes on loopback.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::http;
use super::process::{HEALTH_TIMEOUT, ScratchDir, ServerProcess, free_ports, write_file};

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    monitor_port: u16,
    args: Vec<OsString>,
    process: ServerProcess,
}

/// `n` routed `nats-server`s with JetStream (for R3 buckets), on free loopback ports chosen by
/// bind-and-release, each with its own store directory under one temp directory.
///
/// Servers are named `n1`..`nN` and indexed from 0 in this API. Everything is killed and
/// removed on drop; when the test panics the directory (with the logs) is kept and printed.
#[derive(Debug)]
pub struct NatsCluster {
    members: Vec<Member>,
    // Declared last: dropped after the processes are killed.
    dir: ScratchDir,
}

/// How many times [`NatsCluster::start`] tries, each on newly chosen ports.
const START_ATTEMPTS: usize = 3;

impl NatsCluster {
    /// Starts `n` servers and waits until every one reports healthy.
    ///
    /// # Panics
    ///
    /// When the binary is missing or too old (with an install hint) or the cluster does not
    /// become healthy in three attempts on fresh ports (with the logs' tails).
    pub fn start(n: usize) -> Self {
        // Free ports are found by binding and releasing them, so a concurrent test can take
        // one before a server binds it (seen once in CI: a route port refused, the cluster never
        // formed). A failed start is dropped (its servers killed) and tried again on new ports.
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(n) {
                Ok(cluster) => return cluster,
                Err(message) => failures.push(message),
            }
        }
        panic!(
            "cannot start nats cluster ({START_ATTEMPTS} attempts): {}",
            failures.join("\n---\n")
        )
    }

    /// Like [`NatsCluster::start`], returning an error when the cluster does not come up.
    ///
    /// # Panics
    ///
    /// When the binary is missing or too old.
    pub fn try_start(n: usize) -> Result<Self, String> {
        if n == 0 {
            return Err("a cluster needs at least one server".to_owned());
        }
        let dir =
            ScratchDir::new("nats-cluster").map_err(|e| format!("cannot create temp dir: {e}"))?;
        let ports = free_ports(3 * n)?;
        let (client, rest) = ports.split_at(n);
        let (route, monitor) = rest.split_at(n);
        let routes: Vec<String> = route
            .iter()
            .map(|p| format!("    nats-route://127.0.0.1:{p}"))
            .collect();
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let config = dir.path().join(format!("{name}.conf"));
            let store = dir.path().join(format!("data-{name}"));
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_mem: 256MB\n  max_file: 1GB\n}}\n\
                 cluster {{\n  name: testkit\n  listen: 127.0.0.1:{route}\n  routes: [\n{routes}\n  ]\n}}\n",
                client = client[i],
                monitor = monitor[i],
                route = route[i],
                store = store.display().to_string(),
                routes = routes.join("\n"),
            );
            write_file(&config, &text)?;
            let process = ServerProcess::new(dir.path().join(format!("{name}.log")));
            members.push(Member {
                name,
                client_port: client[i],
                monitor_port: monitor[i],
                args: vec!["-c".into(), config.into()],
                process,
            });
        }
        for member in &mut members {
            member.process.spawn(&member.args)?;
        }
        let mut cluster = Self { members, dir };
        for i in 0..n {
            cluster.wait_healthy(i)?;
        }
        cluster.wait_meta_leader()?;
        Ok(cluster)
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no servers (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client URLs of all servers.
    pub fn urls(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.url(i)).collect()
    }

    /// Client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Client address of server `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client_port))
    }

    /// Monitoring address of server `i`.
    pub fn monitor_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].monitor_port))
    }

    /// Server name of server `i` (`n1`, ...).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Index of the server named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name)
    }

    /// Log file of server `i`.
    pub fn log_path(&self, i: usize) -> &Path {
        self.members[i].process.log()
    }

    /// The temp directory holding configs, stores and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether server `i` is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].process.is_running()
    }

    /// SIGKILL server `i` (a crash); its store is kept.
    pub fn kill(&mut self, i: usize) {
        self.members[i].process.kill();
    }

    /// SIGTERM server `i` (clean shutdown); its store is kept.
    pub fn stop(&mut self, i: usize) {
        self.members[i].process.stop();
    }

    /// SIGSTOP server `i`.
    pub fn pause(&mut self, i: usize) {
        self.members[i].process.pause();
    }

    /// SIGCONT server `i`.
    pub fn resume(&mut self, i: usize) {
        self.members[i].process.resume();
    }

    /// Stops server `i` if running (SIGTERM), starts it again with the same ports and store,
    /// and waits until it is healthy.
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.start_again(i);
    }

    /// Starts a stopped or killed server `i` again and waits until it is healthy.
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub fn start_again(&mut self, i: usize) {
        if self.members[i].process.is_running() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let member = &mut self.members[i];
            let result = member.process.spawn(&member.args);
            let result = result.and_then(|()| self.wait_healthy(i));
            match result {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot restart {}: {e}", self.members[i].name)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until server `i` answers `/healthz` with 200.
    pub fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let monitor = self.monitor_addr(i);
        self.members[i].process.wait_healthy(monitor, "/healthz")
    }

    /// The name of the JetStream meta leader, as seen by the first running server.
    pub fn meta_leader(&mut self) -> Option<String> {
        let body = self.jsz("/jsz")?;
        body["meta_cluster"]["leader"].as_str().map(str::to_owned)
    }

    /// The index of the server leading `stream` (a KV bucket `B` is stream `KV_B`).
    pub fn stream_leader(&mut self, stream: &str) -> Option<usize> {
        let body = self.jsz("/jsz?streams=true")?;
        let accounts = body["account_details"].as_array()?;
        let leader = accounts
            .iter()
            .filter_map(|a| a["stream_detail"].as_array())
            .flatten()
            .find(|s| s["name"].as_str() == Some(stream))
            .and_then(|s| s["cluster"]["leader"].as_str())?
            .to_owned();
        self.index_of(&leader)
    }

    fn jsz(&mut self, path: &str) -> Option<serde_json::Value> {
        for i in 0..self.members.len() {
            if !self.members[i].process.is_running() {
                continue;
            }
            if let Ok((200, body)) = http::get(self.monitor_addr(i), path)
                && let Ok(value) = serde_json::from_str(&body)
            {
                return Some(value);
            }
        }
        None
    }

    fn wait_meta_leader(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        while Instant::now() < deadline {
            if self.meta_leader().is_some_and(|l| !l.is_empty()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no JetStream meta leader after {HEALTH_TIMEOUT:?}; logs in {}",
            self.dir.path().display()
        ))
    }
}
