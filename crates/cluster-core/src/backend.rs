//! Backends: the service a node runs while its app is active (a process, a systemd unit, a
//! container).
//!
//! A [`Backend`] only knows how to start, stop and observe one service. Tying it to an app's
//! role (activation with the fencing token, health checking, restarts, stepping down when the
//! service cannot be kept healthy) is the job of a coordinator that implements
//! [`ActiveResource`](crate::resource::ActiveResource); the implementations (`process`,
//! `systemd`, `docker`) and the coordinator live in the `cluster-backend` crate, so this crate
//! stays free of OS- and engine-specific dependencies.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::epoch::Epoch;
use crate::error::Result;

/// The lifecycle state of a backend as observed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendState {
    /// `start` is in progress (a systemd job is running, a container is being created).
    Starting,
    /// The service runs.
    Running,
    /// Not running and not failed: never started, or stopped on request.
    Stopped,
    /// Not running because it failed (exited on its own, unit `failed`, container exited);
    /// with the reason (exit status, result).
    Failed(String),
}

impl BackendState {
    /// A short stable name (`starting`, `running`, `stopped`, `failed`) for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendState::Starting => "starting",
            BackendState::Running => "running",
            BackendState::Stopped => "stopped",
            BackendState::Failed(_) => "failed",
        }
    }

    /// Whether the service is up or coming up.
    pub fn is_up(&self) -> bool {
        matches!(self, BackendState::Starting | BackendState::Running)
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendState::Failed(reason) => write!(f, "failed ({reason})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A snapshot of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    /// The state.
    pub state: BackendState,
    /// What identifies the running service: a process id, a container id, a unit name with
    /// its main PID. `None` when nothing runs.
    pub id: Option<String>,
    /// Restarts performed by this backend object or by its engine (systemd `NRestarts`,
    /// Docker `RestartCount`): starts after the first one.
    pub restarts: u32,
}

impl BackendStatus {
    /// A stopped backend with no id.
    pub fn stopped(restarts: u32) -> Self {
        Self {
            state: BackendState::Stopped,
            id: None,
            restarts,
        }
    }
}

/// A service controller: starts, stops and observes one service.
///
/// # To ensure correctness
///
/// * `start(epoch)` is idempotent: when the service already runs it returns `Ok` without
///   starting a second instance. It returns once the service was launched (process spawned,
///   systemd job finished, container started), not once it is healthy: readiness is what
///   [`health`](Backend::health) reports. `epoch` is the fencing token of the term the service
///   runs for; implementations pass it to the service where they can (environment, label) and
///   log it.
/// * The started service lives until `stop` is called (or the daemon itself dies), **not**
///   until the future of `start` completes or is dropped: nothing of the service may be tied to
///   the caller's task or cancellation.
/// * If the daemon process dies (even by `SIGKILL`), a service it started as its own child must
///   not survive it; services owned by an external manager (systemd, a container engine) are
///   that manager's, and the next leader's `start` takes them over.
/// * `stop(timeout)` is idempotent and succeeds when nothing runs. It asks the service to end
///   gracefully, forces it after `timeout`, and returns `Ok` only when nothing of it is left
///   running (for a process: its whole process group; for a container: the container; for a
///   unit: the unit is inactive or failed).
/// * `status` never changes anything. After a crash it reports [`BackendState::Failed`]
///   until the next `start` or `stop`.
/// * `health` returns `Ok` only when the service runs and its configured health check
///   passes. It must return within a bounded time (callers also bound it with a timeout).
/// * Errors are clear about their cause: a missing binary, unit or image and a permission
///   problem are [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the thing
///   that is missing; an unreachable engine or bus is
///   [`Error::Unavailable`](crate::Error::Unavailable).
/// * All methods may be called concurrently; implementations serialise `start` and `stop`.
///
/// Executable form: `cluster_testkit::conformance::backend`.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short description for logs and audit (`process:/usr/bin/redis-server`,
    /// `systemd:postgres.service`, `docker:web`).
    fn describe(&self) -> String;

    /// Starts the service for the term `epoch` (see the contract).
    async fn start(&self, epoch: Epoch) -> Result<()>;

    /// Stops the service, forcing it after `timeout` (see the contract).
    async fn stop(&self, timeout: Duration) -> Result<()>;

    /// The current state.
    async fn status(&self) -> Result<BackendStatus>;

    /// Runs the health check once.
    async fn health(&self) -> Result<()>;

    /// The last `n` lines of the service's output, oldest first (empty when the backend has
    /// no access to its output).
    async fn logs_tail(&self, n: usize) -> Vec<String>;

    /// Receives this node's leadership deadline (Singleton apps; the coordinator passes on
    /// what [`ActiveResource::follow_deadline`](crate::resource::ActiveResource::follow_deadline)
    /// gave it). A backend with a guard outside the daemon gives it the remaining time of the
    /// term it was started for on every renewal, and the guard stops the service when that
    /// time runs out without a renewal (the daemon hung or was stopped). Must not block.
    /// Default: ignored (the service runs until `stop`).
    fn follow_deadline(&self, deadline: crate::deadline::DeadlineWatch) {
        let _ = deadline;
    }
}
