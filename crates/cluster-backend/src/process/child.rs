//! A running child: its reaper thread, safe signalling, and the exit notification.

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::spawn::{send_signal, wait_exited_no_reap};

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exit {
    /// `exit status: 1`, `signal: 9 (SIGKILL)`, or the wait error.
    pub(crate) description: String,
    /// Whether it exited with status 0.
    pub(crate) success: bool,
    /// The exit status, when it exited (not killed by a signal).
    pub(crate) code: Option<i32>,
}

impl Exit {
    fn from_status(status: io::Result<ExitStatus>) -> Self {
        match status {
            Ok(s) => Self {
                description: s.to_string(),
                success: s.success(),
                code: s.code(),
            },
            Err(e) => Self {
                description: format!("wait failed: {e}"),
                success: false,
                code: None,
            },
        }
    }
}

/// Reaped-or-not, under one lock: a signal is sent only while the pid is still ours.
struct Reaped {
    done: Mutex<bool>,
}

/// A spawned child, its reaper and (optionally) its process group.
pub(crate) struct ChildHandle {
    pid: u32,
    /// `-pgid` to signal the whole group, or `pid`.
    target: i32,
    reaped: Arc<Reaped>,
    exit: watch::Receiver<Option<Exit>>,
}

impl ChildHandle {
    /// Takes ownership of `child` (its pipes must have been taken already) and starts its
    /// reaper thread. With `group`, the child leads its own process group and what is left of
    /// the group is killed when the child exits.
    pub(crate) fn watch(child: Child, group: bool) -> io::Result<Self> {
        let pid = child.id();
        let pid_i32 = i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
        let target = if group { -pid_i32 } else { pid_i32 };
        let reaped = Arc::new(Reaped {
            done: Mutex::new(false),
        });
        let (tx, exit) = watch::channel(None);
        let r = reaped.clone();
        std::thread::Builder::new()
            .name(format!("cluster-backend-reap-{pid}"))
            .spawn(move || reap(child, target, group, &r, &tx))?;
        Ok(Self {
            pid,
            target,
            reaped,
            exit,
        })
    }

    /// What signals reach: `-pgid` (the group) or the pid.
    pub(crate) fn target(&self) -> i32 {
        self.target
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// How it exited, once it has.
    pub(crate) fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// A watch of the exit (`Some` once the child exited and was reaped).
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<Exit>> {
        self.exit.clone()
    }

    /// Sends `signal` to the child (or its group) unless it has been reaped already.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        let done = self.reaped.done.lock().unwrap_or_else(|p| p.into_inner());
        if *done {
            return Ok(());
        }
        // The lock is held: the reaper cannot reap (and free the pid) while we signal.
        send_signal(self.target, signal)
    }

    /// Waits until the child has exited and was reaped.
    pub(crate) async fn wait(&self) -> Exit {
        let mut rx = self.exit.clone();
        let exit = rx.wait_for(Option::is_some).await.map(|e| e.clone());
        match exit {
            Ok(Some(exit)) => exit,
            // The reaper always publishes before it ends; a closed channel means it panicked.
            _ => Exit {
                description: "reaper thread ended without a status".into(),
                success: false,
                code: None,
            },
        }
    }
}

impl Drop for ChildHandle {
    /// A handle dropped while its child runs (a crashed coordinator, a dropped backend) kills
    /// the child and its group: nothing outlives the object that owns it.
    fn drop(&mut self) {
        if self.exit().is_none() {
            let _ = self.signal(libc::SIGKILL);
        }
    }
}

/// `SIGKILL`s the group `-target` until no live member is left (at most 5 s).
fn sweep_group(target: i32) {
    let pgid = target.unsigned_abs();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let _ = send_signal(target, libc::SIGKILL);
        if !group_has_live_members(pgid) {
            return;
        }
        if std::time::Instant::now() >= deadline {
            tracing::error!(pgid, "processes of the group survive SIGKILL");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Whether a process other than a zombie belongs to process group `pgid` (from `/proc`).
pub(crate) fn group_has_live_members(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // "pid (comm) S ppid pgrp ..."; comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        group == Some(pgid) && state != Some("Z")
    })
}

/// The reaper thread: waits for the exit without reaping, kills what is left of the group
/// while the group id is still reserved by the zombie, then reaps and publishes the status.
fn reap(
    mut child: Child,
    target: i32,
    group: bool,
    reaped: &Reaped,
    tx: &watch::Sender<Option<Exit>>,
) {
    let _ = wait_exited_no_reap(child.id());
    let status = {
        let mut done = reaped.done.lock().unwrap_or_else(|p| p.into_inner());
        if group {
            // Orphans of a finished run must not linger (they would hold ports, files). The
            // zombie leader keeps the group id reserved while we wait for them to die.
            sweep_group(target);
        }
        let status = child.wait();
        *done = true;
        status
    };
    tx.send_replace(Some(Exit::from_status(status)));
}
