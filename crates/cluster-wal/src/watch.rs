//! Filesystem notification of the leader's `-wal` file (Linux inotify): a commit by a writer in
//! another process (the daemon's backend, the `sqlite3` CLI) rings the capture doorbell within
//! microseconds instead of waiting for the next poll (25 ms by default), which shrinks the window
//! of commits a node crash loses before they are shipped.
//!
//! The watch covers the database's directory (the `-wal` file may be created, truncated or
//! replaced) and filters events by name. A writer publishes its commit in the wal-index (`-shm`,
//! shared memory: no event) right **after** its last write to the `-wal` file, and capture reads
//! only up to that published end, so every event is followed by re-rings at growing intervals
//! (1 to 16 ms, 34 ms in all) that pick the commit up once it is published (after the writer's
//! fsync). The poll stays as the fallback; without
//! inotify (other systems, exhausted watches) only the poll runs.
//!
//! `unsafe`: the inotify/poll/read/close syscalls through `libc` (each block says why it holds).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sqlite::Doorbell;

/// Re-rings after an event, in ms after the previous one (see the module docs): the writer
/// publishes its commit after its fsync of the `-wal`, which takes 0.2 to over 10 ms on a busy
/// disk; together 34 ms, past the poll interval.
const FOLLOW_UPS_MS: [u64; 7] = [1, 1, 2, 2, 4, 8, 16];
/// How often the thread checks whether it should stop.
const IDLE_MS: i32 = 200;

/// A running watch; stops (and closes its descriptor) when dropped.
#[derive(Debug)]
pub struct WalWatch {
    alive: Arc<AtomicBool>,
}

impl Drop for WalWatch {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl WalWatch {
    /// Watches `wal`; `None` (after a warning) when inotify is not available.
    pub fn start(wal: &Path) -> Option<Self> {
        let dir = wal.parent().filter(|d| !d.as_os_str().is_empty())?;
        let name = wal.file_name()?.as_bytes().to_vec();
        let cdir = CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: plain syscalls on a descriptor this function owns; `cdir` is a valid
        // NUL-terminated path that outlives the call.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "inotify unavailable; WAL capture polls only");
            return None;
        }
        // SAFETY: as above.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd,
                cdir.as_ptr(),
                libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE,
            )
        };
        if wd < 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), dir = %dir.display(),
                "inotify watch refused; WAL capture polls only");
            // SAFETY: closes the descriptor opened above, once.
            unsafe { libc::close(fd) };
            return None;
        }
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-watch".into())
            .spawn(move || run(fd, &name, &flag));
        match spawned {
            Ok(_) => Some(Self { alive }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the WAL watch thread; polling only");
                // SAFETY: the thread did not start, so the descriptor is still only ours.
                unsafe { libc::close(fd) };
                None
            }
        }
    }
}

fn run(fd: i32, name: &[u8], alive: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut follow_ups = 0usize;
    while alive.load(Ordering::SeqCst) {
        let timeout = if follow_ups < FOLLOW_UPS_MS.len() {
            FOLLOW_UPS_MS[follow_ups] as i32
        } else {
            IDLE_MS
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if ready == 0 {
            if follow_ups < FOLLOW_UPS_MS.len() {
                Doorbell::ring();
                follow_ups += 1;
            }
            continue;
        }
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!(error = %e, "WAL watch failed; polling only");
            break;
        }
        // SAFETY: reads into `buf`, which is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        if mentions(&buf[..n as usize], name) {
            Doorbell::ring();
            follow_ups = 0;
        }
    }
    // SAFETY: the descriptor is owned by this thread and closed once.
    unsafe { libc::close(fd) };
}

/// Whether a buffer of `inotify_event`s names `name`.
fn mentions(mut events: &[u8], name: &[u8]) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut found = false;
    while events.len() >= HEADER {
        let len = u32::from_ne_bytes([events[12], events[13], events[14], events[15]]) as usize;
        let Some(raw) = events.get(HEADER..HEADER + len) else {
            break;
        };
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        found |= &raw[..end] == name;
        events = &events[HEADER + len..];
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_write_to_the_wal_file_rings_the_doorbell() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("x.db-wal");
        let _w = WalWatch::start(&wal).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // Another file in the directory: at most the follow-ups of nothing (no ring).
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let seen = Doorbell::generation();
        std::fs::write(&wal, b"frames").unwrap();
        let now = Doorbell::wait(seen, Duration::from_secs(2));
        assert_ne!(now, seen, "no ring within 2 s of a write to the -wal file");
    }
}
