//! The VIP watchdog: a process holding a VIP is killed with SIGKILL; its watchdog removes the
//! address within a bound. Needs root and iproute2 (`ip`); fails with an install hint otherwise.
//!
//! This target has its own `main` (`harness = false`): run as `--holder <cidr>` (inside a
//! namespace, through `ip netns exec`) it claims the VIP, prints `CLAIMED <watchdog pid>` and
//! waits to be killed; run without, it is the test, which spawns itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_core::Epoch;
use cluster_vip::{Vip, VipResource};
use common::{Lan, holds_in};

const VIP: &str = "198.51.100.100";
/// Generous bound for the watchdog to notice the death and run `ip addr del`.
const BOUND: Duration = Duration::from_secs(5);
const TESTS: [&str; 2] = [
    "a_sigkilled_holder_leaves_no_vip_behind",
    "a_holder_that_exits_without_releasing_leaves_no_vip_behind",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--holder") {
        holder(&args[1]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        for t in TESTS {
            println!("{t}: test");
        }
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected =
        |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if selected(TESTS[0]) {
        a_sigkilled_holder_leaves_no_vip_behind();
        println!("test {} ... ok", TESTS[0]);
    }
    if selected(TESTS[1]) {
        a_holder_that_exits_without_releasing_leaves_no_vip_behind();
        println!("test {} ... ok", TESTS[1]);
    }
}

/// The holder process: claims the VIP in its (inherited) namespace and waits.
fn holder(cidr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resource = VipResource::new(Vip::new(cidr, "eth0").unwrap()).unwrap();
    let status = rt.block_on(async {
        resource.claim(Epoch(1)).await.unwrap();
        resource.status().await.unwrap()
    });
    assert!(status.on_interface);
    println!("CLAIMED {}", status.watchdog_pid.expect("a watchdog runs"));
    let mut line = String::new();
    // Wait for the test: "exit" exits without releasing (std::process::exit runs no drops).
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim() == "exit" {
        std::process::exit(0);
    }
    std::thread::sleep(Duration::from_secs(600));
}

struct Holder {
    child: std::process::Child,
    watchdog: u32,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_holder(lan: &Lan, host: &str) -> Holder {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lan.ns(host)])
        .arg(std::env::current_exe().unwrap())
        .args(["--holder", &format!("{VIP}/32")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run `ip netns exec` (iproute2 and root needed)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let watchdog = line
        .strip_prefix("CLAIMED ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the holder did not claim the VIP: {line:?}"));
    Holder { child, watchdog }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Polls every millisecond until the VIP is gone from `ns`; returns how long it took.
fn time_until_gone(ns: &str, since: Instant) -> Duration {
    loop {
        if !holds_in(ns, VIP) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < BOUND,
            "the VIP is still on {ns} {BOUND:?} after its holder died"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn a_sigkilled_holder_leaves_no_vip_behind() {
    let lan = Lan::new(&["a"]);
    let ns = lan.ns("a");
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut h = start_holder(&lan, "a");
        assert!(holds_in(&ns, VIP), "claimed");
        assert!(alive(h.watchdog), "the watchdog runs while the VIP is held");
        let t = Instant::now();
        h.child.kill().unwrap(); // SIGKILL
        h.child.wait().unwrap();
        times.push(time_until_gone(&ns, t));
        let gone = Instant::now();
        while alive(h.watchdog) {
            assert!(gone.elapsed() < BOUND, "the watchdog exits after acting");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            holds_in(&ns, "198.51.100.10"),
            "the host address is untouched"
        );
    }
    times.sort();
    eprintln!(
        "SIGKILL -> VIP gone: min {:?}, median {:?}, max {:?} (5 runs)",
        times[0], times[2], times[4]
    );
}

fn a_holder_that_exits_without_releasing_leaves_no_vip_behind() {
    let lan = Lan::new(&["a"]);
    let ns = lan.ns("a");
    let mut h = start_holder(&lan, "a");
    let t = Instant::now();
    use std::io::Write;
    writeln!(h.child.stdin.as_mut().unwrap(), "exit").unwrap();
    h.child.wait().unwrap();
    let took = time_until_gone(&ns, t);
    eprintln!("exit without release -> VIP gone after {took:?}");
}
