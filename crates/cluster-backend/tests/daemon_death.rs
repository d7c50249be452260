//! A daemon killed with SIGKILL leaves no process of its backend behind: the direct child dies
//! by the parent-death signal, its own children by the guard process (the `/bin/sh` death
//! guard, and the `/bin/bash` deadline guard of a Singleton's backend). A daemon that is
//! `SIGSTOP`ped while leading loses its backend at its deadline (the guard), and reports it
//! once it runs again.
//!
//! `harness = false`: the binary re-executes itself with `--daemon-helper` to play the daemon
//! (a process that starts a process backend and is then SIGKILLed or SIGSTOPped by the test);
//! with `--deadline` the helper also plays the election: it renews a 400 ms deadline every
//! 100 ms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_core::DeadlineWatch;
use cluster_core::Epoch;
use cluster_core::backend::Backend;
use cluster_core::election::{ElectionState, Leadership};

/// The helper's deadline: 400 ms after each renewal (renewed every 100 ms).
const DEADLINE: Duration = Duration::from_millis(400);
/// The fast profile's margin `ε·T`: the guard's grace is a third of it (150 ms).
const MARGIN: Duration = Duration::from_millis(450);

fn main() {
    if std::env::args().any(|a| a == "--daemon-helper") {
        daemon_helper();
        return;
    }
    print!("test a_sigkilled_daemon_leaves_no_backend_process ... ");
    a_sigkilled_daemon_leaves_no_backend_process(false);
    println!("ok");
    print!("test a_sigkilled_daemon_with_a_deadline_guard_leaves_no_backend_process ... ");
    a_sigkilled_daemon_leaves_no_backend_process(true);
    println!("ok");
    print!("test a_sigstopped_leader_loses_its_backend_at_the_deadline ... ");
    a_sigstopped_leader_loses_its_backend_at_the_deadline();
    println!("ok");
}

fn leading(deadline: tokio::time::Instant) -> ElectionState {
    ElectionState {
        leading: Some(Leadership {
            epoch: Epoch(7),
            deadline,
        }),
        ..ElectionState::default()
    }
}

/// The daemon: starts a backend whose shell forks a grandchild, reports the pids, waits to be
/// killed.
fn daemon_helper() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = ProcessBackend::new(ProcessConfig::new(
            "sh",
            ["-c", "sleep 1000 & echo $!; sleep 1000 & wait"],
        ));
        if std::env::args().any(|a| a == "--deadline") {
            let now = tokio::time::Instant::now;
            let (tx, rx) = tokio::sync::watch::channel(leading(now() + DEADLINE));
            backend.follow_deadline(DeadlineWatch::new(rx, MARGIN));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    tx.send_replace(leading(now() + DEADLINE));
                }
            });
        }
        backend.start(Epoch(7)).await.unwrap();
        let leader = backend.pid().unwrap();
        let mut lines = Vec::new();
        for _ in 0..1000 {
            lines = backend.logs_tail(1).await;
            if !lines.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let grandchild: u32 = lines[0].trim().parse().unwrap();
        let mut out = std::io::stdout();
        writeln!(out, "{leader} {grandchild}").unwrap();
        out.flush().unwrap();
        // Keep the backend alive until killed; report its state when it changes.
        let mut last = String::new();
        loop {
            let state = backend.status().await.unwrap().state.to_string();
            if state != last {
                writeln!(out, "{state}").unwrap();
                out.flush().unwrap();
                last = state;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Starts the helper; returns it, its output lines, and the backend's leader and grandchild.
fn helper(
    deadline: bool,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    u32,
    u32,
) {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command.arg("--daemon-helper").stdout(Stdio::piped());
    if deadline {
        command.arg("--deadline");
    }
    let mut daemon = command.spawn().unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (leader, grandchild) = (pids[0], pids[1]);
    assert!(common::pid_alive(leader) && common::pid_alive(grandchild));
    assert!(common::group_members(leader).len() >= 3);
    assert_eq!(lines.next().unwrap().unwrap(), "running");
    (daemon, lines, leader, grandchild)
}

fn gone(leader: u32, grandchild: u32) -> bool {
    !common::pid_alive(leader)
        && !common::pid_alive(grandchild)
        && common::group_members(leader).is_empty()
}

#[allow(unsafe_code)]
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) of our own child with a valid signal.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// The helper is `SIGSTOP`ped right after a renewal (the deadline is at most 400 ms away):
/// the guard ends the group by the deadline plus its grace, while the helper is still
/// stopped; after `SIGCONT` the helper's backend reports the guard.
fn a_sigstopped_leader_loses_its_backend_at_the_deadline() {
    let (mut daemon, mut lines, leader, grandchild) = helper(true);
    std::thread::sleep(Duration::from_millis(300));
    signal(daemon.id(), libc::SIGSTOP);
    let stopped = Instant::now();
    loop {
        if gone(leader, grandchild) {
            break;
        }
        // A generous correctness bound (the budget is 400 ms + 150 ms grace).
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "the backend survived its deadline while the daemon was stopped"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = stopped.elapsed();
    eprintln!(
        "[guard] backend group gone {} ms after SIGSTOP (deadline <= 400 ms, grace 150 ms)",
        took.as_millis()
    );
    std::thread::sleep(Duration::from_millis(500));
    signal(daemon.id(), libc::SIGCONT);
    let state = lines.next().unwrap().unwrap();
    assert!(
        state.starts_with("failed (stopped by the deadline guard"),
        "{state}"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

fn a_sigkilled_daemon_leaves_no_backend_process(deadline: bool) {
    let (mut daemon, _lines, leader, grandchild) = helper(deadline);
    daemon.kill().unwrap(); // SIGKILL: no cleanup code of the daemon runs
    daemon.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = common::group_members(leader);
        let gone = !common::pid_alive(leader) && !common::pid_alive(grandchild) && left.is_empty();
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes survived the daemon: leader alive {}, grandchild alive {}, group {left:?}",
            common::pid_alive(leader),
            common::pid_alive(grandchild)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
