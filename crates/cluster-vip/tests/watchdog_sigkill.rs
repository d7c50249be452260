//! The VIP watchdog: a process holding a VIP is killed with SIGKILL; its watchdog removes the
//! address within a bound. A holder that follows a leadership deadline and is `SIGSTOP`ped
//! loses the address at the deadline, and once resumed does not add it back. Needs root and
//! iproute2 (`ip`); fails with an install hint otherwise.
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
use cluster_core::election::{ElectionState, Leadership};
use cluster_core::{ActiveResource, DeadlineWatch};
use cluster_vip::{Vip, VipResource};
use common::{Lan, holds_in};

const VIP: &str = "198.51.100.100";
/// Generous bound for the watchdog to notice the death and run `ip addr del`.
const BOUND: Duration = Duration::from_secs(5);
const TESTS: [&str; 3] = [
    "a_sigkilled_holder_leaves_no_vip_behind",
    "a_holder_that_exits_without_releasing_leaves_no_vip_behind",
    "a_sigstopped_holder_loses_the_vip_at_its_deadline",
];
/// The deadline holder's deadline after each renewal (renewed every 100 ms).
const DEADLINE: Duration = Duration::from_millis(400);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--holder") {
        holder(&args[1]);
        return;
    }
    if args.first().map(String::as_str) == Some("--deadline-holder") {
        deadline_holder(&args[1]);
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
    if selected(TESTS[2]) {
        a_sigstopped_holder_loses_the_vip_at_its_deadline();
        println!("test {} ... ok", TESTS[2]);
    }
}

fn leading(deadline: tokio::time::Instant) -> ElectionState {
    ElectionState {
        leading: Some(Leadership {
            epoch: Epoch(1),
            deadline,
        }),
        ..ElectionState::default()
    }
}

/// A holder that plays the election too: activates the VIP as a resource following a deadline
/// renewed every 100 ms, prints `CLAIMED <watchdog pid>`, then its status whenever it changes.
fn deadline_holder(cidr: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vip = Vip::new(cidr, "eth0")
        .unwrap()
        .with_refresh(Some(Duration::from_millis(200)));
    let resource = VipResource::new(vip).unwrap();
    rt.block_on(async {
        let now = tokio::time::Instant::now;
        let (tx, rx) = tokio::sync::watch::channel(leading(now() + DEADLINE));
        resource.follow_deadline(DeadlineWatch::new(rx, Duration::from_millis(450)));
        resource.activate(Epoch(1)).await.unwrap();
        let status = resource.status().await.unwrap();
        assert!(status.on_interface);
        println!("CLAIMED {}", status.watchdog_pid.expect("a watchdog runs"));
        let mut last = None;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send_replace(leading(now() + DEADLINE));
            let s = resource.status().await.unwrap();
            let shown = (s.claimed, s.on_interface);
            if last != Some(shown) {
                println!("claimed={:?} on_interface={}", s.claimed, s.on_interface);
                last = Some(shown);
            }
        }
    });
}

#[allow(unsafe_code)]
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) of a process we started, with a valid signal.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

fn a_sigstopped_holder_loses_the_vip_at_its_deadline() {
    let lan = Lan::new(&["a"]);
    let ns = lan.ns("a");
    let mut h = start(&lan, "a", "--deadline-holder");
    let mut out = h.out.take().unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "claimed=Some(Epoch(1)) on_interface=true");
    std::thread::sleep(Duration::from_millis(500));
    assert!(holds_in(&ns, VIP), "renewals keep the VIP");
    // `ip netns exec` runs the holder in place (exec): its pid is the holder's.
    let holder = h.child.id();
    signal(holder, libc::SIGSTOP);
    let took = time_until_gone(&ns, Instant::now());
    eprintln!("SIGSTOP -> VIP gone after {took:?} (deadline <= {DEADLINE:?})");
    std::thread::sleep(Duration::from_millis(500));
    signal(holder, libc::SIGCONT);
    // The resumed holder drops the claim and never adds the address back. It may first report
    // the address gone while it still notices the fired guard (`claimed=Some(..)
    // on_interface=false`); the address must never be shown on the interface again.
    let mut seen = Vec::new();
    loop {
        line.clear();
        out.read_line(&mut line).unwrap();
        let shown = line.trim().to_owned();
        assert!(
            !shown.ends_with("on_interface=true"),
            "re-added after resume: {seen:?} {shown}"
        );
        seen.push(shown.clone());
        if shown == "claimed=None on_interface=false" {
            break;
        }
        assert!(
            seen.len() < 5,
            "the resumed holder kept its claim: {seen:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!holds_in(&ns, VIP), "the resumed holder added the VIP back");
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
    out: Option<BufReader<std::process::ChildStdout>>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_holder(lan: &Lan, host: &str) -> Holder {
    start(lan, host, "--holder")
}

fn start(lan: &Lan, host: &str, mode: &str) -> Holder {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lan.ns(host)])
        .arg(std::env::current_exe().unwrap())
        .args([mode, &format!("{VIP}/32")])
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
    Holder {
        child,
        watchdog,
        out: Some(out),
    }
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
