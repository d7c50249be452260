//! The guard of one run: a tiny shell outside the daemon that kills the backend's process
//! group when the daemon dies, and when the leader's deadline passes without a renewal.
//!
//! * **Daemon death.** The guard's stdin is a pipe whose only writer is the daemon. When the
//!   daemon dies the kernel closes it, `read` returns at end of file and the guard `SIGKILL`s
//!   the group (exit status 2).
//! * **Deadline.** With a [`DeadlineWatch`] (Singleton apps), the daemon writes one line per
//!   renewal of the term the run was started for: the *remaining* validity in milliseconds,
//!   computed on the daemon's monotonic clock just before the write (never a wall-clock time).
//!   The guard (`/bin/bash`: `read -t` takes fractional seconds, dash's `read` has no timeout)
//!   waits for the next line at most that long. If none comes in time (the daemon is hung,
//!   `SIGSTOP`ped, deadlocked), it sends `SIGTERM` to the group, waits `grace`, sends
//!   `SIGKILL` and exits with status 3 ([`FIRED`]). A line `0` fires at once.
//! * **Release.** On a normal stop the daemon `SIGKILL`s the guard while the pipe is still
//!   open, so it never acts.
//!
//! Timing budget (default profile `T` = 15 s, `ε` = 0.1; fast profile `T` = 3 s, `ε` = 0.15):
//! the daemon's deadline is `start of the last successful renewal + T·(1−ε)`; the lease can
//! expire elsewhere no earlier than `ε·T` later (1.5 s; 0.45 s). The guard's own deadline is
//! the moment it reads a line plus the remaining time in it, i.e. the daemon's deadline plus
//! the pipe latency (well under a millisecond on an idle host). It then spends at most
//! `grace = min(graceful_timeout, ε·T / 3)` (500 ms; 150 ms) before `SIGKILL`, which leaves
//! two thirds of the margin for scheduling delays and for the kernel to tear the group down.
//!
//! Without `/bin/bash` the guard is the `/bin/sh` death guard only (a warning says so).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_core::Epoch;
use cluster_core::runtime::DeadlineWatch;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use super::child::{ChildHandle, Exit};
use super::spawn::spawn_on_spawner;

/// How long a firing guard may take beyond its grace to exit.
const FINISH: Duration = Duration::from_millis(500);

/// The guard's exit status after the deadline fired.
pub(crate) const FIRED: i32 = 3;

const BASH: &str = "/bin/bash";
const SH: &str = "/bin/sh";

/// Death guard only: wait for end of file, then kill. `$1` is `-PGID` or `PID`.
const DEATH_SCRIPT: &str = "read -r _ ; kill -9 \"$1\" 2>/dev/null; exit 2";

/// Death and deadline guard (bash). `$1` is `-PGID` or `PID`, `$2` the grace in seconds.
const DEADLINE_SCRIPT: &str = r#"fire() { kill -s TERM -- "$1" 2>/dev/null; sleep "$2"; kill -s KILL -- "$1" 2>/dev/null; exit 3; }
t=
while :; do
  if [ -n "$t" ]; then IFS= read -r -t "$t" l; r=$?; else IFS= read -r l; r=$?; fi
  if [ "$r" -gt 128 ]; then fire "$1" "$2"; fi
  if [ "$r" -ne 0 ]; then kill -s KILL -- "$1" 2>/dev/null; exit 2; fi
  case "$l" in ''|*[!0-9]*) continue ;; esac
  l=$((10#$l))
  if [ "$l" -le 0 ]; then fire "$1" "$2"; fi
  printf -v t '%d.%03d' $((l / 1000)) $((l % 1000))
done"#;

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
    /// The exit of the guarded child: the guard is released when it exits on its own (its
    /// process group id may then be reused and must not be signalled at a later deadline).
    pub(crate) child_exit: watch::Receiver<Option<Exit>>,
}

impl Guard {
    /// Starts the guard of `target` (`-pgid` or `pid`) and, with a deadline watch, the task
    /// that writes the remaining time of `follow.epoch` to it on every renewal.
    pub(crate) async fn spawn(target: i32, follow: Follow) -> io::Result<Self> {
        let bash = follow.deadline.is_some() && std::path::Path::new(BASH).exists();
        if follow.deadline.is_some() && !bash {
            warn!(backend = %follow.what, "{BASH} not found: the backend guard kills the \
                  backend when the daemon dies, but not when the daemon hangs past its deadline");
        }
        let grace = follow
            .deadline
            .as_ref()
            .map(|d| (d.margin() / 3).min(follow.graceful))
            .unwrap_or_default();
        let mut child = spawn_guard(target, bash, grace).await?;
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
        Ok(Self {
            process,
            stdin,
            forwarder,
        })
    }

    /// Stops the guard without letting it act: the forwarder ends, the guard is killed while
    /// its pipe is still open, then the pipe is closed. A guard that had fired is reported.
    pub(crate) fn release(&self) {
        if let Some(f) = &self.forwarder {
            f.abort();
        }
        self.process.report_if_fired();
        let _ = self.process.handle.signal(libc::SIGKILL);
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
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
    mut child_exit: watch::Receiver<Option<Exit>>,
) {
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
            _ = child_exit.wait_for(Option::is_some).map(|_| ()) => {
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

/// Starts the guard process of `target` (`-pgid` or `pid`).
async fn spawn_guard(target: i32, bash: bool, grace: Duration) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let mut command = if bash {
        let mut c = Command::new(BASH);
        c.args(["-c", DEADLINE_SCRIPT, "cluster-backend-guard"])
            .arg(target.to_string())
            .arg(format!("{}.{:03}", grace.as_secs(), grace.subsec_millis()));
        c
    } else {
        let mut c = Command::new(SH);
        c.args(["-c", DEATH_SCRIPT, "cluster-backend-guard"])
            .arg(target.to_string());
        c
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
