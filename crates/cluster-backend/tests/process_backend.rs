//! The process backend against real processes: start, idempotence, output, stop of the whole
//! process group, graceful and forced stop, crash detection, clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_backend::health::HealthProbe;
use cluster_backend::process::{OutputHandler, ProcessBackend, ProcessConfig};
use cluster_core::Epoch;
use cluster_core::backend::{Backend, BackendState};
use common::{eventually, group_members, pid_alive, scratch};

fn sh(script: &str) -> ProcessConfig {
    ProcessConfig::new("sh", ["-c", script])
}

/// Waits for the first line of output and parses it as a pid.
async fn first_pid(backend: &ProcessBackend) -> u32 {
    wait_lines(backend, 1).await[0].trim().parse().unwrap()
}

/// Waits until the backend has at least `n` output lines; returns them.
async fn wait_lines(backend: &ProcessBackend, n: usize) -> Vec<String> {
    for _ in 0..1000 {
        let lines = backend.logs_tail(100).await;
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "fewer than {n} output lines after 10 s: {:?}",
        backend.logs_tail(100).await
    );
}

#[tokio::test]
async fn start_is_idempotent_passes_the_epoch_and_captures_output() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    let mut config = sh("echo epoch=$CLUSTER_EPOCH; echo err >&2; exec sleep 1000");
    config.output_handler = Some(OutputHandler::new(move |_, line| {
        l.lock().unwrap().push(line.to_owned())
    }));
    let backend = ProcessBackend::new(config);
    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
    backend.start(Epoch(42)).await.unwrap();
    let pid = backend.pid().unwrap();
    backend.start(Epoch(42)).await.unwrap();
    assert_eq!(backend.pid(), Some(pid), "a second start launches nothing");
    let status = backend.status().await.unwrap();
    assert_eq!(status.state, BackendState::Running);
    assert_eq!(status.id, Some(pid.to_string()));
    backend.health().await.unwrap();
    eventually("both lines arrived", Duration::from_secs(10), || {
        lines.lock().unwrap().len() == 2
    })
    .await;
    let mut got = lines.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec!["epoch=42", "err"]);
    assert_eq!(backend.logs_tail(1).await.len(), 1);
    backend.stop(Duration::from_secs(5)).await.unwrap();
    assert!(!pid_alive(pid));
    assert_eq!(backend.status().await.unwrap().state, BackendState::Stopped);
    backend.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_child_survives_the_start_call_and_its_task() {
    let backend = Arc::new(ProcessBackend::new(sh("exec sleep 1000")));
    let b = backend.clone();
    // Start from a task that ends (and whose runtime context is gone) right after.
    tokio::spawn(async move { b.start(Epoch(1)).await.unwrap() })
        .await
        .unwrap();
    let pid = backend.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pid_alive(pid),
        "the child died after the start call returned"
    );
    assert_eq!(backend.status().await.unwrap().state, BackendState::Running);
    backend.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_child_survives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires when the forking *thread* exits: a start from a short-lived
    // thread (a blocking-pool thread, a thread with its own runtime) must not kill the child.
    let backend = Arc::new(ProcessBackend::new(sh("exec sleep 1000")));
    let b = backend.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(b.start(Epoch(1))).unwrap();
    })
    .join()
    .unwrap();
    let pid = backend.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pid_alive(pid),
        "the child died with the thread that started it"
    );
    backend.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn stop_kills_the_whole_process_group() {
    let backend = ProcessBackend::new(sh("sleep 1000 & echo $!; sleep 1000 & wait"));
    backend.start(Epoch(1)).await.unwrap();
    let leader = backend.pid().unwrap();
    let grandchild = first_pid(&backend).await;
    assert!(pid_alive(grandchild));
    // The shell forks the second sleep after printing the first one's pid: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while group_members(leader).len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group never had 3 members: {:?}",
            group_members(leader)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    backend.stop(Duration::from_secs(5)).await.unwrap();
    assert!(!pid_alive(leader));
    assert!(!pid_alive(grandchild), "a grandchild survived the stop");
    assert!(group_members(leader).is_empty());
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_graceful_timeout() {
    let mut config = sh("trap '' TERM; while true; do sleep 0.05; done");
    config.graceful_timeout = Duration::from_millis(300);
    let backend = ProcessBackend::new(config);
    backend.start(Epoch(1)).await.unwrap();
    let pid = backend.pid().unwrap();
    backend.stop(Duration::from_secs(30)).await.unwrap();
    assert!(!pid_alive(pid));
    assert!(group_members(pid).is_empty());
}

#[tokio::test]
async fn a_crash_is_reported_and_the_orphans_of_the_run_are_killed() {
    let backend = ProcessBackend::new(sh("sleep 1000 & echo $!; sleep 0.3; exit 3"));
    backend.start(Epoch(1)).await.unwrap();
    let leader = backend.pid().unwrap();
    let grandchild = first_pid(&backend).await;
    eventually("the crash is seen", Duration::from_secs(10), || {
        backend.pid().is_none()
    })
    .await;
    let status = backend.status().await.unwrap();
    match status.state {
        BackendState::Failed(reason) => assert!(reason.contains("exit status: 3"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(backend.health().await.is_err());
    assert!(
        !pid_alive(grandchild),
        "an orphan of the crashed run survived"
    );
    assert!(group_members(leader).is_empty());
    // A new start after the crash counts as a restart.
    backend.start(Epoch(2)).await.unwrap();
    assert_eq!(backend.status().await.unwrap().restarts, 1);
    backend.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn missing_binary_non_executable_file_and_missing_dir_are_clear_errors() {
    let err = ProcessBackend::new(ProcessConfig::new(
        "no-such-binary-xyz",
        Vec::<String>::new(),
    ))
    .start(Epoch(1))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    assert!(err.to_string().contains("not found"), "{err}");

    let dir = scratch("noexec");
    let script = dir.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nsleep 1000\n").unwrap();
    let err = ProcessBackend::new(ProcessConfig::new(
        script.to_string_lossy(),
        Vec::<String>::new(),
    ))
    .start(Epoch(1))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    let err = ProcessBackend::new(ProcessConfig::new("/does/not/exist", Vec::<String>::new()))
        .start(Epoch(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");

    let mut config = sh("sleep 1000");
    config.dir = Some(dir.join("missing"));
    let err = ProcessBackend::new(config)
        .start(Epoch(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("working directory"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn output_goes_to_the_log_file_and_the_tail_reads_it() {
    let dir = scratch("logfile");
    let mut config = sh("echo one; echo two >&2; echo dir=$(pwd) ; exec sleep 1000");
    config.log_file = Some(dir.join("out.log"));
    config.dir = Some(dir.clone());
    let backend = ProcessBackend::new(config);
    backend.start(Epoch(1)).await.unwrap();
    wait_lines(&backend, 3).await;
    let tail = backend.logs_tail(2).await;
    assert_eq!(tail[1], format!("dir={}", dir.display()));
    backend.stop(Duration::from_secs(5)).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn http_health_follows_the_service() {
    let bb = common::busybox();
    let dir = scratch("httpd");
    std::fs::write(dir.join("ok"), "ok").unwrap();
    let port = common::free_port();
    let mut config = ProcessConfig::new(
        bb.to_string_lossy(),
        [
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            &dir.to_string_lossy(),
        ],
    );
    config.health = HealthProbe::Http(format!("http://127.0.0.1:{port}/ok"));
    let backend = ProcessBackend::new(config);
    backend.start(Epoch(1)).await.unwrap();
    let mut healthy = false;
    for _ in 0..500 {
        if backend.health().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(healthy, "httpd never answered");
    std::fs::remove_file(dir.join("ok")).unwrap();
    let err = backend.health().await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    backend.stop(Duration::from_secs(5)).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dropping_the_backend_kills_its_process_group() {
    let backend = ProcessBackend::new(sh("sleep 1000 & echo $!; wait"));
    backend.start(Epoch(1)).await.unwrap();
    let leader = backend.pid().unwrap();
    let grandchild = first_pid(&backend).await;
    drop(backend);
    eventually("the group is gone", Duration::from_secs(10), || {
        !pid_alive(leader) && !pid_alive(grandchild)
    })
    .await;
}
