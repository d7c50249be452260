//! Enforced placement with the real binary: real nats-server, real daemons, real process
//! backends (`sleep <marker>`, found in /proc and attributed to a daemon by parent pid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_testkit::nats_server::NatsServer;
use common::{Daemon, Scratch, cli, wait_for};
use serde_json::Value;

/// Membership and election TTL of the test config (fast profile).
const TTL: Duration = Duration::from_secs(3);
/// Slack over a TTL for detection, re-planning and starting the backend.
const BOUND: Duration = Duration::from_secs(10);

fn config(platform: &str, nats_url: &str, apps: &str) -> String {
    format!(
        r#"platform = "{platform}"
shutdown_timeout = "5s"
[nats]
servers = ["{nats_url}"]
[election]
profile = "fast"
[membership]
ttl = "3s"
refresh = "500ms"
{apps}"#
    )
}

/// A process backend `sleep <marker>` (the marker identifies the app's processes).
fn sleep_backend(marker: u64) -> String {
    format!(
        "[apps.backend]\ntype = \"process\"\ncommand = \"sleep\"\nargs = [\"{marker}\"]\ngraceful_timeout = \"1s\"\n"
    )
}

/// A marker unique to this test process and `k`.
fn marker(k: u64) -> u64 {
    7_000_000 + u64::from(std::process::id()) * 10 + k
}

/// The nodes whose daemon is the parent of a backend process.
fn backend_nodes(marker: u64, daemons: &[Daemon]) -> Vec<String> {
    let mut nodes: Vec<String> = common::sleep_processes(marker)
        .values()
        .filter_map(|ppid| {
            daemons
                .iter()
                .find(|d| d.child.id() == *ppid)
                .map(|d| d.node.clone())
        })
        .collect();
    nodes.sort();
    nodes
}

/// Samples the process list every 10 ms and records the highest count seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    over: Arc<Mutex<Vec<BTreeMap<u32, u32>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(marker: u64, limit: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let over = Arc::new(Mutex::new(Vec::new()));
        let (s, m, o) = (stop.clone(), max.clone(), over.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let seen = common::sleep_processes(marker);
                m.fetch_max(seen.len(), Ordering::SeqCst);
                if seen.len() > limit {
                    o.lock().unwrap().push(seen);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            max,
            over,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns (max seen, samples over the limit).
    fn finish(mut self) -> (usize, Vec<BTreeMap<u32, u32>>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        (
            self.max.load(Ordering::SeqCst),
            self.over.lock().unwrap().clone(),
        )
    }
}

fn status(cfg: &str) -> Option<Value> {
    let r = cli(&["--config", cfg, "--json", "status"]);
    (r.code == 0).then(|| r.json())
}

fn node_status(cfg: &str, node: &str) -> Option<Value> {
    let r = cli(&["--config", cfg, "--json", "node", "status", node]);
    (r.code == 0).then(|| r.json())
}

/// Apps running on `node` (role other than stopped) per `node status`.
fn running_apps(cfg: &str, node: &str) -> Option<Vec<String>> {
    let v = node_status(cfg, node)?;
    Some(
        v["apps"]
            .as_array()?
            .iter()
            .filter(|a| a["role"] != "stopped")
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect(),
    )
}

fn leader(cfg: &str, app: &str) -> Option<String> {
    let v = status(cfg)?;
    let a = v["apps"].as_array()?.iter().find(|a| a["name"] == app)?;
    a["leader"].as_str().map(str::to_owned)
}

fn start(cfg: &Path, dir: &Path, nodes: &[&str]) -> Vec<Daemon> {
    nodes.iter().map(|n| Daemon::start(cfg, n, dir)).collect()
}

fn kill9(daemons: &mut [Daemon], node: &str) {
    let d = daemons.iter_mut().find(|d| d.node == node).unwrap();
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(5));
}

fn logs(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("--- {} ---\n{}", d.node, d.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn singleton_backend_runs_once_fails_over_drains_and_moves() {
    let server = NatsServer::start();
    let dir = Scratch::new("pl-singleton");
    let m = marker(1);
    let apps = format!(
        "[[apps]]\nname = \"db\"\nmode = \"singleton\"\n{}",
        sleep_backend(m)
    );
    let cfg = dir.file("cluster.toml", &config("pls", &server.url(), &apps));
    let cfg_s = cfg.to_str().unwrap();
    let mut daemons = start(&cfg, &dir.0, &["n1", "n2", "n3"]);
    let sampler = Sampler::start(m, 1);

    // Exactly once, on the leader.
    let first = wait_for("db backend running once", Duration::from_secs(30), || {
        let l = leader(cfg_s, "db")?;
        (backend_nodes(m, &daemons) == [l.clone()]).then_some(l)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(backend_nodes(m, &daemons), std::slice::from_ref(&first));

    // SIGKILL of the leader daemon: the backend runs elsewhere within TTL + bound.
    let killed_at = Instant::now();
    kill9(&mut daemons, &first);
    let second = wait_for("backend on another node", TTL + BOUND, || {
        let nodes = backend_nodes(m, &daemons);
        (nodes.len() == 1 && nodes[0] != first).then(|| nodes[0].clone())
    });
    eprintln!(
        "failover after SIGKILL: backend running on {second} after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(
        common::sleep_processes(m).len(),
        1,
        "the killed leader's backend is gone"
    );

    // Drain via the CLI: progress lines, completes, the node runs nothing.
    let r = cli(&[
        "--config",
        cfg_s,
        "node",
        "drain",
        &second,
        "--timeout",
        "30s",
    ]);
    assert_eq!(r.code, 0, "drain failed: {r:?}\n{}", logs(&daemons));
    assert!(r.stdout.contains(&format!("drain {second}: [")), "{r:?}");
    assert!(r.stdout.contains("1/1 moved"), "{r:?}");
    assert!(r.stdout.contains("drained"), "{r:?}");
    assert_eq!(running_apps(cfg_s, &second).unwrap(), Vec::<String>::new());
    let third = wait_for("backend after drain", Duration::from_secs(10), || {
        let nodes = backend_nodes(m, &daemons);
        (nodes.len() == 1).then(|| nodes[0].clone())
    });
    assert_ne!(third, second);
    assert_eq!(leader(cfg_s, "db").as_deref(), Some(third.as_str()));

    // --json drain of an empty node: JSON lines, ending with the drained event.
    let r = cli(&["--config", cfg_s, "--json", "node", "drain", &second]);
    assert_eq!(r.code, 0, "{r:?}");
    let last: Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "drained");
    assert_eq!(last["remaining"], serde_json::json!([]));

    // Uncordon, then move the Singleton to the named node.
    let r = cli(&["--config", cfg_s, "node", "uncordon", &second]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli(&[
        "--config",
        cfg_s,
        "node",
        "wait-stable",
        &second,
        "--timeout",
        "20s",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    // The lease (what `leader` reads) is won before the promotion completes (the backend's
    // first health check): a move is accepted only from the instance whose role is leader.
    wait_for(
        "db promoted on the new leader",
        Duration::from_secs(10),
        || {
            let v = cli(&["--config", cfg_s, "--json", "app", "status", "db"]).json();
            v["instances"]
                .as_array()?
                .iter()
                .any(|i| i["node"] == third.as_str() && i["role"] == "leader")
                .then_some(())
        },
    );
    let r = cli(&[
        "--config", cfg_s, "app", "move", "db", "--from", &third, "--to", &second,
    ]);
    assert_eq!(r.code, 0, "move failed: {r:?}\n{}", logs(&daemons));
    assert!(
        r.stdout
            .contains(&format!("moved from {third} to {second}")),
        "{r:?}"
    );
    wait_for("backend follows the move", Duration::from_secs(10), || {
        (backend_nodes(m, &daemons) == [second.clone()]).then_some(())
    });

    // Unknown node and app: exit 3.
    assert_eq!(cli(&["--config", cfg_s, "node", "drain", "nope"]).code, 3);
    assert_eq!(cli(&["--config", cfg_s, "node", "cordon", "nope"]).code, 3);
    assert_eq!(
        cli(&["--config", cfg_s, "app", "move", "nope", "--from", &second]).code,
        3
    );

    let (max, over) = sampler.finish();
    assert!(
        over.is_empty(),
        "the backend ran on two nodes at once: {over:?}"
    );
    assert_eq!(max, 1);
}

#[test]
fn replicas_run_exactly_n_and_are_rescheduled_after_sigkill() {
    let server = NatsServer::start();
    let dir = Scratch::new("pl-replicas");
    let m = marker(2);
    let apps = format!(
        "[[apps]]\nname = \"work\"\nmode = \"replicas\"\nreplicas = 3\n{}",
        sleep_backend(m)
    );
    let cfg = dir.file("cluster.toml", &config("plr", &server.url(), &apps));
    let cfg_s = cfg.to_str().unwrap();
    let mut daemons = start(&cfg, &dir.0, &["n1", "n2", "n3", "n4", "n5"]);
    let placed = wait_for("3 replicas", Duration::from_secs(40), || {
        let nodes = backend_nodes(m, &daemons);
        (nodes.len() == 3).then_some(nodes)
    });
    let mut distinct = placed.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "on three distinct nodes: {placed:?}");
    // Stays exactly 3.
    let sampler = Sampler::start(m, 3);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(backend_nodes(m, &daemons), placed);

    // SIGKILL of a node running an instance: rescheduled within membership TTL + bound.
    let victim = placed[0].clone();
    kill9(&mut daemons, &victim);
    let after = wait_for("rescheduled replica", TTL + BOUND, || {
        let nodes = backend_nodes(m, &daemons);
        (nodes.len() == 3 && !nodes.contains(&victim)).then_some(nodes)
    });
    assert!(after.iter().all(|n| *n != victim));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(backend_nodes(m, &daemons), after);
    let (max, over) = sampler.finish();
    assert!(over.is_empty(), "more than 3 instances: {over:?}");
    assert_eq!(max, 3);

    // A balanced cluster: the rebalance plan is empty (hysteresis).
    let r = cli(&["--config", cfg_s, "rebalance", "--all", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("0 step(s)"), "{r:?}");
    let r = cli(&[
        "--config",
        cfg_s,
        "--json",
        "app",
        "rebalance",
        "work",
        "--dry-run",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["plan"]["migrations"], serde_json::json!([]));
    // Auto-rebalance settings and status through the admin service.
    let r = cli(&[
        "--config",
        cfg_s,
        "config",
        "set",
        "auto-rebalance.enabled",
        "true",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli(&[
        "--config",
        cfg_s,
        "config",
        "set",
        "auto-rebalance.interval",
        "5m",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli(&["--config", cfg_s, "--json", "config", "get"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["config"]["auto_rebalance"]["enabled"], true);
    assert_eq!(r.json()["config"]["auto_rebalance"]["interval_ms"], 300_000);
    let r = cli(&[
        "--config",
        cfg_s,
        "config",
        "set",
        "auto-rebalance.bogus",
        "1",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("unknown setting"), "{r:?}");
    let r = cli(&[
        "--config",
        cfg_s,
        "config",
        "set",
        "migration-policy.maintenance-windows",
        "25:00-06:00",
    ]);
    assert_eq!(r.code, 4, "{r:?}");
    let r = cli(&["--config", cfg_s, "--json", "rebalance", "status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["status"]["in_progress"], false);
    assert_eq!(cli(&["--config", cfg_s, "rebalance", "cancel"]).code, 0);
    assert_eq!(
        cli(&["--config", cfg_s, "app", "rebalance", "nope", "--dry-run"]).code,
        3
    );
}

#[test]
fn labels_place_pending_apps_migrate_on_label_apps_and_cordon_survives_controller_failover() {
    let server = NatsServer::start();
    let dir = Scratch::new("pl-labels");
    let m = marker(3);
    let apps = format!(
        "[[apps]]\nname = \"store\"\nmode = \"singleton\"\n[apps.placement]\non_label = {{ tier = \"storage\" }}\n{}\n[[apps]]\nname = \"web\"\nmode = \"spread\"\n",
        sleep_backend(m)
    );
    let cfg = dir.file("cluster.toml", &config("pll", &server.url(), &apps));
    let cfg_s = cfg.to_str().unwrap();
    let mut daemons = start(&cfg, &dir.0, &["n1", "n2", "n3"]);
    // No node qualifies: pending, nothing runs.
    wait_for("web everywhere", Duration::from_secs(30), || {
        let v = status(cfg_s)?;
        let web = v["apps"].as_array()?.iter().find(|a| a["name"] == "web")?;
        (web["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["role"] == "active")
            .count()
            == 3)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        common::sleep_processes(m).is_empty(),
        "store must be pending"
    );

    // A node that qualifies later picks the pending app up.
    let r = cli(&["--config", cfg_s, "node", "label", "n2", "tier=storage"]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_for("store on n2", Duration::from_secs(15), || {
        (backend_nodes(m, &daemons) == ["n2"]).then_some(())
    });

    // A label change migrates the OnLabel app.
    let r = cli(&["--config", cfg_s, "node", "label", "n3", "tier=storage"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = cli(&["--config", cfg_s, "node", "label", "n2", "tier-"]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_for("store migrated to n3", Duration::from_secs(15), || {
        (backend_nodes(m, &daemons) == ["n3"]).then_some(())
    });
    let r = cli(&[
        "--config",
        cfg_s,
        "node",
        "wait-stable",
        "n2",
        "--timeout",
        "20s",
    ]);
    assert_eq!(r.code, 0, "{r:?}");

    // Cordon survives a controller failover: kill the daemon holding controller.placement.
    let controller = wait_for("controller known", Duration::from_secs(10), || {
        controller_of(cfg_s, "n1")
    });
    let cordoned = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != controller && *n != "n3")
        .unwrap();
    let r = cli(&["--config", cfg_s, "node", "cordon", cordoned]);
    assert_eq!(r.code, 0, "{r:?}");
    kill9(&mut daemons, &controller);
    let survivor = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != controller)
        .unwrap();
    let next = wait_for("new controller", TTL + BOUND, || {
        controller_of(cfg_s, survivor).filter(|c| *c != controller)
    });
    assert_ne!(next, controller);
    let cordons = cordoned_nodes(cfg_s, survivor);
    assert!(cordons.contains(&cordoned.to_owned()), "{cordons:?}");
    // The cordoned node gets nothing new: label it storage and take storage away elsewhere.
    let r = cli(&["--config", cfg_s, "node", "label", cordoned, "tier=storage"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!backend_nodes(m, &daemons).contains(&cordoned.to_owned()));
    let r = cli(&["--config", cfg_s, "node", "uncordon", cordoned]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// The placement controller's node as seen by `node` (`cluster placement --from node`).
fn controller_of(cfg: &str, node: &str) -> Option<String> {
    let v = placement_view(cfg, node)?;
    v["controller"].as_str().map(str::to_owned)
}

fn cordoned_nodes(cfg: &str, node: &str) -> Vec<String> {
    placement_view(cfg, node)
        .and_then(|v| {
            v["cordoned"].as_array().map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn placement_view(cfg: &str, node: &str) -> Option<Value> {
    let r = cli(&["--config", cfg, "--json", "placement", "--from", node]);
    (r.code == 0).then(|| r.json())
}
