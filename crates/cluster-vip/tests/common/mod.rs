//! Real network namespaces for the VIP tests: one bridge namespace and one namespace per
//! simulated host, each with an `eth0` (veth) plugged into the bridge, on 198.51.100.0/24.
//!
//! Every name carries a per-test tag; the [`Lan`] guard deletes every namespace it created
//! when dropped (also when the test panics), which removes the veths with them.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const IP_HINT: &str = "the VIP tests need the `ip` tool from iproute2 (apt-get install -y iproute2) \
                       and root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW) to create network \
                       namespaces";

/// Runs `ip args…`, panicking with its stderr (and the install hint) on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip`: {e}; {IP_HINT}"));
    if !out.status.success() {
        panic!(
            "`ip {}` failed: {}; {IP_HINT}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A LAN of simulated hosts; host `i` (in creation order) has address `198.51.100.(10+i)/24`.
pub struct Lan {
    tag: String,
    hosts: Vec<String>,
    created: Vec<String>,
}

impl Lan {
    /// Creates the bridge namespace and one namespace per host.
    pub fn new(hosts: &[&str]) -> Self {
        let tag = format!(
            "cvip{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lan = Self {
            tag,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            created: Vec::new(),
        };
        let br = lan.bridge_ns();
        ip(&["netns", "add", &br]);
        lan.created.push(br.clone());
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        for (i, h) in hosts.iter().enumerate() {
            let ns = lan.ns(h);
            ip(&["netns", "add", &ns]);
            lan.created.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("198.51.100.{}/24", 10 + i),
                "dev",
                "eth0",
            ]);
        }
        lan
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.tag)
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        assert!(self.hosts.iter().any(|h| h == host), "no host {host}");
        format!("{}-{host}", self.tag)
    }

    /// The MAC of `host`'s `eth0`.
    pub fn mac(&self, host: &str) -> String {
        let out = ip(&["-n", &self.ns(host), "link", "show", "dev", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {out}"))
            .to_owned()
    }

    /// Whether `address` (any prefix) is on `host`'s `eth0`, as `ip` reports it.
    pub fn holds(&self, host: &str, address: &str) -> bool {
        holds_in(&self.ns(host), address)
    }

    /// The MAC `host`'s neighbour table has for `address`, if any.
    pub fn neighbour(&self, host: &str, address: &str) -> Option<String> {
        let out = ip(&[
            "-n",
            &self.ns(host),
            "neigh",
            "show",
            address,
            "dev",
            "eth0",
        ]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned)
    }

    /// Lets `host` create neighbour entries from gratuitous ARP (`arp_accept=1`), so an
    /// observer that never talked to the VIP learns it from the announcements.
    pub fn accept_garp(&self, host: &str) {
        let ns = self.ns(host);
        ip(&[
            "netns",
            "exec",
            &ns,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_accept",
        ]);
    }

    /// Adds `cidr` to `host`'s `eth0` with `ip` (a host the cluster does not manage).
    pub fn add_address(&self, host: &str, cidr: &str) {
        ip(&["-n", &self.ns(host), "addr", "add", cidr, "dev", "eth0"]);
    }

    /// Removes `cidr` from `host`'s `eth0` with `ip`.
    pub fn del_address(&self, host: &str, cidr: &str) {
        ip(&["-n", &self.ns(host), "addr", "del", cidr, "dev", "eth0"]);
    }

    /// Runs `f` on a thread that entered `host`'s network namespace (threads it spawns, such as
    /// a `VipResource` worker, inherit the namespace).
    pub fn in_ns<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(host));
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns(2) with a valid namespace descriptor; it changes only the calling
            // thread's network namespace, and this thread ends after `f`.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Whether `address` (any prefix) is on `eth0` in namespace `ns`, as `ip` reports it.
pub fn holds_in(ns: &str, address: &str) -> bool {
    let out = ip(&["-n", ns, "-4", "addr", "show", "dev", "eth0"]);
    let needle = format!("inet {address}/");
    out.lines().any(|l| l.trim_start().starts_with(&needle))
}

/// Polls `cond` every 20 ms until it holds; panics after `within` with `what`.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not reached within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
