//! The guard of one run: a tiny shell outside the daemon that stops the service when the
//! leader's deadline passes without a renewal, and (for a process group) when the daemon dies.
//!
//! * **Daemon death.** The guard's stdin is a pipe whose only writer is the daemon. When the
//!   daemon dies the kernel closes it and `read` returns at end of file: a process backend's
//!   guard `SIGKILL`s the group (exit status 2); the guard of a service owned by an external
//!   manager (systemd unit, container) just exits — such services are their manager's
//!   (see the `Backend` contract).
//! * **Deadline.** With a [`DeadlineWatch`] (Singleton apps), the daemon writes one line per
//!   renewal of the term the run was started for: the *remaining* validity in milliseconds,
//!   computed on the daemon's monotonic clock just before the write (never a wall-clock time).
//!   The guard (`/bin/bash`: `read -t` takes fractional seconds, dash's `read` has no timeout)
//!   waits for the next line at most that long. If none comes in time (the daemon is hung,
//!   `SIGSTOP`ped, deadlocked), it runs the *soft* stop (`SIGTERM` to the group; `StopUnit`;
//!   `docker kill --signal TERM`), waits `grace`, runs the *hard* stop (`SIGKILL`; `KillUnit`
//!   with `SIGKILL`; `docker kill`) and exits with status 3 ([`FIRED`]). A line `0` fires at
//!   once.
//! * **Release.** On a normal stop the daemon `SIGKILL`s the guard while the pipe is still
//!   open, so it never acts.
//!
//! Timing budget (default profile `T` = 15 s, `ε` = 0.1; fast profile `T` = 3 s, `ε` = 0.15):
//! the daemon's deadline is `start of the last successful renewal + T·(1−ε)`; the lease can
//! expire elsewhere no earlier than `ε·T` later (1.5 s; 0.45 s). The guard's own deadline is
//! the moment it reads a line plus the remaining time in it, i.e. the daemon's deadline plus
//! the pipe latency (well under a millisecond on an idle host). It then spends at most
//! `grace = min(graceful_timeout, ε·T / 3)` (500 ms; 150 ms) before the hard stop, which
//! leaves two thirds of the margin for scheduling delays and for the kernel, the service
//! manager or the engine to tear the service down.
//!
//! Without `/bin/bash` a process group gets the `/bin/sh` death guard only and an external
//! service no guard (a warning says so).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::DeadlineWatch;
use cluster_core::Epoch;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use crate::process::child::{ChildHandle, Exit};
use crate::process::spawn::spawn_on_spawner;

/// How long a firing guard may take beyond its grace to exit.
const FINISH: Duration = Duration::from_millis(500);

/// The guard's exit status after the deadline fired.
pub(crate) const FIRED: i32 = 3;

const BASH: &str = "/bin/bash";
const SH: &str = "/bin/sh";

/// Death guard only: wait for end of file, then kill. `$1` is `-PGID` or `PID`.
const DEATH_SCRIPT: &str = "read -r _ ; kill -9 \"$1\" 2>/dev/null; exit 2";

/// Death and deadline guard (bash). `$1` the grace in seconds, `$2` `hard` to run the hard stop
/// at end of file (else nothing), `$3` the number `n` of words of the soft stop command; then
/// the soft stop command (`n` words) and the hard stop command (the rest).
const DEADLINE_SCRIPT: &str = r#"grace=$1; eof=$2; n=$3; shift 3
soft=("${@:1:n}"); hard=("${@:n+1}")
fire() { "${soft[@]}" >/dev/null 2>&1; sleep "$grace"; "${hard[@]}" >/dev/null 2>&1; exit 3; }
t=
while :; do
  if [ -n "$t" ]; then IFS= read -r -t "$t" l; r=$?; else IFS= read -r l; r=$?; fi
  if [ "$r" -gt 128 ]; then fire; fi
  if [ "$r" -ne 0 ]; then
    if [ "$eof" = hard ]; then "${hard[@]}" >/dev/null 2>&1; fi
    exit 2
  fi
  case "$l" in ''|*[!0-9]*) continue ;; esac
  l=$((10#$l))
  if [ "$l" -le 0 ]; then fire; fi
  printf -v t '%d.%03d' $((l / 1000)) $((l % 1000))
done"#;

/// What a guard does to the service.
#[cfg_attr(not(any(feature = "systemd", feature = "docker")), allow(dead_code))]
pub(crate) enum Target {
    /// A process group (`-pgid`) or a process (`pid`): `SIGTERM`/`SIGKILL`, also when the
    /// daemon dies.
    Group(i32),
    /// A service owned by an external manager: the soft and the hard stop commands, run only
    /// at the deadline.
    External {
        /// The soft stop (program and arguments).
        soft: Vec<String>,
        /// The hard stop (program and arguments).
        hard: Vec<String>,
    },
}

/// The guard process, shared with the forwarder task.
struct Process {
    handle: ChildHandle,
    /// Whether a fired deadline was reported already (it is reported once).
    reported: AtomicBool,
    /// Whether this guard enforces a deadline (bash, with a deadline watch).
    deadline: bool,
    epoch: Epoch,
    what: String,
    /// Time between the guard's `SIGTERM` and `SIGKILL`.
    grace: Duration,
    /// Where a fired guard is audited.
    reporter: Option<DeadlineWatch>,
}

impl Process {
    fn fired(&self) -> bool {
        self.deadline && self.handle.exit().is_some_and(|e| e.code == Some(FIRED))
    }

    /// Logs and audits a guard that fired, once (when the daemon runs again).
    fn report_if_fired(&self) {
        if self.fired() && !self.reported.swap(true, Ordering::SeqCst) {
            error!(target: "cluster::audit", event = "backend.guard.fired",
                backend = %self.what, epoch = %self.epoch,
                "the guard stopped the backend: this daemon did not renew its leadership \
                 before the deadline (it was hung or stopped)");
            if let Some(r) = &self.reporter {
                r.report_guard_fired("backend", self.epoch, &[("backend", &self.what)]);
            }
        }
    }
}

/// A running guard and the task that feeds it the deadline.
pub(crate) struct Guard {
    process: Arc<Process>,
    /// The daemon's end of the guard's stdin (end of file = the daemon is gone).
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    forwarder: Option<JoinHandle<()>>,
}

/// What the guard of a run follows.
pub(crate) struct Follow {
    /// The deadline watch of the app (`None`: death guard only).
    pub(crate) deadline: Option<DeadlineWatch>,
    /// The term the run was started for.
    pub(crate) epoch: Epoch,
    /// The configured graceful stop timeout (bounds the guard's grace).
    pub(crate) graceful: Duration,
    /// The backend, for logs.
    pub(crate) what: String,
    /// The exit of the guarded child (process groups): the guard is released when it exits
    /// on its own (its process group id may then be reused and must not be signalled at a
    /// later deadline).
    pub(crate) child_exit: Option<watch::Receiver<Option<Exit>>>,
}

impl Guard {
    /// Starts the guard of `target` and, with a deadline watch, the task that writes the
    /// remaining time of `follow.epoch` to it on every renewal. `None` when there is nothing
    /// to guard (an external service without a deadline, or without `/bin/bash`).
    pub(crate) async fn spawn(target: Target, follow: Follow) -> io::Result<Option<Self>> {
        let bash = follow.deadline.is_some() && std::path::Path::new(BASH).exists();
        if follow.deadline.is_some() && !bash {
            warn!(backend = %follow.what, "{BASH} not found: the backend guard does not stop \
                  the backend when the daemon hangs past its deadline");
        }
        if !bash && matches!(target, Target::External { .. }) {
            return Ok(None);
        }
        let grace = follow
            .deadline
            .as_ref()
            .map(|d| (d.margin() / 3).min(follow.graceful))
            .unwrap_or_default();
        let mut child = spawn_guard(&target, bash, grace).await?;
        let stdin = child.stdin.take();
        if let Some(s) = &stdin {
            set_nonblocking(s);
        }
        let process = Arc::new(Process {
            handle: ChildHandle::watch(child, false)?,
            reported: AtomicBool::new(false),
            deadline: bash,
            epoch: follow.epoch,
            what: follow.what,
            grace,
            reporter: follow.deadline.clone().filter(|_| bash),
        });
        let stdin = Arc::new(Mutex::new(stdin));
        let forwarder = match follow.deadline.filter(|_| bash) {
            Some(watch) => {
                // The first line before `start` returns: the run is never unguarded for long.
                if let Some(left) = watch.remaining(follow.epoch) {
                    write_remaining(&stdin, left);
                }
                Some(tokio::spawn(forward(
                    watch,
                    stdin.clone(),
                    process.clone(),
                    follow.child_exit,
                )))
            }
            None => None,
        };
        Ok(Some(Self {
            process,
            stdin,
            forwarder,
        }))
    }

    /// Stops the guard without letting it act: the forwarder ends, the guard is killed while
    /// its pipe is still open, then the pipe is closed. A guard that had fired is reported.
    pub(crate) fn release(&self) {
        if let Some(f) = &self.forwarder {
            f.abort();
        }
        let _ = self.process.handle.signal(libc::SIGKILL);
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        // A guard that fired may not be reaped yet (its reaper thread and this task resume
        // together after a SIGSTOP): its exit status tells — 3 if it fired, SIGKILL otherwise.
        if self.process.deadline
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let process = self.process.clone();
            rt.spawn(async move {
                process.handle.wait().await;
                process.report_if_fired();
            });
        }
    }

    /// Whether the guard stopped the backend because the deadline passed (reported once).
    pub(crate) fn fired(&self) -> bool {
        self.process.report_if_fired();
        self.process.fired()
    }
}

impl Drop for Guard {
    /// A guard dropped without [`Guard::release`] (its run was dropped while the child ran):
    /// the pipe closes at once, so the guard kills what is left of the group.
    fn drop(&mut self) {
        if let Some(f) = &self.forwarder {
            f.abort();
        }
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Writes the remaining time of the guard's term on every change of the election state, and
/// reports a guard that fired (once the daemon runs again).
async fn forward(
    mut watch: DeadlineWatch,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    process: Arc<Process>,
    child_exit: Option<watch::Receiver<Option<Exit>>>,
) {
    let child_exited = async move {
        match child_exit {
            Some(mut rx) => {
                let _ = rx.wait_for(Option::is_some).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(child_exited);
    let epoch = process.epoch;
    let exited = process.handle.wait();
    tokio::pin!(exited);
    let mut following = true;
    loop {
        tokio::select! {
            exit = &mut exited => {
                process.report_if_fired();
                debug!(backend = %process.what, exit = %exit.description, "backend guard ended");
                return;
            }
            () = &mut child_exited => {
                // The guard may be the reason (it ends the group, then exits 3): let it finish
                // its grace. Otherwise it is released, so it never signals the group id again.
                match tokio::time::timeout(process.grace + FINISH, &mut exited).await {
                    Ok(_) => process.report_if_fired(),
                    Err(_) => {
                        let _ = process.handle.signal(libc::SIGKILL);
                    }
                }
                return;
            }
            changed = watch.changed(), if following => {
                // The election is gone: the guard keeps the last deadline it was given.
                following = changed;
                // Not leading this term any more: likewise; the last deadline bounds how
                // long the backend may still run.
                if let Some(left) = watch.remaining(epoch).filter(|_| changed) {
                    write_remaining(&stdin, left);
                }
            }
        }
    }
}

/// One line: the remaining validity in milliseconds (0 makes the guard fire at once).
fn write_remaining(stdin: &Mutex<Option<ChildStdin>>, left: Duration) {
    let ms = left.as_millis().min(u128::from(u32::MAX));
    let mut stdin = stdin.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = stdin.as_mut()
        && let Err(e) = s.write_all(format!("{ms}\n").as_bytes())
    {
        // A full pipe (a stopped guard) or a dead guard: the guard acts on what it has.
        debug!(error = %e, "writing the deadline to the backend guard failed");
    }
}

/// The daemon never blocks on the guard's pipe (a stopped guard must not stall a worker).
#[allow(unsafe_code)]
fn set_nonblocking(stdin: &ChildStdin) {
    let fd = stdin.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `stdin` for the duration of the calls;
    // F_GETFL/F_SETFL only change its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Starts the guard process of `target`.
async fn spawn_guard(
    target: &Target,
    bash: bool,
    grace: Duration,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let mut command = match (bash, target) {
        (true, Target::Group(t)) => {
            let signal = |s: &str| ["kill", "-s", s, "--", &t.to_string()].map(String::from);
            deadline_command(grace, true, &signal("TERM"), &signal("KILL"))
        }
        (true, Target::External { soft, hard }) => deadline_command(grace, false, soft, hard),
        (false, Target::Group(t)) => {
            let mut c = Command::new(SH);
            c.args(["-c", DEATH_SCRIPT, "cluster-backend-guard"])
                .arg(t.to_string());
            c
        }
        (false, Target::External { .. }) => {
            return Err(io::Error::other("an external service needs the bash guard"));
        }
    };
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a terminal's Ctrl-C or a group signal to the backend never hits it.
        .process_group(0);
    // No parent-death signal here: the guard must outlive the daemon to do its job.
    spawn_on_spawner(command).await
}

fn deadline_command(
    grace: Duration,
    hard_on_eof: bool,
    soft: &[String],
    hard: &[String],
) -> Command {
    let mut c = Command::new(BASH);
    c.args(["-c", DEADLINE_SCRIPT, "cluster-backend-guard"])
        .arg(format!("{}.{:03}", grace.as_secs(), grace.subsec_millis()))
        .arg(if hard_on_eof { "hard" } else { "none" })
        .arg(soft.len().to_string())
        .args(soft)
        .args(hard);
    c
}

/// The deadline guard of a service owned by an external manager (systemd unit, container):
/// armed after each successful `start` for its term, released after `stop`.
#[cfg_attr(not(any(feature = "systemd", feature = "docker")), allow(dead_code))]
#[derive(Default)]
pub(crate) struct ServiceGuard {
    deadline: Mutex<Option<DeadlineWatch>>,
    armed: tokio::sync::Mutex<Option<(Epoch, Guard)>>,
}

impl ServiceGuard {
    /// Later `arm`s follow `deadline`.
    pub(crate) fn follow(&self, deadline: DeadlineWatch) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
    }

    /// Guards the service for term `epoch` (kept when a live guard of that term runs):
    /// `program` (looked up in `PATH`) is what the stop commands run.
    pub(crate) async fn arm(
        &self,
        epoch: Epoch,
        what: String,
        graceful: Duration,
        program: &str,
        target: Target,
    ) {
        let deadline = self
            .deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if deadline.is_none() {
            return;
        }
        let mut armed = self.armed.lock().await;
        if let Some((e, g)) = armed.as_ref()
            && *e == epoch
            && g.process.handle.exit().is_none()
        {
            return;
        }
        if let Some((_, old)) = armed.take() {
            old.release();
        }
        if !in_path(program) {
            warn!(backend = %what, "{program} not found in PATH: the backend is not stopped \
                  when the daemon hangs past its leadership deadline");
            return;
        }
        let follow = Follow {
            deadline,
            epoch,
            graceful,
            what: what.clone(),
            child_exit: None,
        };
        match Guard::spawn(target, follow).await {
            Ok(Some(g)) => *armed = Some((epoch, g)),
            Ok(None) => {}
            Err(e) => warn!(backend = %what, error = %e, "the deadline guard did not start"),
        }
    }

    /// Stops the guard without letting it act (after the service was stopped).
    pub(crate) async fn release(&self) {
        if let Some((_, g)) = self.armed.lock().await.take() {
            g.release();
        }
    }
}

/// Whether `program` is an executable file in `PATH`.
#[cfg_attr(not(any(feature = "systemd", feature = "docker")), allow(dead_code))]
fn in_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
