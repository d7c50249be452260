//! The configuration file (TOML, documented in `docs/CONFIG.md`).
//!
//! Loading never stops at the first mistake: [`load()`] returns every problem found (file, key,
//! why), and nothing starts while there is one.

mod load;
mod rules;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cluster::{AppName, Labels, Mode, NodeId, PlatformName, PlatformOptions};

pub(crate) use load::load;

/// Parses a duration in the platform's one syntax (`500ms`, `15s`, `1.5s`, `1h30m`; see
/// `cluster::core::duration`); the error says what to write instead.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    cluster::core::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Checks that `url` is a NATS server URL (`nats://`, `tls://`, `ws://` or `wss://` and a host).
pub(crate) fn check_nats_url(url: &str) -> Result<(), String> {
    let host = ["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    match host {
        Some(rest) if !rest.trim_start_matches('/').is_empty() => Ok(()),
        _ => Err(format!(
            "{url:?} is not a NATS URL; write e.g. \"nats://127.0.0.1:4222\""
        )),
    }
}

/// One problem in a configuration: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The file (or `<flags>` for command-line values).
    pub(crate) file: String,
    /// The key path (`apps[0].mode`).
    pub(crate) key: String,
    /// What is wrong and what to do.
    pub(crate) why: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.why)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.why)
        }
    }
}

/// Every problem of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}); nothing was started:",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        write!(f, "see docs/CONFIG.md for every key")
    }
}

impl std::error::Error for Problems {}

/// TLS files for the NATS connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsConfig {
    pub(crate) ca: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

/// How to reach NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NatsConfig {
    pub(crate) servers: Vec<String>,
    pub(crate) creds: Option<PathBuf>,
    /// An nkey user seed file (`cluster auth gen-config`).
    pub(crate) nkey: Option<PathBuf>,
    /// The operator identity of admin commands (`admin` or `viewer`).
    pub(crate) role: Option<crate::cli::OperatorRole>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) tls: Option<TlsConfig>,
    /// Replicas of the platform's buckets (1 on a single server, 3 on a cluster).
    pub(crate) replicas: Option<usize>,
}

/// A backend declared for an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendConfig {
    /// A child process.
    Process {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        dir: Option<PathBuf>,
        graceful_timeout: Duration,
    },
    /// A systemd unit.
    Systemd {
        unit: String,
        start_timeout: Option<Duration>,
        stop_timeout: Option<Duration>,
        /// `system` (default), `session`, or a D-Bus address.
        bus: Option<String>,
    },
    /// A container.
    Docker {
        image: String,
        name: Option<String>,
        env: Vec<(String, String)>,
        ports: Vec<String>,
        volumes: Vec<String>,
        network: Option<String>,
        stop_timeout: Option<Duration>,
        /// The engine's socket (default `$DOCKER_HOST`, then `/var/run/docker.sock`).
        host: Option<String>,
        /// `docker run` options (checked at load by `ExtraArgs::parse`).
        extra_args: Vec<String>,
    },
}

impl BackendConfig {
    /// The backend's type name in the file.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Process { .. } => "process",
            BackendConfig::Systemd { .. } => "systemd",
            BackendConfig::Docker { .. } => "docker",
        }
    }
}

/// A virtual IP held by the active instance of a Singleton app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VipConfig {
    /// `a.b.c.d/prefix`.
    pub(crate) cidr: String,
    /// The interface carrying it.
    pub(crate) interface: String,
    pub(crate) garp_count: Option<u32>,
    pub(crate) garp_interval: Option<Duration>,
    /// `None` in the file: the default (10 s); `Some(None)`: `"off"`.
    pub(crate) refresh_interval: Option<Option<Duration>>,
    pub(crate) check_before_claim: bool,
}

/// An app declared in the file (no code: election, membership, placement rules, an optional
/// VIP and an optional backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppConfig {
    pub(crate) name: AppName,
    pub(crate) mode: Mode,
    pub(crate) backend: Option<BackendConfig>,
    /// Placement rules (`None`: anywhere, default strategy).
    pub(crate) placement: Option<cluster::placement::PlacementSpec>,
    pub(crate) vip: Option<VipConfig>,
    /// SQLite replication of the app's database (`[apps.sqlite]`).
    pub(crate) sqlite: Option<SqliteConfig>,
}

/// `[apps.sqlite]`: the app's SQLite database replicated through NATS (cluster-wal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqliteConfig {
    /// The local replica (the backend process writes it on the leader).
    pub(crate) path: PathBuf,
    pub(crate) snapshot_interval: Option<Duration>,
    pub(crate) retention_count: usize,
    pub(crate) retention_age: Option<Duration>,
    /// `commit-wait` only for in-process writers (never with a backend).
    pub(crate) commit_wait: bool,
}

/// A loaded, validated configuration file. Every field is optional where a flag, an
/// environment variable or a default can supply it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) file: String,
    pub(crate) platform: Option<PlatformName>,
    pub(crate) node: Option<NodeId>,
    pub(crate) address: Option<String>,
    /// Directory of the daemon's lock file (default: `$XDG_RUNTIME_DIR`, else the temp dir).
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) labels: Labels,
    pub(crate) nats: NatsConfig,
    /// Address of the health server (stored for the observability work).
    pub(crate) health_addr: Option<SocketAddr>,
    /// Address of the metrics server (stored for the observability work).
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) options: PlatformOptions,
    pub(crate) apps: Vec<AppConfig>,
    /// `[audit]` and `[telemetry]`.
    pub(crate) observe: ObserveConfig,
}

/// Observability settings: `[audit] max_age`, `[telemetry] otlp_endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObserveConfig {
    /// Retention of the audit stream (default 7 days).
    pub(crate) audit_max_age: Option<std::time::Duration>,
    /// OTLP/HTTP endpoint spans are exported to (none: spans are not exported).
    pub(crate) otlp_endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            file: "<defaults>".to_owned(),
            platform: None,
            node: None,
            address: None,
            state_dir: None,
            labels: Labels::new(),
            nats: NatsConfig::default(),
            health_addr: None,
            metrics_addr: None,
            options: PlatformOptions::default(),
            apps: Vec::new(),
            observe: ObserveConfig::default(),
        }
    }
}
