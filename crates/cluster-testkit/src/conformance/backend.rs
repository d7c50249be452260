//! Conformance suite for [`Backend`] (see its contract): what `start`, `stop` and `status`
//! report agrees with what the operating system or engine says, `start` and `stop` are
//! idempotent, a never-started backend is stopped, a crash is reported as failed, and the
//! service outlives the task that started it.
//!
//! The suite asks the system directly ([`BackendUnderTest::really_running`]: the process
//! exists, the unit is active, the container runs) instead of trusting the backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::Epoch;
use cluster_core::backend::{Backend, BackendState};

use super::{DEADLINE, announce, ok};

/// How long the suite gives a service to stop gracefully before it is forced.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One fresh backend with a view of reality.
#[async_trait]
pub trait BackendUnderTest: Send + Sync {
    /// The backend (of a long-running service with no failing health check).
    fn backend(&self) -> Arc<dyn Backend>;

    /// Asks the operating system or engine (not the backend) whether the service runs now.
    async fn really_running(&self) -> bool;

    /// Kills the service from outside (`SIGKILL` of its main process, `podman kill`), as a
    /// crash would.
    async fn crash(&self);
}

/// Hands out fresh backends.
///
/// # To ensure correctness
///
/// * [`BackendFactory::fresh`] returns a backend whose service does not run, independent of
///   the backends returned before (its own process, unit or container name). The engine must
///   not restart the service by itself after a crash (no `Restart=` policy).
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// A new backend whose service does not run.
    async fn fresh(&self) -> Box<dyn BackendUnderTest>;
}

/// Runs every scenario.
pub async fn run_all(factory: &dyn BackendFactory) {
    never_started_is_stopped_and_stop_is_idempotent(factory).await;
    start_runs_once_and_stop_leaves_nothing(factory).await;
    a_crash_is_reported_as_failed_until_stop(factory).await;
    the_service_outlives_the_starting_task(factory).await;
}

/// Waits until `status` reports `Running` (a backend may report `Starting` first).
async fn until_running(what: &str, backend: &dyn Backend) -> Option<String> {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = ok(what, backend.status().await);
        match status.state {
            BackendState::Running => return status.id,
            BackendState::Starting if tokio::time::Instant::now() < give_up => {}
            other => panic!("{what}: status is {other}, expected running"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A backend never started reports `stopped` with no id, runs nothing, fails its health
/// check, and `stop` succeeds on it (twice) without starting anything.
pub async fn never_started_is_stopped_and_stop_is_idempotent(factory: &dyn BackendFactory) {
    announce("backend", "never_started_is_stopped_and_stop_is_idempotent");
    let b = factory.fresh().await;
    let backend = b.backend();
    let status = ok("status of a fresh backend", backend.status().await);
    assert_eq!(
        status.state,
        BackendState::Stopped,
        "a never-started backend is stopped"
    );
    assert_eq!(status.id, None, "a never-started backend has no id");
    assert!(
        backend.health().await.is_err(),
        "health of a never-started backend must fail"
    );
    ok(
        "stop of a never-started backend",
        backend.stop(STOP_TIMEOUT).await,
    );
    ok("second stop", backend.stop(STOP_TIMEOUT).await);
    assert!(!b.really_running().await, "stop started something");
    assert_eq!(
        ok("status after stop", backend.status().await).state,
        BackendState::Stopped
    );
}

/// `start` launches the service (really running, status running with an id); a second
/// `start` keeps the same instance; `stop` returns only once nothing runs; a second `stop`
/// succeeds.
pub async fn start_runs_once_and_stop_leaves_nothing(factory: &dyn BackendFactory) {
    announce("backend", "start_runs_once_and_stop_leaves_nothing");
    let b = factory.fresh().await;
    let backend = b.backend();
    ok("start(3)", backend.start(Epoch(3)).await);
    assert!(
        b.really_running().await,
        "the service does not run once start returned"
    );
    let id = until_running("status after start", backend.as_ref()).await;
    assert!(id.is_some(), "a running backend names its service (id)");
    ok("start(3) again", backend.start(Epoch(3)).await);
    let again = until_running("status after a second start", backend.as_ref()).await;
    assert_eq!(again, id, "a second start must not launch another instance");
    assert!(b.really_running().await);
    ok("stop", backend.stop(STOP_TIMEOUT).await);
    assert!(
        !b.really_running().await,
        "something still runs once stop returned Ok"
    );
    let status = ok("status after stop", backend.status().await);
    assert_eq!(status.state, BackendState::Stopped, "stopped after stop");
    assert!(
        backend.health().await.is_err(),
        "health of a stopped backend must fail"
    );
    ok("second stop", backend.stop(STOP_TIMEOUT).await);
}

/// A service killed from outside is reported as `failed` (not running, not stopped), and keeps
/// being reported so (`status` changes nothing) until `stop`, which succeeds; a new `start`
/// runs it again.
pub async fn a_crash_is_reported_as_failed_until_stop(factory: &dyn BackendFactory) {
    announce("backend", "a_crash_is_reported_as_failed_until_stop");
    let b = factory.fresh().await;
    let backend = b.backend();
    ok("start(4)", backend.start(Epoch(4)).await);
    until_running("status after start", backend.as_ref()).await;
    b.crash().await;
    let give_up = tokio::time::Instant::now() + DEADLINE;
    loop {
        let state = ok("status after the crash", backend.status().await).state;
        if matches!(state, BackendState::Failed(_)) {
            break;
        }
        assert!(
            state.is_up() && tokio::time::Instant::now() < give_up,
            "after a crash the status must become failed, got {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!b.really_running().await, "the crashed service runs again");
    let state = ok("status read again", backend.status().await).state;
    assert!(
        matches!(state, BackendState::Failed(_)),
        "reading the status changed it: {state}"
    );
    ok("stop after the crash", backend.stop(STOP_TIMEOUT).await);
    assert!(!b.really_running().await);
    ok("start(5) after the crash", backend.start(Epoch(5)).await);
    assert!(b.really_running().await, "a new start after a crash runs");
    until_running("status of the new start", backend.as_ref()).await;
    ok("final stop", backend.stop(STOP_TIMEOUT).await);
    assert!(!b.really_running().await);
}

/// The service started from a task that then ends keeps running until `stop`.
pub async fn the_service_outlives_the_starting_task(factory: &dyn BackendFactory) {
    announce("backend", "the_service_outlives_the_starting_task");
    let b = factory.fresh().await;
    let backend = b.backend();
    let starter = backend.clone();
    let joined = tokio::spawn(async move { starter.start(Epoch(6)).await }).await;
    ok("start from a task", ok("the starting task", joined));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        b.really_running().await,
        "the service died with the task that started it"
    );
    until_running("status after the task ended", backend.as_ref()).await;
    ok("stop", backend.stop(STOP_TIMEOUT).await);
    assert!(!b.really_running().await);
}
