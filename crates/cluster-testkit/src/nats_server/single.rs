//! A single JetStream-enabled `nats-server` on random loopback ports.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::{ScratchDir, ServerProcess, write_file};

/// Options for [`NatsServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct NatsServerOptions {
    /// The server's `max_payload` (default: the server's 1 MiB).
    pub max_payload: Option<usize>,
    /// Extra configuration-file lines (e.g. `authorization { token: "s3cret" }`).
    pub extra_config: Vec<String>,
}

/// A real `nats-server` with JetStream, on random ports, with its own temp store directory.
///
/// Killed and its directory removed on drop; when the test panics the directory (with the log)
/// is kept and its path printed.
#[derive(Debug)]
pub struct NatsServer {
    process: ServerProcess,
    client_port: u16,
    monitor_port: u16,
    config: PathBuf,
    // Declared last: dropped after the process is killed.
    dir: ScratchDir,
}

impl NatsServer {
    /// Starts a server with default options.
    ///
    /// # Panics
    ///
    /// When the binary is missing or too old (with an install hint) or the server does not
    /// become healthy (with the log's tail).
    pub fn start() -> Self {
        Self::start_with(NatsServerOptions::default())
    }

    /// Starts a server with `options`.
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`].
    pub fn start_with(options: NatsServerOptions) -> Self {
        match Self::try_start_with(options) {
            Ok(server) => server,
            Err(message) => panic!("cannot start nats-server: {message}"),
        }
    }

    /// Starts a server, returning an error instead of panicking when it does not come up.
    ///
    /// # Panics
    ///
    /// When the binary is missing or too old (with an install hint).
    pub fn try_start_with(options: NatsServerOptions) -> Result<Self, String> {
        let dir = ScratchDir::new("nats").map_err(|e| format!("cannot create temp dir: {e}"))?;
        let store = dir.path().join("jetstream");
        let config = dir.path().join("server.conf");
        let mut text = format!(
            "server_name: single\njetstream {{\n  store_dir: {:?}\n}}\n",
            store.display().to_string()
        );
        if let Some(max) = options.max_payload {
            text.push_str(&format!("max_payload: {max}\n"));
        }
        for line in &options.extra_config {
            text.push_str(line);
            text.push('\n');
        }
        write_file(&config, &text)?;

        let mut process = ServerProcess::new(dir.path().join("nats-server.log"));
        let args: Vec<OsString> = vec![
            "-c".into(),
            config.clone().into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "-1".into(),
            "-m".into(),
            "-1".into(),
            "--ports_file_dir".into(),
            dir.path().into(),
        ];
        process.spawn(&args)?;
        let pid = process
            .pid()
            .ok_or_else(|| "nats-server has no pid".to_owned())?;
        let (client_port, monitor_port) = read_ports_file(
            &dir.path().join(format!("nats-server_{pid}.ports")),
            &mut process,
        )?;
        let mut server = Self {
            process,
            client_port,
            monitor_port,
            config,
            dir,
        };
        server.wait_healthy()?;
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// The monitoring (HTTP) address.
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }

    /// `GET path` on the monitoring endpoint (`/varz`, `/jsz?api=true`, ...): status and body.
    pub fn monitor_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        super::http::get(self.monitor_addr(), path)
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log()
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL: simulates a crash. The store is kept for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM: clean shutdown. The store is kept for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// SIGSTOP: the server hangs with its connections open.
    pub fn pause(&mut self) {
        self.process.pause();
    }

    /// SIGCONT after [`NatsServer::pause`].
    pub fn resume(&mut self) {
        self.process.resume();
    }

    /// Stops the server if it runs (SIGTERM) and starts it again on the same ports with the
    /// same store, then waits until it is healthy.
    ///
    /// # Panics
    ///
    /// When the server does not come back.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped or killed server again on the same ports with the same store and waits
    /// until it is healthy.
    ///
    /// # Panics
    ///
    /// When the server does not come back.
    pub fn start_again(&mut self) {
        if self.process.is_running() {
            return;
        }
        let args: Vec<OsString> = vec![
            "-c".into(),
            self.config.clone().into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.client_port.to_string().into(),
            "-m".into(),
            self.monitor_port.to_string().into(),
        ];
        // The port was just released by the old process; retry briefly if it lingers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let result = self.process.spawn(&args).and_then(|()| self.wait_healthy());
            match result {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("cannot restart nats-server: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let monitor = self.monitor_addr();
        self.process.wait_healthy(monitor, "/healthz")
    }
}

fn read_ports_file(path: &Path, process: &mut ServerProcess) -> Result<(u16, u16), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
        {
            let port_of = |key: &str| {
                ports[key][0]
                    .as_str()
                    .and_then(|url| url.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            };
            if let (Some(client), Some(monitor)) = (port_of("nats"), port_of("monitoring")) {
                return Ok((client, monitor));
            }
        }
        if !process.is_running() || Instant::now() > deadline {
            return Err(format!(
                "nats-server did not write {}; log: {}\n{}",
                path.display(),
                process.log().display(),
                super::process::tail(process.log())
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
