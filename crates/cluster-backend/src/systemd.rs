//! The systemd backend: one unit driven over D-Bus (zbus), on the system bus, the session bus
//! of a user manager, or any bus address.
//!
//! * `start`: starts the [dependencies](SystemdConfig::dependencies) in order, then the unit,
//!   each with `StartUnit(name, "replace")`, and waits for the job's `JobRemoved` signal (the
//!   subscription is made before the call, so the signal cannot be missed). A job result other
//!   than `done` is an error carrying the unit's `ActiveState`/`SubState` and, when
//!   available, its journal lines. A unit already active is left alone (idempotent). With
//!   [`notify`](SystemdConfig::notify) the unit must be `active` (not still `activating`)
//!   after the job.
//! * `stop`: `StopUnit` and wait for the job; if the job outlasts the timeout, `KillUnit(all,
//!   SIGKILL)` and wait for the unit to leave `active`/`deactivating`. Dependencies are left
//!   running (they may be shared).
//! * `status`: `ActiveState` → state, `MainPID` → id, `NRestarts` → restarts.
//! * `health`: the unit is active and the optional HTTP endpoint answers 2xx.
//! * Journal lines come from `journalctl -u` (`--user` on a session bus) when `journalctl`
//!   and a journal exist; otherwise the tail is empty.
//! * **Deadline guard** (Singleton apps, [`Backend::follow_deadline`]): after each start a
//!   `/bin/bash` guard outside the daemon receives the remaining validity of the leadership on
//!   every renewal; when the deadline passes without one (the daemon hung or `SIGSTOP`ped) it
//!   runs `busctl … StopUnit <unit> replace`, then after a short grace `busctl … KillUnit
//!   <unit> all 9`. It does nothing when the daemon dies (the unit is the manager's).
//! * systemd's own restart policy (`Restart=`) is the unit file's business: the coordinator's
//!   [`RestartPolicy`](crate::RestartPolicy) restarts through this backend.

use std::time::Duration;

use async_trait::async_trait;
use cluster_core::backend::{Backend, BackendState, BackendStatus};
use cluster_core::{Epoch, Error, Result};
use futures::StreamExt;
use tokio::sync::{Mutex, OnceCell};
use tracing::{info, warn};
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant, Variant};

use crate::guard::{ServiceGuard, Target};
use crate::health::HealthProbe;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// Which bus to reach the service manager on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SystemdBus {
    /// The system bus (the system manager).
    #[default]
    System,
    /// The session bus of `$DBUS_SESSION_BUS_ADDRESS` (a user manager).
    Session,
    /// A bus address such as `unix:path=/run/user/0/bus` (a user manager, or a system
    /// manager in a container). Treated like a session bus for `journalctl --user`.
    Address(String),
}

/// Configuration of a [`SystemdBackend`] (the spec's systemd options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdConfig {
    /// The unit (`.service` is appended when the name has no unit suffix).
    pub unit: String,
    /// The bus.
    pub bus: SystemdBus,
    /// An HTTP URL that must answer 2xx for the backend to be healthy.
    pub health_endpoint: Option<String>,
    /// Suggested interval between health checks (see [`SystemdConfig::backend_options`]).
    pub health_interval: Duration,
    /// Timeout of one health check.
    pub health_timeout: Duration,
    /// Time allowed for each start job.
    pub start_timeout: Duration,
    /// Time allowed for the stop job before the unit is killed.
    pub stop_timeout: Duration,
    /// Require `ActiveState=active` after the start job (for `Type=notify` units the job
    /// itself already waits for `READY=1`).
    pub notify: bool,
    /// Units started, in order, before this one (never stopped by the backend).
    pub dependencies: Vec<String>,
    /// Journal lines attached to start errors (0: none).
    pub journal_lines: usize,
}

impl SystemdConfig {
    /// A configuration for `unit` on the system bus with the defaults (health interval 5 s,
    /// timeout 3 s, start 60 s, stop 30 s, 100 journal lines).
    pub fn new(unit: impl Into<String>) -> Self {
        let mut unit = unit.into();
        const SUFFIXES: [&str; 11] = [
            ".service",
            ".socket",
            ".target",
            ".mount",
            ".timer",
            ".path",
            ".scope",
            ".slice",
            ".device",
            ".swap",
            ".automount",
        ];
        if !SUFFIXES.iter().any(|s| unit.ends_with(s)) {
            unit.push_str(".service");
        }
        Self {
            unit,
            bus: SystemdBus::System,
            health_endpoint: None,
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(3),
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            notify: false,
            dependencies: Vec::new(),
            journal_lines: 100,
        }
    }

    /// Coordinator options matching these settings (intervals and timeouts).
    pub fn backend_options(&self) -> crate::BackendOptions {
        crate::BackendOptions {
            health_interval: self.health_interval,
            health_timeout: self.health_timeout,
            start_timeout: self.start_timeout * (1 + self.dependencies.len() as u32),
            stop_timeout: self.stop_timeout,
            ..crate::BackendOptions::default()
        }
    }
}

/// A backend driving one systemd unit (see the [module docs](self)).
pub struct SystemdBackend {
    config: SystemdConfig,
    conn: OnceCell<Connection>,
    op: Mutex<()>,
    guard: ServiceGuard,
}

impl std::fmt::Debug for SystemdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemdBackend")
            .field("unit", &self.config.unit)
            .field("bus", &self.config.bus)
            .finish()
    }
}

/// The unit's state as systemd reports it.
#[derive(Debug, Clone)]
struct UnitState {
    load: String,
    active: String,
    sub: String,
    path: OwnedObjectPath,
}

fn dbus_error(what: &str, e: zbus::Error) -> Error {
    match &e {
        zbus::Error::MethodError(name, message, _) => {
            let name = name.as_str();
            let message = message.clone().unwrap_or_default();
            if name.ends_with("NoSuchUnit") || name.ends_with("LoadFailed") {
                Error::InvalidArgument(format!("systemd backend: {what}: no such unit: {message}"))
            } else if name.ends_with("AccessDenied")
                || name.ends_with("InteractiveAuthorizationRequired")
            {
                Error::InvalidArgument(format!(
                    "systemd backend: {what}: permission denied: {message}"
                ))
            } else {
                Error::Unavailable(format!("systemd backend: {what}: {name}: {message}"))
            }
        }
        _ => Error::Unavailable(format!("systemd backend: {what}: {e}")),
    }
}

fn variant_string(v: &Variant<'_>) -> Option<String> {
    match v {
        Variant::Str(s) => Some(s.to_string()),
        Variant::ObjectPath(p) => Some(p.to_string()),
        Variant::Variant(inner) => variant_string(inner),
        _ => None,
    }
}

fn variant_u32(v: &Variant<'_>) -> Option<u32> {
    match v {
        Variant::U32(n) => Some(*n),
        Variant::Variant(inner) => variant_u32(inner),
        _ => None,
    }
}

impl SystemdBackend {
    /// Stops the unit (see [`Backend::stop`]).
    async fn stop_unit(&self, timeout: Duration) -> Result<()> {
        let unit = self.config.unit.clone();
        let state = match self.unit_state(&unit).await {
            Ok(s) => s,
            Err(Error::InvalidArgument(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if state.load == "not-found" || matches!(state.active.as_str(), "inactive" | "failed") {
            return Ok(());
        }
        let timeout = timeout.min(self.config.stop_timeout);
        match self.run_job("StopUnit", &unit, timeout).await {
            Ok(_) => {}
            Err(Error::Timeout(_)) => {
                warn!(unit = %unit, ?timeout, "stop job timed out; killing the unit");
                self.manager_call("KillUnit", &(unit.as_str(), "all", libc::SIGKILL))
                    .await?;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                loop {
                    let s = self.unit_state(&unit).await?;
                    if matches!(s.active.as_str(), "inactive" | "failed") {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::Timeout(format!(
                            "systemd backend: {unit} still {} after SIGKILL",
                            s.active
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(e) => return Err(e),
        }
        info!(target: "cluster::audit", event = "backend.systemd.stopped", unit = %unit,
            "unit stopped");
        Ok(())
    }

    /// The guard's stop commands: `StopUnit`, then `KillUnit(all, SIGKILL)`, over `busctl` on
    /// the configured bus.
    fn guard_target(&self) -> Target {
        let bus = match &self.config.bus {
            SystemdBus::System => "--system".to_owned(),
            SystemdBus::Session => "--user".to_owned(),
            SystemdBus::Address(a) => format!("--address={a}"),
        };
        let call = |method: &str, signature: &str, args: &[&str]| -> Vec<String> {
            [
                "busctl",
                bus.as_str(),
                "call",
                SYSTEMD,
                MANAGER_PATH,
                MANAGER,
                method,
                signature,
            ]
            .into_iter()
            .chain(args.iter().copied())
            .map(String::from)
            .collect()
        };
        let unit = self.config.unit.as_str();
        Target::External {
            soft: call("StopUnit", "ss", &[unit, "replace"]),
            hard: call("KillUnit", "ssi", &[unit, "all", "9"]),
        }
    }

    /// A backend for `config`. The bus is contacted at the first call.
    pub fn new(config: SystemdConfig) -> Self {
        Self {
            config,
            conn: OnceCell::new(),
            op: Mutex::new(()),
            guard: ServiceGuard::default(),
        }
    }

    async fn conn(&self) -> Result<&Connection> {
        self.conn
            .get_or_try_init(|| async {
                let conn = match &self.config.bus {
                    SystemdBus::System => Connection::system().await,
                    SystemdBus::Session => Connection::session().await,
                    SystemdBus::Address(a) => {
                        zbus::connection::Builder::address(a.as_str()).build().await
                    }
                }
                .map_err(|e| {
                    Error::Unavailable(format!(
                        "systemd backend: cannot connect to the {:?} bus: {e}",
                        self.config.bus
                    ))
                })?;
                // Without a subscriber the manager does not emit job signals.
                conn.call_method(Some(SYSTEMD), MANAGER_PATH, Some(MANAGER), "Subscribe", &())
                    .await
                    .map_err(|e| dbus_error("Subscribe", e))?;
                Ok(conn)
            })
            .await
    }

    async fn manager_call<B>(&self, method: &str, body: &B) -> Result<zbus::Message>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        let conn = self.conn().await?;
        conn.call_method(Some(SYSTEMD), MANAGER_PATH, Some(MANAGER), method, body)
            .await
            .map_err(|e| dbus_error(method, e))
    }

    async fn property(
        &self,
        path: &OwnedObjectPath,
        iface: &str,
        name: &str,
    ) -> Result<OwnedVariant> {
        let conn = self.conn().await?;
        let reply = conn
            .call_method(
                Some(SYSTEMD),
                path.as_str(),
                Some(PROPERTIES),
                "Get",
                &(iface, name),
            )
            .await
            .map_err(|e| dbus_error(&format!("reading {name}"), e))?;
        reply
            .body()
            .deserialize::<OwnedVariant>()
            .map_err(|e| Error::Malformed(format!("systemd backend: property {name}: {e}")))
    }

    async fn string_property(
        &self,
        path: &OwnedObjectPath,
        iface: &str,
        name: &str,
    ) -> Result<String> {
        let v = self.property(path, iface, name).await?;
        variant_string(&v).ok_or_else(|| {
            Error::Malformed(format!("systemd backend: property {name} is not a string"))
        })
    }

    async fn unit_state(&self, unit: &str) -> Result<UnitState> {
        let path: OwnedObjectPath = self
            .manager_call("LoadUnit", &(unit,))
            .await?
            .body()
            .deserialize()
            .map_err(|e| Error::Malformed(format!("systemd backend: LoadUnit reply: {e}")))?;
        Ok(UnitState {
            load: self.string_property(&path, UNIT, "LoadState").await?,
            active: self.string_property(&path, UNIT, "ActiveState").await?,
            sub: self.string_property(&path, UNIT, "SubState").await?,
            path,
        })
    }

    /// A stream of `JobRemoved` signals (made before the job is queued).
    async fn job_signals(&self) -> Result<MessageStream> {
        let conn = self.conn().await?;
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface(MANAGER)
            .member("JobRemoved")
            .path(MANAGER_PATH)
            .build()
            .map_err(|e| Error::Internal(format!("systemd backend: match rule: {e}")))?;
        MessageStream::for_match_rule(rule, conn, None)
            .await
            .map_err(|e| dbus_error("subscribing to JobRemoved", e))
    }

    /// Queues `method(unit, "replace")` and waits for its job's result.
    async fn run_job(&self, method: &str, unit: &str, timeout: Duration) -> Result<String> {
        let mut signals = self.job_signals().await?;
        let job: OwnedObjectPath = self
            .manager_call(method, &(unit, "replace"))
            .await?
            .body()
            .deserialize()
            .map_err(|e| Error::Malformed(format!("systemd backend: {method} reply: {e}")))?;
        let wait = async {
            while let Some(msg) = signals.next().await {
                let Ok(msg) = msg else { continue };
                // JobRemoved(u id, o job, s unit, s result)
                if let Ok((_, path, _, result)) = msg
                    .body()
                    .deserialize::<(u32, OwnedObjectPath, String, String)>()
                    && path == job
                {
                    return Ok(result);
                }
            }
            Err(Error::Unavailable(format!(
                "systemd backend: the bus closed while waiting for {method} {unit}"
            )))
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            Error::Timeout(format!(
                "systemd backend: {method} {unit} did not finish within {timeout:?}"
            ))
        })?
    }

    async fn start_unit(&self, unit: &str) -> Result<()> {
        let state = self.unit_state(unit).await?;
        if state.load == "not-found" {
            return Err(Error::InvalidArgument(format!(
                "systemd backend: unit {unit} not found (LoadState=not-found)"
            )));
        }
        if state.load != "loaded" {
            return Err(Error::InvalidArgument(format!(
                "systemd backend: unit {unit} cannot be loaded (LoadState={})",
                state.load
            )));
        }
        if state.active == "active" {
            return Ok(());
        }
        let result = self
            .run_job("StartUnit", unit, self.config.start_timeout)
            .await?;
        let after = self.unit_state(unit).await?;
        let ok = result == "done"
            && (after.active == "active" || (!self.config.notify && after.active == "activating"));
        if ok {
            return Ok(());
        }
        let journal = self.journal(unit, self.config.journal_lines.min(20)).await;
        Err(Error::Unavailable(format!(
            "systemd backend: starting {unit}: job {result}, ActiveState={} SubState={}{}",
            after.active,
            after.sub,
            if journal.is_empty() {
                String::new()
            } else {
                format!("; journal: {}", journal.join(" | "))
            }
        )))
    }

    async fn journal(&self, unit: &str, n: usize) -> Vec<String> {
        if n == 0 {
            return Vec::new();
        }
        let mut cmd = tokio::process::Command::new("journalctl");
        if self.config.bus != SystemdBus::System {
            cmd.arg("--user");
        }
        cmd.args([
            "-u",
            unit,
            "-n",
            &n.to_string(),
            "--no-pager",
            "-o",
            "cat",
            "-q",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        match tokio::time::timeout(Duration::from_secs(5), cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[async_trait]
impl Backend for SystemdBackend {
    fn describe(&self) -> String {
        format!("systemd:{}", self.config.unit)
    }

    async fn start(&self, epoch: Epoch) -> Result<()> {
        let _op = self.op.lock().await;
        for dep in &self.config.dependencies {
            self.start_unit(dep).await?;
        }
        self.start_unit(&self.config.unit).await?;
        info!(target: "cluster::audit", event = "backend.systemd.started",
            unit = %self.config.unit, %epoch, "unit started");
        let target = self.guard_target();
        self.guard
            .arm(
                epoch,
                self.describe(),
                self.config.stop_timeout,
                "busctl",
                target,
            )
            .await;
        Ok(())
    }

    fn follow_deadline(&self, deadline: cluster_core::DeadlineWatch) {
        self.guard.follow(deadline);
    }

    async fn stop(&self, timeout: Duration) -> Result<()> {
        let _op = self.op.lock().await;
        let result = self.stop_unit(timeout).await;
        if result.is_ok() {
            self.guard.release().await;
        }
        result
    }

    async fn status(&self) -> Result<BackendStatus> {
        let s = self.unit_state(&self.config.unit).await?;
        let is_service = self.config.unit.ends_with(".service");
        let (pid, restarts) = if is_service && s.load == "loaded" {
            let pid = self
                .property(&s.path, SERVICE, "MainPID")
                .await
                .ok()
                .and_then(|v| variant_u32(&v))
                .filter(|p| *p != 0);
            let restarts = self
                .property(&s.path, SERVICE, "NRestarts")
                .await
                .ok()
                .and_then(|v| variant_u32(&v))
                .unwrap_or(0);
            (pid, restarts)
        } else {
            (None, 0)
        };
        let state = match s.active.as_str() {
            "active" | "reloading" => BackendState::Running,
            "activating" => BackendState::Starting,
            "failed" => BackendState::Failed(format!("unit failed ({})", s.sub)),
            _ => BackendState::Stopped,
        };
        let id = state.is_up().then(|| match pid {
            Some(pid) => format!("{} (pid {pid})", self.config.unit),
            None => self.config.unit.clone(),
        });
        Ok(BackendStatus {
            state,
            id,
            restarts,
        })
    }

    async fn health(&self) -> Result<()> {
        let s = self.unit_state(&self.config.unit).await?;
        if s.active != "active" {
            return Err(Error::Unavailable(format!(
                "unit {} is {} ({})",
                self.config.unit, s.active, s.sub
            )));
        }
        match &self.config.health_endpoint {
            Some(url) => {
                HealthProbe::Http(url.clone())
                    .check(self.config.health_timeout)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn logs_tail(&self, n: usize) -> Vec<String> {
        self.journal(&self.config.unit, n).await
    }
}
