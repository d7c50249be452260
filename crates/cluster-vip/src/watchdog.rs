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

/// The guard's script: `$1` is the `ip` binary, `$2` the address, `$3` the interface.
const SCRIPT: &str = "trap '' HUP INT TERM; read -r _; exec \"$1\" -4 addr del \"$2\" dev \"$3\"";

/// The shell that runs the guard.
const SHELL: &str = "/bin/sh";

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

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running guard. Dropping it without [`Guard::disarm`] closes the pipe: the guard then
/// removes the address itself (used as a second attempt when a release failed).
pub(crate) struct Guard {
    child: Child,
    /// The write end of the guard's stdin; never written, only held.
    pipe: ChildStdin,
}

impl Guard {
    /// Starts a guard for `cidr` on `interface` in the calling thread's network namespace.
    pub(crate) fn spawn(ip: &Path, cidr: Cidr, interface: &str) -> Result<Self, VipError> {
        let mut child = Command::new(SHELL)
            .arg("-c")
            .arg(SCRIPT)
            .arg("cluster-vip-guard")
            .arg(ip)
            .arg(cidr.to_string())
            .arg(interface)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| VipError::io(&format!("starting the VIP watchdog ({SHELL})"), &e))?;
        let Some(pipe) = child.stdin.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VipError::Io("the VIP watchdog has no stdin pipe".into()));
        };
        Ok(Self { child, pipe })
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
