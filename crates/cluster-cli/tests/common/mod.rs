//! Helpers for tests that run the real `cluster` binary.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod wal;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cluster")
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cluster-cli-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The platform part of a test configuration: platform `platform` on `nats_url`, fast election
/// and membership, graceful shutdown within `shutdown_timeout`; apps are appended after it.
pub fn platform_config(platform: &str, nats_url: &str, shutdown_timeout: &str) -> String {
    format!(
        r#"platform = "{platform}"
shutdown_timeout = "{shutdown_timeout}"
[nats]
servers = ["{nats_url}"]
[election]
profile = "fast"
[membership]
ttl = "3s"
refresh = "500ms"
"#
    )
}

/// A test configuration for platform `platform` on `nats_url`: fast election and membership,
/// a Singleton app `db` and a Spread app `web`.
pub fn config(platform: &str, nats_url: &str) -> String {
    platform_config(platform, nats_url, "10s")
        + r#"[[apps]]
name = "db"
mode = "singleton"
[[apps]]
name = "web"
mode = "spread"
"#
}

/// The result of one CLI invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cluster args…` to completion (with a 60 s safety bound).
pub fn cli(args: &[&str]) -> Run {
    let child = Command::new(bin())
        .args(args)
        .env_remove("CLUSTER_CONFIG")
        .env_remove("CLUSTER_NATS")
        .env_remove("CLUSTER_NODE")
        .env_remove("CLUSTER_PLATFORM")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the output concurrently (a full pipe would block the child).
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap().into(),
        Err(_) => {
            // SAFETY: kill(2) of our own child.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL)
            };
            panic!("cluster {args:?} did not finish within 60s");
        }
    }
}

/// A running daemon.
pub struct Daemon {
    pub node: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cluster run --config <config> --node <node>` with output to a log file.
    pub fn start(config: &Path, node: &str, dir: &Path) -> Self {
        Self::start_with(config, node, dir, &[])
    }

    /// As [`Daemon::start`], with `extra` arguments after `run`.
    pub fn start_with(config: &Path, node: &str, dir: &Path, extra: &[&str]) -> Self {
        let log = dir.join(format!("{node}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args(["run", "--config", config.to_str().unwrap(), "--node", node])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self {
            node: node.to_owned(),
            child,
            log,
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the pid of our own child and a valid signal number.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} did not exit within {within:?}; log:\n{}",
                self.node,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` until it returns `Some` (real time), failing with `what` after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live (non-zombie) `sleep <marker>` processes (backends of the tests' process apps, told apart
/// by their argument): pid → parent pid (the daemon that runs it).
pub fn sleep_processes(marker: u64) -> std::collections::BTreeMap<u32, u32> {
    let mut out = std::collections::BTreeMap::new();
    let want = marker.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if args.len() != 2 || !args[0].ends_with(b"sleep") || args[1] != want.as_bytes() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(ppid) = fields.get(1).and_then(|p| p.parse().ok()) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port` → (status, body); `None` when nothing listens yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
