//! The deadline guard of the process backend, alone: a deadline that passes without a renewal
//! stops the whole process group (the daemon is simulated by a test that stops renewing);
//! renewals keep the backend running; a stop releases the guard so it never fires later.
//! Daemon death (end of file on the guard's pipe) and a `SIGSTOP`ped daemon are in
//! `daemon_death.rs` (real processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cluster_backend::process::{ProcessBackend, ProcessConfig};
use cluster_core::DeadlineWatch;
use cluster_core::Epoch;
use cluster_core::backend::{Backend, BackendState};
use cluster_core::election::{ElectionState, Leadership};
use common::{eventually, group_members, pid_alive};
use tokio::sync::watch;
use tokio::time::Instant;

const EPOCH: Epoch = Epoch(5);
/// The fast profile's margin `ε·T` (grace = margin / 3 = 150 ms).
const MARGIN: Duration = Duration::from_millis(450);

fn leading(deadline: Instant) -> ElectionState {
    ElectionState {
        leading: Some(Leadership {
            epoch: EPOCH,
            deadline,
        }),
        ..ElectionState::default()
    }
}

/// A backend (a shell that forks a grandchild and ignores nothing) following `rx`.
async fn started(rx: watch::Receiver<ElectionState>) -> (ProcessBackend, u32, u32) {
    let backend = ProcessBackend::new(ProcessConfig::new(
        "sh",
        ["-c", "sleep 1000 & echo $!; sleep 1000 & wait"],
    ));
    backend.follow_deadline(DeadlineWatch::new(rx, MARGIN));
    backend.start(EPOCH).await.unwrap();
    let leader = backend.pid().unwrap();
    let mut lines = Vec::new();
    for _ in 0..1000 {
        lines = backend.logs_tail(1).await;
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let grandchild = lines[0].trim().parse().unwrap();
    (backend, leader, grandchild)
}

fn gone(leader: u32, grandchild: u32) -> bool {
    !pid_alive(leader) && !pid_alive(grandchild) && group_members(leader).is_empty()
}

#[tokio::test]
async fn a_deadline_without_renewal_stops_the_group_and_is_reported() {
    let (_tx, rx) = watch::channel(leading(Instant::now() + Duration::from_millis(400)));
    let (backend, leader, grandchild) = started(rx).await;
    let t0 = Instant::now();
    assert!(pid_alive(leader) && pid_alive(grandchild));
    // No renewal: the guard stops the group at the deadline (SIGTERM ends `sh` and `sleep`).
    eventually("the group is gone", Duration::from_secs(5), || {
        gone(leader, grandchild)
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "the guard fired before the deadline ({took:?})"
    );
    eventually("the exit is seen", Duration::from_secs(5), || {
        backend.pid().is_none()
    })
    .await;
    // The guard exits after its grace; then the run reports it.
    let mut last = String::new();
    for _ in 0..500 {
        last = backend.status().await.unwrap().state.to_string();
        if last.contains("deadline guard") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        last.contains("failed (stopped by the deadline guard"),
        "{last}"
    );
    // A stop afterwards succeeds (nothing runs).
    backend.stop(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn renewals_keep_the_backend_running_and_a_stop_releases_the_guard() {
    let (tx, rx) = watch::channel(leading(Instant::now() + Duration::from_millis(300)));
    let (backend, leader, grandchild) = started(rx).await;
    // 1.5 s of renewals every 100 ms, each extending the deadline to 300 ms from now.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send_replace(leading(Instant::now() + Duration::from_millis(300)));
        assert!(
            pid_alive(leader) && pid_alive(grandchild),
            "the guard fired although the deadline was renewed"
        );
    }
    backend.stop(Duration::from_secs(2)).await.unwrap();
    assert!(gone(leader, grandchild));
    // A new run for a later term with a deadline far away: the old guard is gone for good.
    tx.send_replace(ElectionState {
        leading: Some(Leadership {
            epoch: Epoch(6),
            deadline: Instant::now() + Duration::from_secs(60),
        }),
        ..ElectionState::default()
    });
    backend.start(Epoch(6)).await.unwrap();
    let pid = backend.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        pid_alive(pid),
        "a guard of an earlier run killed the new run"
    );
    assert_eq!(backend.status().await.unwrap().state, BackendState::Running);
    backend.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn a_term_that_ended_keeps_the_last_deadline() {
    let (tx, rx) = watch::channel(leading(Instant::now() + Duration::from_millis(500)));
    let (_backend, leader, grandchild) = started(rx).await;
    // The term ends (demoted) but nobody stops the backend: the guard still fires at the
    // last deadline it was given, and a later term's deadline does not extend this run.
    tx.send_replace(ElectionState::default());
    tx.send_replace(ElectionState {
        leading: Some(Leadership {
            epoch: Epoch(9),
            deadline: Instant::now() + Duration::from_secs(60),
        }),
        ..ElectionState::default()
    });
    eventually("the group is gone", Duration::from_secs(5), || {
        gone(leader, grandchild)
    })
    .await;
}

#[tokio::test]
async fn without_a_deadline_watch_the_backend_runs_until_stopped() {
    let backend = ProcessBackend::new(ProcessConfig::new("sleep", ["1000"]));
    backend.start(EPOCH).await.unwrap();
    let pid = backend.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(pid_alive(pid));
    backend.stop(Duration::from_secs(2)).await.unwrap();
}
