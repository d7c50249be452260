//! Spawning children that never outlive the daemon.
//!
//! Two mechanisms, both needed:
//!
//! * **`PR_SET_PDEATHSIG(SIGKILL)`** on the direct child (set between `fork` and `exec`). Linux
//!   delivers it when the *thread* that forked the child exits, not the process, so every
//!   child is forked by one dedicated spawner thread that lives as long as the process (a tokio
//!   worker or blocking-pool thread may exit earlier and would kill the child with it).
//! * **A guard process** for the rest of the process group: the death signal reaches only the
//!   direct child, and its own children would be re-parented and survive. The guard (see the
//!   `guard` module) is a tiny shell whose stdin is a pipe whose only writer is the daemon; when
//!   the daemon dies the kernel closes the pipe, `read` returns at EOF and the guard `SIGKILL`s
//!   the group. It also enforces the leader's deadline.

use std::io;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::sync::oneshot;

type Reply = oneshot::Sender<io::Result<Child>>;

/// The spawner thread's queue.
fn spawner() -> io::Result<&'static mpsc::Sender<(Command, Reply)>> {
    static SPAWNER: OnceLock<mpsc::Sender<(Command, Reply)>> = OnceLock::new();
    if let Some(tx) = SPAWNER.get() {
        return Ok(tx);
    }
    let (tx, rx) = mpsc::channel::<(Command, Reply)>();
    // Lives until the process exits: the `Sender` sits in a static and is never dropped.
    std::thread::Builder::new()
        .name("cluster-backend-spawner".into())
        .spawn(move || {
            for (mut command, reply) in rx {
                // The caller gave up (its future was dropped): nobody owns the child, kill it.
                if let Err(Ok(mut child)) = reply.send(command.spawn()) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        })?;
    // A racing caller may have installed its own thread first; that one is used and ours ends
    // when its receiver sees the sender dropped.
    Ok(SPAWNER.get_or_init(|| tx))
}

/// Spawns `command` on the spawner thread, with the parent-death signal set.
pub(crate) async fn spawn(mut command: Command) -> io::Result<Child> {
    set_parent_death_signal(&mut command);
    spawn_on_spawner(command).await
}

/// Spawns `command` on the spawner thread as it is (no parent-death signal).
pub(crate) async fn spawn_on_spawner(command: Command) -> io::Result<Child> {
    let (tx, rx) = oneshot::channel();
    spawner()?
        .send((command, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.await
        .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
}

/// Makes the kernel `SIGKILL` the child when the spawning thread (the spawner) dies.
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: `getpid` is async-signal-safe and called here, before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before `exec` and calls only
    // async-signal-safe functions (`prctl`, `getppid`); it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will signal us.
            if libc::getppid() != parent {
                return Err(io::Error::other("the daemon exited while spawning"));
            }
            Ok(())
        });
    }
}

/// Sends `signal` to `target` (`-pgid` or `pid`); `ESRCH` (nothing left) is not an error.
#[allow(unsafe_code)]
pub(crate) fn send_signal(target: i32, signal: i32) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions; the caller guarantees `target` still
    // names its own child (not yet reaped), see `child::ChildHandle::signal`.
    let rc = unsafe { libc::kill(target, signal) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Blocks until child `pid` has exited, without reaping it (`waitid(WEXITED | WNOWAIT)`): its
/// pid, and so its process group id, stay reserved until the caller reaps it.
#[allow(unsafe_code)]
pub(crate) fn wait_exited_no_reap(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: `siginfo_t` is plain data; zeroed is a valid value for `waitid` to overwrite.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable `siginfo_t`; `pid` is our own child.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
