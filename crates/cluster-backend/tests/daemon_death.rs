//! A daemon killed with SIGKILL leaves no process of its backend behind: the direct child dies
//! by the parent-death signal, its own children by the guard process.
//!
//! `harness = false`: the binary re-executes itself with `--daemon-helper` to play the daemon
//! (a process that starts a process backend and is then SIGKILLed by the test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_core::Epoch;
use cluster_core::backend::Backend;

fn main() {
    if std::env::args().any(|a| a == "--daemon-helper") {
        daemon_helper();
        return;
    }
    print!("test a_sigkilled_daemon_leaves_no_backend_process ... ");
    a_sigkilled_daemon_leaves_no_backend_process();
    println!("ok");
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
        // Keep the backend alive until killed.
        std::future::pending::<()>().await;
        drop(backend);
    });
}

fn a_sigkilled_daemon_leaves_no_backend_process() {
    let exe = std::env::current_exe().unwrap();
    let mut daemon = Command::new(exe)
        .arg("--daemon-helper")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (leader, grandchild) = (pids[0], pids[1]);
    assert!(common::pid_alive(leader) && common::pid_alive(grandchild));
    assert!(common::group_members(leader).len() >= 3);

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
