//! The process backend: a child process of the daemon.
//!
//! * The child runs in its own process group (by default) so a stop reaches its children too:
//!   `SIGTERM` to the group, `SIGKILL` after the graceful timeout. When the child exits, what
//!   is left of its group is killed before the child is reaped.
//! * The child lives until [`Backend::stop`] (or until the `ProcessBackend` is dropped), never
//!   tied to the task that called `start`; a reaper thread collects its exit status.
//! * It never outlives the daemon, even when the daemon is killed with `SIGKILL`: see
//!   the private `spawn` module for the parent-death signal and the `guard` module for the
//!   guard process.
//! * For a Singleton app (a [`DeadlineWatch`] received through [`Backend::follow_deadline`])
//!   it never outlives the leader's deadline either: the guard stops the group (`SIGTERM`,
//!   `SIGKILL` after a short grace) when the deadline passes without a renewal, even while the
//!   daemon is hung or `SIGSTOP`ped. The run then reports
//!   [`BackendState::Failed`] ("stopped by the deadline guard") and the audit event
//!   `backend.guard.fired` is logged when the daemon runs again.
//! * Output goes to a log file, or is read line by line into a ring buffer (for
//!   [`Backend::logs_tail`]) and an optional [`OutputHandler`].
//!
//! Not covered: a child that leaves its process group (`setsid`, a double-forking daemon)
//! escapes the group signals; run such services under the systemd backend.

pub(crate) mod child;
mod output;
pub(crate) mod spawn;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cluster_core::DeadlineWatch;
use cluster_core::backend::{Backend, BackendState, BackendStatus};
use cluster_core::{Epoch, Error, Result};
use tracing::{info, warn};

pub use output::{LineFn, OutputHandler, Stream};

use crate::guard::{self, Guard};
use crate::health::HealthProbe;
use child::ChildHandle;

/// How long to wait for a process to disappear after `SIGKILL`.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Configuration of a [`ProcessBackend`].
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The program: a path, or a name looked up in `PATH` (the `PATH` of `env` if set there).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory (default: the daemon's).
    pub dir: Option<PathBuf>,
    /// Variables added to the daemon's environment. `CLUSTER_EPOCH` is always set to the
    /// fencing token of the term the process was started for.
    pub env: Vec<(String, String)>,
    /// Time between `SIGTERM` and `SIGKILL` on stop (bounded by the `stop` call's timeout).
    pub graceful_timeout: Duration,
    /// Run the child in its own process group and signal the whole group (default `true`).
    /// With `false` only the child itself is signalled and its children may survive it.
    pub use_process_group: bool,
    /// Append stdout and stderr to this file (created if missing). Without it the output is
    /// read into memory (the last 1000 lines) and passed to `output_handler`.
    pub log_file: Option<PathBuf>,
    /// Receives every output line (only without `log_file`).
    pub output_handler: Option<OutputHandler>,
    /// The health check; without one the backend is healthy while the process runs.
    pub health: HealthProbe,
    /// Timeout of one health check.
    pub health_timeout: Duration,
}

impl ProcessConfig {
    /// A configuration running `command` with `args` and the defaults (graceful timeout 10 s,
    /// own process group, output in memory, healthy while running).
    pub fn new(
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            dir: None,
            env: Vec::new(),
            graceful_timeout: Duration::from_secs(10),
            use_process_group: true,
            log_file: None,
            output_handler: None,
            health: HealthProbe::None,
            health_timeout: Duration::from_secs(3),
        }
    }
}

/// A live run: the child and the guard that kills its group if the daemon dies or misses
/// its deadline.
struct Running {
    child: ChildHandle,
    guard: Option<Guard>,
}

impl Running {
    /// Stops the guard without letting it fire (it is killed before its pipe closes).
    fn release_guard(&self) {
        if let Some(guard) = &self.guard {
            guard.release();
        }
    }

    /// Why the child ended: its exit status, and the guard when it stopped it.
    fn exit_reason(&self, description: &str) -> String {
        if self.guard.as_ref().is_some_and(Guard::fired) {
            format!(
                "stopped by the deadline guard (this daemon did not renew its leadership in \
                 time): {description}"
            )
        } else {
            format!("process exited: {description}")
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // `child` is dropped first (killing its group if it still runs), then the guard.
        if self.child.exit().is_some() {
            self.release_guard();
        }
    }
}

#[derive(Default)]
struct State {
    run: Option<Arc<Running>>,
    /// Why the last run ended on its own (kept after it was cleared, until the next start).
    last_failure: Option<String>,
}

/// A backend running one child process (see the [module docs](self)).
pub struct ProcessBackend {
    config: ProcessConfig,
    /// Serialises `start` and `stop`.
    op: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    tail: output::Tail,
    starts: AtomicU32,
    /// The leader's deadline (Singleton apps), followed by the guard of each run.
    deadline: Mutex<Option<DeadlineWatch>>,
}

impl std::fmt::Debug for ProcessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBackend")
            .field("command", &self.config.command)
            .field("pid", &self.pid())
            .finish()
    }
}

impl ProcessBackend {
    /// A backend for `config`. Nothing is checked or started yet.
    pub fn new(config: ProcessConfig) -> Self {
        Self {
            config,
            op: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
            tail: output::Tail::default(),
            starts: AtomicU32::new(0),
            deadline: Mutex::new(None),
        }
    }

    /// The pid of the running child (also its process group id), if any.
    pub fn pid(&self) -> Option<u32> {
        self.current()
            .filter(|r| r.child.exit().is_none())
            .map(|r| r.child.pid())
    }

    fn current(&self) -> Option<Arc<Running>> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .run
            .clone()
    }

    fn command(&self, epoch: Epoch) -> Result<Command> {
        use std::os::unix::process::CommandExt;
        let c = &self.config;
        if let Some(dir) = &c.dir
            && !dir.is_dir()
        {
            return Err(Error::InvalidArgument(format!(
                "process backend: working directory {} does not exist",
                dir.display()
            )));
        }
        let program = resolve(&c.command, c.dir.as_deref(), &c.env)?;
        let mut cmd = Command::new(&program);
        cmd.args(&c.args)
            .envs(c.env.iter().map(|(k, v)| (k, v)))
            .env("CLUSTER_EPOCH", epoch.to_string())
            .stdin(Stdio::null());
        if let Some(dir) = &c.dir {
            cmd.current_dir(dir);
        }
        if c.use_process_group {
            cmd.process_group(0);
        }
        match &c.log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        Error::InvalidArgument(format!(
                            "process backend: cannot open log file {}: {e}",
                            path.display()
                        ))
                    })?;
                let err = file.try_clone().map_err(|e| {
                    Error::Internal(format!("process backend: duplicating the log file: {e}"))
                })?;
                cmd.stdout(file).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        Ok(cmd)
    }

    async fn launch(&self, epoch: Epoch) -> Result<Running> {
        let cmd = self.command(epoch)?;
        let mut child = spawn::spawn(cmd)
            .await
            .map_err(|e| spawn_error(&self.config.command, &e))?;
        if let Some(out) = child.stdout.take() {
            let _ = output::forward(
                out,
                Stream::Stdout,
                self.tail.clone(),
                self.config.output_handler.clone(),
            );
        }
        if let Some(err) = child.stderr.take() {
            let _ = output::forward(
                err,
                Stream::Stderr,
                self.tail.clone(),
                self.config.output_handler.clone(),
            );
        }
        let child = ChildHandle::watch(child, self.config.use_process_group)
            .map_err(|e| Error::Internal(format!("process backend: reaper thread: {e}")))?;
        let follow = guard::Follow {
            deadline: self
                .deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            epoch,
            graceful: self.config.graceful_timeout,
            what: self.describe(),
            child_exit: Some(child.exit_watch()),
        };
        let guard = match Guard::spawn(guard::Target::Group(child.target()), follow).await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "process backend: guard not started; only the parent-death \
                      signal protects against a daemon crash, nothing against a hung daemon");
                None
            }
        };
        Ok(Running { child, guard })
    }
}

/// Finds `command` like `execvp` would, to report a missing or non-executable program clearly.
fn resolve(command: &str, dir: Option<&Path>, env: &[(String, String)]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if command.is_empty() {
        return Err(Error::InvalidArgument(
            "process backend: empty command".into(),
        ));
    }
    let check = |path: &Path| -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::InvalidArgument(format!(
                "process backend: command {} not found: {e}",
                path.display()
            ))
        })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(Error::InvalidArgument(format!(
                "process backend: command {} is not executable (permission denied)",
                path.display()
            )));
        }
        Ok(())
    };
    if command.contains('/') {
        let path = match dir {
            Some(d) if Path::new(command).is_relative() => d.join(command),
            _ => PathBuf::from(command),
        };
        check(&path)?;
        return Ok(path);
    }
    let path_var: Option<OsString> = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.into())
        .or_else(|| std::env::var_os("PATH"));
    let path_var = path_var.unwrap_or_default();
    let mut denied = None;
    for d in std::env::split_paths(&path_var) {
        let candidate = d.join(command);
        if candidate.is_file() {
            match check(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) => denied = Some(e),
            }
        }
    }
    Err(denied.unwrap_or_else(|| {
        Error::InvalidArgument(format!(
            "process backend: command {command:?} not found in PATH ({})",
            path_var.to_string_lossy()
        ))
    }))
}

fn spawn_error(command: &str, e: &std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::InvalidArgument(format!(
            "process backend: cannot start {command:?}: not found ({e})"
        )),
        std::io::ErrorKind::PermissionDenied => Error::InvalidArgument(format!(
            "process backend: cannot start {command:?}: permission denied ({e})"
        )),
        _ => Error::Internal(format!("process backend: cannot start {command:?}: {e}")),
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn describe(&self) -> String {
        format!("process:{}", self.config.command)
    }

    async fn start(&self, epoch: Epoch) -> Result<()> {
        let _op = self.op.lock().await;
        if self.pid().is_some() {
            return Ok(());
        }
        // A previous run that ended on its own: release its guard before replacing it.
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = state.run.take() {
                old.release_guard();
                if let Some(exit) = old.child.exit() {
                    state.last_failure = Some(old.exit_reason(&exit.description));
                }
            }
        }
        let running = self.launch(epoch).await?;
        let pid = running.child.pid();
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.run = Some(Arc::new(running));
            state.last_failure = None;
        }
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        info!(target: "cluster::audit", event = "backend.process.started",
            command = %self.config.command, pid, %epoch, restarts = n, "process started");
        Ok(())
    }

    async fn stop(&self, timeout: Duration) -> Result<()> {
        let _op = self.op.lock().await;
        let Some(run) = self.current() else {
            return Ok(());
        };
        let pid = run.child.pid();
        if run.child.exit().is_none() {
            let graceful = timeout.min(self.config.graceful_timeout);
            let signal_error = |e: std::io::Error| {
                Error::Internal(format!("process backend: signalling pid {pid}: {e}"))
            };
            run.child.signal(libc::SIGTERM).map_err(signal_error)?;
            if tokio::time::timeout(graceful, run.child.wait())
                .await
                .is_err()
            {
                warn!(
                    pid,
                    ?graceful,
                    "process did not exit after SIGTERM; sending SIGKILL"
                );
                run.child.signal(libc::SIGKILL).map_err(signal_error)?;
                if tokio::time::timeout(KILL_WAIT, run.child.wait())
                    .await
                    .is_err()
                {
                    return Err(Error::Timeout(format!(
                        "process backend: pid {pid} still runs {KILL_WAIT:?} after SIGKILL"
                    )));
                }
            }
        }
        let exit = run.child.wait().await;
        run.release_guard();
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.run = None;
            state.last_failure = None;
        }
        info!(target: "cluster::audit", event = "backend.process.stopped",
            command = %self.config.command, pid, exit = %exit.description, "process stopped");
        Ok(())
    }

    async fn status(&self) -> Result<BackendStatus> {
        let restarts = self.starts.load(Ordering::SeqCst).saturating_sub(1);
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let status = match &state.run {
            Some(run) => match run.child.exit() {
                None => BackendStatus {
                    state: BackendState::Running,
                    id: Some(run.child.pid().to_string()),
                    restarts,
                },
                Some(exit) => BackendStatus {
                    state: BackendState::Failed(run.exit_reason(&exit.description)),
                    id: None,
                    restarts,
                },
            },
            None => match &state.last_failure {
                Some(reason) => BackendStatus {
                    state: BackendState::Failed(reason.clone()),
                    id: None,
                    restarts,
                },
                None => BackendStatus::stopped(restarts),
            },
        };
        Ok(status)
    }

    async fn health(&self) -> Result<()> {
        let status = self.status().await?;
        if status.state != BackendState::Running {
            return Err(Error::Unavailable(format!(
                "process {} is {}",
                self.config.command, status.state
            )));
        }
        self.config.health.check(self.config.health_timeout).await
    }

    async fn logs_tail(&self, n: usize) -> Vec<String> {
        match &self.config.log_file {
            Some(path) => output::file_tail(path, n),
            None => self.tail.last(n),
        }
    }

    /// The guard of every later run follows `deadline` (a run already going keeps the watch
    /// it was started with).
    fn follow_deadline(&self, deadline: DeadlineWatch) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
    }
}
