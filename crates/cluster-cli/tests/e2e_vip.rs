//! Issue 4 end to end: three `cluster run` daemons, each in its own network namespace on a
//! bridged 198.51.100.0/24 LAN, a real nats-server in the bridge namespace, and a Singleton app
//! with a VIP (`198.51.100.100/32` on `eth0`) and a process backend (`sleep <marker>`).
//!
//! A sampler reads every namespace's addresses and the process list every ~10 ms during the
//! whole test and fails on any instant with two VIP holders or two backends. Phase (e)
//! `SIGSTOP`s the leader daemon for 6 s: its deadline guards remove the VIP and stop the
//! backend before another node takes over, and the resumed daemon takes neither back.
//!
//! Needs root (namespaces) and iproute2 (`ip`); fails with an install hint otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Run, Scratch, bin, wait_for};
use serde_json::Value;

const VIP: &str = "198.51.100.100";
const NATS_ADDR: &str = "198.51.100.1";
/// Election TTL of the `fast` profile.
const TTL: Duration = Duration::from_secs(3);
/// Slack over a TTL for detection, the claim and starting the backend.
const BOUND: Duration = Duration::from_secs(10);
const NODES: [&str; 3] = ["n1", "n2", "n3"];

const IP_HINT: &str = "this test needs the `ip` tool from iproute2 (apt-get install -y iproute2) \
                       and root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW) to create network \
                       namespaces";

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip`: {e}; {IP_HINT}"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}; {IP_HINT}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The LAN: a hub namespace with the bridge (198.51.100.1, nats-server) and one namespace
/// per node with `eth0` at 198.51.100.(10+i). Deleted on drop.
struct Lan {
    tag: String,
    created: Vec<String>,
}

impl Lan {
    fn new() -> Self {
        let mut lan = Self {
            tag: format!("cve{}", std::process::id()),
            created: Vec::new(),
        };
        let hub = lan.ns("hub");
        ip(&["netns", "add", &hub]);
        lan.created.push(hub.clone());
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{NATS_ADDR}/24"),
            "dev",
            "br0",
        ]);
        for (i, node) in NODES.iter().enumerate() {
            let ns = lan.ns(node);
            ip(&["netns", "add", &ns]);
            lan.created.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            let addr = format!("198.51.100.{}/24", 10 + i);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
        }
        lan
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Whether `ns`'s `eth0` carries the VIP.
fn holds(ns: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "addr", "show", "dev", "eth0"])
        .output();
    out.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("inet {VIP}/")))
    })
}

/// A child process started through `ip netns exec` (which execs: the pid is the program's).
struct NsProc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl NsProc {
    fn spawn(ns: &str, name: &str, program: &Path, args: &[&str], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "info")
            .env("E2E_NODE", name)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec`: {e}; {IP_HINT}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) of our own child with a valid signal: a graceful stop first, so
            // a daemon releases its VIP and stops its backend.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM)
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts nats-server (JetStream) in the hub namespace on 198.51.100.1:4222.
fn start_nats(lan: &Lan, dir: &Path) -> NsProc {
    let bin = cluster_testkit::nats_server::nats_server_binary();
    let store = dir.join("js");
    let log = dir.join("nats.log");
    let server = NsProc::spawn(
        &lan.ns("hub"),
        "nats",
        &bin,
        &[
            "-a",
            NATS_ADDR,
            "-p",
            "4222",
            "-js",
            "-sd",
            store.to_str().unwrap(),
        ],
        log.clone(),
    );
    wait_for("nats-server ready", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("Server is ready"))
    });
    server
}

fn marker() -> u64 {
    8_000_000 + u64::from(std::process::id())
}

/// The cluster under test.
struct Cluster {
    lan: Lan,
    dir: Scratch,
    cfg: PathBuf,
    marker: u64,
    daemons: Arc<Mutex<Vec<NsProc>>>,
    // Declared last: stopped after the daemons.
    _nats: NsProc,
}

impl Cluster {
    fn start() -> Self {
        let lan = Lan::new();
        let dir = Scratch::new("e2e-vip");
        let nats = start_nats(&lan, &dir.0);
        let marker = marker();
        let flags = dir.0.display().to_string();
        // The backend refuses to run on a node whose `broken-<node>` flag file exists.
        let script = format!(
            "if [ -e {flags}/broken-$E2E_NODE ]; then echo broken; exit 1; fi; exec sleep {marker}"
        );
        let cfg = dir.file(
            "cluster.toml",
            &format!(
                r#"platform = "vip"
shutdown_timeout = "5s"
[nats]
servers = ["nats://{NATS_ADDR}:4222"]
[election]
profile = "fast"
[membership]
ttl = "3s"
refresh = "500ms"
[[apps]]
name = "db"
mode = "singleton"
[apps.vip]
cidr = "{VIP}/32"
interface = "eth0"
garp_count = 2
garp_interval = "100ms"
[apps.backend]
type = "process"
command = "sh"
args = ["-c", {script:?}]
graceful_timeout = "1s"
"#
            ),
        );
        let cluster = Self {
            lan,
            dir,
            cfg,
            marker,
            daemons: Arc::new(Mutex::new(Vec::new())),
            _nats: nats,
        };
        for n in NODES {
            cluster.start_daemon(n);
        }
        cluster
    }

    fn start_daemon(&self, node: &str) {
        let d = NsProc::spawn(
            &self.lan.ns(node),
            node,
            Path::new(bin()),
            &[
                "run",
                "--config",
                self.cfg.to_str().unwrap(),
                "--node",
                node,
            ],
            self.dir.0.join(format!("{node}.log")),
        );
        let mut daemons = self.daemons.lock().unwrap();
        daemons.retain(|x| x.name != node);
        daemons.push(d);
    }

    fn signal(&self, node: &str, signal: i32) {
        let daemons = self.daemons.lock().unwrap();
        let pid = daemons.iter().find(|d| d.name == node).unwrap().pid();
        // SAFETY: kill(2) of our own child with a valid signal.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid as i32, signal) };
        assert_eq!(rc, 0);
    }

    fn node_log(&self, node: &str) -> String {
        let daemons = self.daemons.lock().unwrap();
        daemons.iter().find(|d| d.name == node).unwrap().log_text()
    }

    fn kill9(&self, node: &str) {
        let mut daemons = self.daemons.lock().unwrap();
        daemons.iter_mut().find(|d| d.name == node).unwrap().kill9();
    }

    /// The nodes whose eth0 carries the VIP.
    fn holders(&self) -> Vec<String> {
        NODES
            .iter()
            .filter(|n| holds(&self.lan.ns(n)))
            .map(|n| (*n).to_owned())
            .collect()
    }

    /// The nodes whose daemon is the parent of a backend process (and the total count).
    fn backend_nodes(&self) -> (Vec<String>, usize) {
        let procs = common::sleep_processes(self.marker);
        let daemons = self.daemons.lock().unwrap();
        let nodes = procs
            .values()
            .filter_map(|ppid| daemons.iter().find(|d| d.pid() == *ppid))
            .map(|d| d.name.clone())
            .collect();
        (nodes, procs.len())
    }

    /// Runs the CLI in the hub namespace (where NATS is).
    fn cli(&self, args: &[&str]) -> Run {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lan.ns("hub")])
            .arg(bin())
            .arg("--config")
            .arg(&self.cfg)
            .args(args)
            .env_remove("CLUSTER_CONFIG")
            .env_remove("CLUSTER_NATS")
            .env_remove("CLUSTER_NODE")
            .env_remove("CLUSTER_PLATFORM")
            .output()
            .unwrap();
        out.into()
    }

    fn leader(&self) -> Option<String> {
        let r = self.cli(&["--json", "status"]);
        if r.code != 0 {
            return None;
        }
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        let a = v["apps"].as_array()?.iter().find(|a| a["name"] == "db")?;
        a["leader"].as_str().map(str::to_owned)
    }

    /// Waits until exactly one node holds the VIP and runs the backend, the same node,
    /// optionally other than `not`, and it is the app's leader.
    fn settled(&self, what: &str, within: Duration, not: Option<&str>) -> String {
        wait_for(what, within, || {
            let holders = self.holders();
            let (nodes, total) = self.backend_nodes();
            (holders.len() == 1
                && total == 1
                && nodes == holders
                && Some(holders[0].as_str()) != not
                && self.leader().as_deref() == Some(holders[0].as_str()))
            .then(|| holders[0].clone())
        })
    }

    fn logs(&self) -> String {
        let daemons = self.daemons.lock().unwrap();
        daemons
            .iter()
            .map(|d| format!("--- {} ---\n{}", d.name, d.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Samples holders and backends every ~10 ms. Two holders count only when a second read of
/// both, after reading all namespaces, still shows both: during a handover a node only gains
/// or only loses the address, so this means both held it at one instant.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicUsize>,
    violations: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(cluster: &Cluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let namespaces: Vec<(String, String)> = NODES
            .iter()
            .map(|n| ((*n).to_owned(), cluster.lan.ns(n)))
            .collect();
        let marker = cluster.marker;
        let (s, c, v) = (stop.clone(), samples.clone(), violations.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            while !s.load(Ordering::SeqCst) {
                let first: Vec<&(String, String)> =
                    namespaces.iter().filter(|(_, ns)| holds(ns)).collect();
                if first.len() > 1 {
                    let still: Vec<&String> = first
                        .iter()
                        .filter(|(_, ns)| holds(ns))
                        .map(|(n, _)| n)
                        .collect();
                    if still.len() > 1 {
                        v.lock().unwrap().push(format!(
                            "{:?}: two VIP holders {still:?}",
                            started.elapsed()
                        ));
                    }
                }
                let procs = common::sleep_processes(marker);
                if procs.len() > 1 {
                    v.lock()
                        .unwrap()
                        .push(format!("{:?}: two backends {procs:?}", started.elapsed()));
                }
                c.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            samples,
            violations,
            thread: Some(thread),
        }
    }

    fn check(&self, phase: &str) {
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "{phase}: {v:?}");
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.check("at the end");
        self.samples.load(Ordering::SeqCst)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Asserts that exactly `holder` holds the VIP and runs the backend for `period`.
fn stays(cluster: &Cluster, holder: &str, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert_eq!(cluster.holders(), [holder], "VIP holder while settled");
        let (nodes, total) = cluster.backend_nodes();
        assert_eq!(
            (nodes.as_slice(), total),
            ([holder.to_owned()].as_slice(), 1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn vip_and_backend_fail_over_together_with_one_holder_at_a_time() {
    let cluster = Cluster::start();
    let sampler = Sampler::start(&cluster);

    // (a) Exactly one backend and one VIP holder, on the leader.
    let first = cluster.settled(
        "VIP and backend on the leader",
        Duration::from_secs(40),
        None,
    );
    stays(&cluster, &first, Duration::from_secs(2));
    sampler.check("steady state");
    eprintln!("(a) settled on {first}");

    // (b) SIGKILL of the leader daemon: its backend dies with it, its watchdog removes the
    // VIP, and another node takes both within TTL + bound.
    let killed = Instant::now();
    cluster.kill9(&first);
    let gone = wait_for(
        "the killed node's VIP removed",
        Duration::from_secs(5),
        || (!cluster.holders().contains(&first)).then(|| killed.elapsed()),
    );
    let second = cluster.settled("failover after SIGKILL", TTL + BOUND, Some(&first));
    eprintln!(
        "(b) SIGKILL of {first}: its VIP gone after {gone:?}; {second} holds VIP + backend after {:?}",
        killed.elapsed()
    );
    sampler.check("after SIGKILL");
    cluster.start_daemon(&first);
    stays(&cluster, &second, Duration::from_secs(2));

    // (c) Graceful step-down moves both, without overlap.
    let t = Instant::now();
    let r = cluster.cli(&["stepdown", "--app", "db"]);
    assert_eq!(r.code, 0, "stepdown failed: {r:?}\n{}", cluster.logs());
    let third = cluster.settled("after step-down", BOUND, Some(&second));
    eprintln!(
        "(c) step-down of {second}: {third} holds VIP + backend after {:?}",
        t.elapsed()
    );
    sampler.check("after step-down");
    stays(&cluster, &third, Duration::from_secs(1));

    // (d) A backend that keeps failing: its process dies and every restart fails, so the
    // coordinator gives up and steps the node down; the standby takes over.
    std::fs::write(cluster.dir.0.join(format!("broken-{third}")), "").unwrap();
    let (pid, _) = common::sleep_processes(cluster.marker)
        .into_iter()
        .next()
        .unwrap();
    let t = Instant::now();
    // SAFETY: kill(2) of the backend process found above.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let fourth = cluster.settled(
        "standby takes over from a failing backend",
        Duration::from_secs(60),
        Some(&third),
    );
    eprintln!(
        "(d) failing backend on {third}: {fourth} holds VIP + backend after {:?}",
        t.elapsed()
    );
    assert!(
        cluster.logs().contains("backend.give_up") || cluster.logs().contains("give_up"),
        "the coordinator gave up on {third}'s backend"
    );
    stays(&cluster, &fourth, Duration::from_secs(1));

    // (e) SIGSTOP of the leader daemon for 6 s (issue 11): its guards stop the backend and
    // remove the VIP at its deadline, before another node takes over; once resumed it takes
    // neither back.
    std::fs::remove_file(cluster.dir.0.join(format!("broken-{third}"))).unwrap();
    cluster.signal(&fourth, libc::SIGSTOP);
    let t = Instant::now();
    let gone = wait_for(
        "the stopped leader's VIP and backend gone",
        Duration::from_secs(5),
        || {
            (!cluster.holders().contains(&fourth) && !cluster.backend_nodes().0.contains(&fourth))
                .then(|| t.elapsed())
        },
    );
    let fifth = cluster.settled("failover after SIGSTOP", TTL + BOUND, Some(&fourth));
    eprintln!(
        "(e) SIGSTOP of {fourth}: its VIP and backend gone after {gone:?}; {fifth} holds VIP + \
         backend after {:?}",
        t.elapsed()
    );
    sampler.check("after SIGSTOP");
    std::thread::sleep(Duration::from_secs(6).saturating_sub(t.elapsed()));
    cluster.signal(&fourth, libc::SIGCONT);
    stays(&cluster, &fifth, Duration::from_secs(3));
    let log = cluster.node_log(&fourth);
    assert!(
        log.contains("vip.guard.fired") && log.contains("backend.guard.fired"),
        "the resumed daemon reports its guards:\n{log}"
    );

    let samples = sampler.finish();
    eprintln!("{samples} samples, never two VIP holders or two backends");
    assert!(samples > 100, "the sampler took only {samples} samples");

    // Graceful shutdown of every daemon leaves no VIP and no backend.
    cluster.daemons.lock().unwrap().clear();
    assert!(cluster.holders().is_empty(), "no VIP after shutdown");
    assert_eq!(
        common::sleep_processes(cluster.marker).len(),
        0,
        "no backend after shutdown"
    );
}
