//! One `nats-server` child process: spawn, signals, health wait, cleanup.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::binary::nats_server_binary;
use super::http;

/// How long a server may take to become healthy (a restarted cluster member recovers its
/// JetStream state first).
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// A scratch directory removed on drop, unless the thread is panicking (then it is kept for
/// the logs and its path is printed).
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(tag: &str) -> std::io::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("cluster-testkit-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "cluster-testkit: test failed; nats-server logs and data kept in {}",
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A `nats-server` child process with its log file.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl ServerProcess {
    /// A process that is not running yet.
    pub(crate) fn new(log: PathBuf) -> Self {
        Self {
            log,
            child: None,
            paused: false,
        }
    }

    /// Starts the server with `args`; stdout and stderr are appended to the log file.
    pub(crate) fn spawn(&mut self, args: &[OsString]) -> Result<(), String> {
        self.kill();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone log handle: {e}"))?;
        let bin = nats_server_binary();
        let child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// The process id while running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the process is alive (paused counts as alive).
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                return;
            };
            // SAFETY: `kill(2)` has no memory-safety preconditions; `pid` is our own child,
            // which has not been reaped yet (we still hold its `Child`), so the pid cannot
            // have been reused by another process.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// SIGKILL (a crash) and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGTERM (clean shutdown) and reap; SIGKILL after 10 s.
    pub(crate) fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if self.paused {
            self.resume();
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.is_running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGSTOP: the process hangs with its sockets open.
    pub(crate) fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = self.child.is_some();
    }

    /// SIGCONT after [`ServerProcess::pause`].
    pub(crate) fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Waits until `GET path` on `monitor` answers 200.
    pub(crate) fn wait_healthy(&mut self, monitor: SocketAddr, path: &str) -> Result<(), String> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if http::is_ok(monitor, path) {
                return Ok(());
            }
            if !self.is_running() {
                return Err(format!(
                    "nats-server exited before becoming healthy; log: {}\n{}",
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server not healthy at http://{monitor}{path} after {HEALTH_TIMEOUT:?}; \
                     log: {}\n{}",
                    self.log.display(),
                    tail(&self.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Reserves `n` distinct free loopback ports (bind all, then release all).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot reserve a port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read a reserved port: {e}"))
}

/// Writes `content` to a new file (for configs).
pub(crate) fn write_file(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    File::create(path)
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
