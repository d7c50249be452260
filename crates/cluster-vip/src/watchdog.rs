//! The VIP watchdog: a tiny guard process that removes the address when the process holding it
//! dies without releasing it (SIGKILL, abort, OOM kill).
//!
//! While the address is held, a guard `/bin/sh` runs
//! `trap '' HUP INT TERM; read -r _; exec ip -4 addr del <cidr> dev <interface>` with the read
//! end of a pipe as its stdin. The only writer of that pipe is this process (the write end is
//! close-on-exec, so no other child inherits it). When this process dies, the kernel closes
//! the write end, `read` returns at end of file, and the guard removes the address. On a normal
//! release the resource removes the address itself and then kills the guard with `SIGKILL`
//! before the pipe closes, so the guard never acts.
//!
//! **Deadline.** For a Singleton app (the resource follows a `DeadlineWatch`) the daemon also
//! writes one line per renewal: the *remaining* validity of its leadership in milliseconds,
//! computed on its monotonic clock just before the write. The guard is then `/bin/bash` (its
//! `read -t` takes fractional seconds) and waits for the next line at most that long; when none
//! comes in time (the daemon is hung, `SIGSTOP`ped, deadlocked) it removes the address and
//! exits with status 3 ([`FIRED`]), before the lease can expire elsewhere (the margin is
//! `ε·T` after the deadline: 1.5 s by default, 0.45 s with the fast profile; removing the
//! address takes one `ip` run, a few milliseconds). The resumed daemon sees that the guard
//! fired, logs and audits `vip.guard.fired` and never adds the address back for that claim.
//! Without `/bin/bash` the guard only acts on the daemon's death.
//!
//! The guard is spawned from the resource's worker thread, so it lives in the resource's network
//! namespace (a forked child inherits the forking thread's namespace). It runs in its own process
//! group and ignores SIGHUP/SIGINT/SIGTERM (a terminal's Ctrl-C or a service manager's SIGTERM
//! reaches the daemon, which releases gracefully); it has no parent-death signal.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::config::Cidr;
use crate::error::VipError;

/// The death guard's script: `$1` is the `ip` binary, `$2` the address, `$3` the interface.
const SCRIPT: &str = "trap '' HUP INT TERM; read -r _; exec \"$1\" -4 addr del \"$2\" dev \"$3\"";

/// The death and deadline guard's script (bash), same arguments.
const DEADLINE_SCRIPT: &str = r#"trap '' HUP INT TERM
del() { "$1" -4 addr del "$2" dev "$3"; }
t=
while :; do
  if [ -n "$t" ]; then IFS= read -r -t "$t" l; r=$?; else IFS= read -r l; r=$?; fi
  if [ "$r" -gt 128 ]; then del "$@"; exit 3; fi
  if [ "$r" -ne 0 ]; then del "$@"; exit; fi
  case "$l" in ''|*[!0-9]*) continue ;; esac
  l=$((10#$l))
  if [ "$l" -le 0 ]; then del "$@"; exit 3; fi
  printf -v t '%d.%03d' $((l / 1000)) $((l % 1000))
done"#;

/// The shell that runs the death guard.
const SHELL: &str = "/bin/sh";

/// The shell that runs the deadline guard.
const BASH: &str = "/bin/bash";

/// The guard's exit status after the deadline fired (it removed the address).
pub(crate) const FIRED: i32 = 3;

/// Finds `ip` (iproute2): `$PATH`, then `/usr/sbin`, `/sbin`, `/usr/bin`, `/bin`.
pub(crate) fn find_ip() -> Result<PathBuf, VipError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("ip");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(VipError::InvalidConfig(
        "the VIP watchdog needs the `ip` tool (iproute2: apt-get install iproute2) in PATH or \
         /usr/sbin, /sbin; install it, or disable the watchdog (Vip::with_watchdog(false)) and \
         accept that a killed daemon leaves the address until its next start"
            .into(),
    ))
}

/// The daemon never blocks on the guard's pipe (a stopped guard must not stall the worker).
#[allow(unsafe_code)]
fn set_nonblocking(pipe: &ChildStdin) {
    use std::os::fd::AsRawFd;
    let fd = pipe.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `pipe` for the duration of the calls;
    // F_GETFL/F_SETFL only change its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running guard. Dropping it without [`Guard::disarm`] closes the pipe: the guard then
/// removes the address itself (used as a second attempt when a release failed).
pub(crate) struct Guard {
    child: Child,
    /// The write end of the guard's stdin (non-blocking): the remaining validity of the
    /// deadline, one line per renewal (deadline guards only).
    pipe: ChildStdin,
    /// Whether the guard enforces a deadline (bash).
    deadline: bool,
    /// Whether the guard has received a deadline (it can fire only then).
    armed: bool,
}

impl Guard {
    /// Starts a guard for `cidr` on `interface` in the calling thread's network namespace.
    pub(crate) fn spawn(ip: &Path, cidr: Cidr, interface: &str) -> Result<Self, VipError> {
        let deadline = Path::new(BASH).exists();
        let (shell, script) = if deadline {
            (BASH, DEADLINE_SCRIPT)
        } else {
            (SHELL, SCRIPT)
        };
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(script)
            .arg("cluster-vip-guard")
            .arg(ip)
            .arg(cidr.to_string())
            .arg(interface)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| VipError::io(&format!("starting the VIP watchdog ({shell})"), &e))?;
        let Some(pipe) = child.stdin.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VipError::Io("the VIP watchdog has no stdin pipe".into()));
        };
        set_nonblocking(&pipe);
        Ok(Self {
            child,
            pipe,
            deadline,
            armed: false,
        })
    }

    /// Gives the guard the remaining validity of the leadership (computed by the caller just
    /// before): it removes the address if no newer line comes within that time. A no-op for
    /// a death-only guard.
    pub(crate) fn write_remaining(&mut self, left: std::time::Duration) {
        if !self.deadline {
            return;
        }
        let ms = left.as_millis().min(u128::from(u32::MAX));
        // A full pipe (a stopped guard) or a dead guard: the guard acts on what it has.
        if self.pipe.write_all(format!("{ms}\n").as_bytes()).is_ok() {
            self.armed = true;
        }
    }

    /// Whether the guard removed the address because the deadline passed (reaps it if so).
    pub(crate) fn fired(&mut self) -> bool {
        self.armed
            && matches!(self.child.try_wait(), Ok(Some(status)) if status.code() == Some(FIRED))
    }

    /// The guard's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the guard is still running (reaps it if it exited).
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the guard without letting it act: `SIGKILL` while its pipe is still open, then
    /// reap. The caller has already removed the address (or never added it).
    pub(crate) fn disarm(mut self) {
        // Signal only while unreaped (the pid cannot have been reused before the wait below).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Only now let the pipe close.
        let _ = self.pipe.flush();
    }
}
