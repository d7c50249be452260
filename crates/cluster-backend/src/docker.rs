//! The Docker backend: one container driven over the Docker Engine API (bollard).
//!
//! Works against Docker and against podman's Docker-compatible API (tested with podman 4.3.1,
//! API 1.41; the client negotiates the version). Semantics:
//!
//! * `start(epoch)`: a running container of that name is taken over as is (idempotent, e.g.
//!   after a daemon restart); a stopped one is removed and created afresh, so configuration
//!   and the `cluster.epoch` label are current. The image must exist locally: nothing is
//!   pulled (a pull during a failover is slow and may need a registry); a missing image is an
//!   [`Error::InvalidArgument`] naming it.
//! * `stop(timeout)`: stops (the engine sends the stop signal, then `SIGKILL` after the
//!   timeout) and removes the container, so nothing is left behind.
//! * `health`: the container runs, its own health check (when configured) does not report
//!   `starting`/`unhealthy`, and the daemon-side [`HealthProbe`] passes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HealthConfig, HealthStatusEnum, HostConfig, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use cluster_core::backend::{Backend, BackendState, BackendStatus};
use cluster_core::{Epoch, Error, Result};
use futures::StreamExt;
use tokio::sync::{Mutex, OnceCell};
use tracing::info;

pub use crate::docker_args::ExtraArgs;
use crate::guard::{ServiceGuard, Target};
use crate::health::HealthProbe;

/// Label set on every container the backend creates.
pub const MANAGED_LABEL: &str = "cluster.managed-by";
/// Label carrying the fencing token of the term the container was created for.
pub const EPOCH_LABEL: &str = "cluster.epoch";

/// The engine's own health check of the container (Docker `HEALTHCHECK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHealthCheck {
    /// The test, e.g. `["CMD", "wget", "-q", "-O-", "http://127.0.0.1/"]` or
    /// `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Timeout of one check.
    pub timeout: Duration,
    /// Consecutive failures before `unhealthy`.
    pub retries: u32,
    /// Grace period after start.
    pub start_period: Duration,
}

/// Resource limits of the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerResources {
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// CPU quota in units of 10⁻⁹ CPUs.
    pub nano_cpus: Option<i64>,
    /// Relative CPU weight.
    pub cpu_shares: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
    /// Ulimits as (name, soft, hard), e.g. `("nofile", 1024, 1024)`.
    pub ulimits: Vec<(String, i64, i64)>,
}

/// Configuration of a [`DockerBackend`] (the spec's `DockerConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// The image (must exist locally).
    pub image: String,
    /// The container's name.
    pub name: String,
    /// Network mode: `host`, `none`, `bridge` or a network name (engine default when `None`).
    pub network: Option<String>,
    /// `KEY=VALUE` variables. `CLUSTER_EPOCH` is added.
    pub env: Vec<String>,
    /// Bind mounts `host:container[:ro]`.
    pub volumes: Vec<String>,
    /// Published ports `[ip:]host:container[/proto]`.
    pub ports: Vec<String>,
    /// Graceful stop timeout before the engine kills the container.
    pub stop_timeout: Duration,
    /// Labels (the backend adds [`MANAGED_LABEL`] and [`EPOCH_LABEL`]).
    pub labels: BTreeMap<String, String>,
    /// Command overriding the image's `CMD`.
    pub cmd: Option<Vec<String>>,
    /// `docker run`-style options (the spec's `ExtraArgs`), e.g. `["--cap-add", "NET_ADMIN",
    /// "-e", "A=1"]`: see [`ExtraArgs`] for the supported ones. Lists add to the fields above;
    /// `--network`, `--memory` and `--cpus` must not contradict them. Anything unsupported
    /// fails `start` with [`Error::InvalidArgument`] (check early with [`ExtraArgs::parse`]).
    pub extra_args: Vec<String>,
    /// The engine's health check.
    pub health_check: Option<DockerHealthCheck>,
    /// Resource limits.
    pub resources: Option<DockerResources>,
    /// A probe run by the daemon against the service.
    pub probe: HealthProbe,
    /// The engine's socket: `unix:///path` or a path; default `$DOCKER_HOST`, then
    /// `/var/run/docker.sock`.
    pub host: Option<String>,
}

impl DockerConfig {
    /// A configuration running `image` as container `name`, with defaults (stop timeout 10 s).
    pub fn new(image: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            name: name.into(),
            network: None,
            env: Vec::new(),
            volumes: Vec::new(),
            ports: Vec::new(),
            stop_timeout: Duration::from_secs(10),
            labels: BTreeMap::new(),
            cmd: None,
            extra_args: Vec::new(),
            health_check: None,
            resources: None,
            probe: HealthProbe::None,
            host: None,
        }
    }

    fn socket_path(&self) -> String {
        let raw = self
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
        raw.strip_prefix("unix://").unwrap_or(&raw).to_owned()
    }
}

/// A backend running one container (see the [module docs](self)).
pub struct DockerBackend {
    config: DockerConfig,
    client: OnceCell<Docker>,
    op: Mutex<()>,
    guard: ServiceGuard,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("name", &self.config.name)
            .field("image", &self.config.image)
            .finish()
    }
}

fn status_code(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A setting given by a configuration field, by `extra_args`, or by both with the same value.
fn one_of<T: PartialEq + std::fmt::Debug>(
    what: &str,
    field: Option<T>,
    extra: Option<T>,
) -> Result<Option<T>> {
    match (field, extra) {
        (Some(a), Some(b)) if a != b => Err(Error::InvalidArgument(format!(
            "docker backend: {what} is {a:?} in the configuration but {b:?} in extra_args"
        ))),
        (a, b) => Ok(a.or(b)),
    }
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// `[ip:]host:container[/proto]` → (`container/proto`, binding).
fn parse_port(spec: &str) -> Result<(String, PortBinding)> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [container] => (None, None, *container),
        [host, container] => (None, Some(*host), *container),
        [ip, host, container] => (Some(*ip), Some(*host), *container),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "docker backend: port {spec:?} is not [ip:]host:container[/proto]"
            )));
        }
    };
    if container.parse::<u16>().is_err() || host.is_some_and(|h| h.parse::<u16>().is_err()) {
        return Err(Error::InvalidArgument(format!(
            "docker backend: port {spec:?} has an invalid port number"
        )));
    }
    Ok((
        format!("{container}/{proto}"),
        PortBinding {
            host_ip: ip.map(str::to_owned),
            host_port: host.map(str::to_owned),
        },
    ))
}

impl DockerBackend {
    /// Starts (or adopts) the container (see [`Backend::start`]).
    async fn start_container(&self, epoch: Epoch) -> Result<()> {
        // The configuration (extra_args included) is checked before anything touches the engine.
        let body = self.create_body(epoch)?;
        let docker = self.docker().await?;
        let c = &self.config;
        if let Some(existing) = self.inspect(docker).await? {
            let running = existing.state.as_ref().and_then(|s| s.running) == Some(true);
            if running {
                info!(target: "cluster::audit", event = "backend.docker.adopted",
                    name = %c.name, %epoch, "container already running; taken over");
                return Ok(());
            }
            self.remove(docker).await?;
        }
        match docker.inspect_image(&c.image).await {
            Ok(_) => {}
            Err(e) if status_code(&e) == Some(404) => {
                return Err(Error::InvalidArgument(format!(
                    "docker backend: image {:?} not found on the engine (it is never pulled \
                     automatically: pull, load or import it first)",
                    c.image
                )));
            }
            Err(e) => return Err(self.engine_error("inspecting image for", e)),
        }
        let options = CreateContainerOptions {
            name: Some(c.name.clone()),
            ..Default::default()
        };
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.engine_error("creating", e))?;
        if let Err(e) = docker.start_container(&c.name, None).await {
            let err = self.engine_error("starting", e);
            let _ = self.remove(docker).await;
            return Err(err);
        }
        info!(target: "cluster::audit", event = "backend.docker.started", name = %c.name,
            id = %created.id, image = %c.image, %epoch, "container started");
        Ok(())
    }

    /// Stops and removes the container (see [`Backend::stop`]).
    async fn stop_container(&self, timeout: Duration) -> Result<()> {
        let docker = self.docker().await?;
        let t = timeout.min(self.config.stop_timeout).as_secs();
        let options = StopContainerOptions {
            t: Some(i32::try_from(t).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        match docker
            .stop_container(&self.config.name, Some(options))
            .await
        {
            Ok(()) => {}
            // 304: already stopped; 404: no such container.
            Err(e) if matches!(status_code(&e), Some(304 | 404)) => {}
            Err(e) => return Err(self.engine_error("stopping", e)),
        }
        self.remove(docker).await?;
        info!(target: "cluster::audit", event = "backend.docker.stopped",
            name = %self.config.name, "container stopped and removed");
        Ok(())
    }

    /// The guard's stop commands: `docker kill --signal TERM`, then `docker kill`, on the
    /// configured engine socket.
    fn guard_target(&self) -> Target {
        let host = format!("unix://{}", self.config.socket_path());
        let kill = |extra: &[&str]| -> Vec<String> {
            ["docker", "-H", host.as_str(), "kill"]
                .into_iter()
                .chain(extra.iter().copied())
                .chain([self.config.name.as_str()])
                .map(String::from)
                .collect()
        };
        Target::External {
            soft: kill(&["--signal", "TERM"]),
            hard: kill(&[]),
        }
    }

    /// A backend for `config`. The engine is contacted at the first call.
    pub fn new(config: DockerConfig) -> Self {
        Self {
            config,
            client: OnceCell::new(),
            op: Mutex::new(()),
            guard: ServiceGuard::default(),
        }
    }

    async fn docker(&self) -> Result<&Docker> {
        self.client
            .get_or_try_init(|| async {
                let path = self.config.socket_path();
                let unavailable =
                    |e: DockerError| Error::Unavailable(format!("docker engine at {path}: {e}"));
                Docker::connect_with_unix(&path, 30, bollard::API_DEFAULT_VERSION)
                    .map_err(unavailable)?
                    .negotiate_version()
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    fn engine_error(&self, what: &str, e: DockerError) -> Error {
        match e {
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } if status_code < 500 => Error::InvalidArgument(format!(
                "docker backend: {what} {}: {message} (HTTP {status_code})",
                self.config.name
            )),
            other => Error::Unavailable(format!(
                "docker backend: {what} {}: {other}",
                self.config.name
            )),
        }
    }

    fn create_body(&self, epoch: Epoch) -> Result<ContainerCreateBody> {
        let c = &self.config;
        let mut labels: HashMap<String, String> = c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(MANAGED_LABEL.into(), "cluster-backend".into());
        labels.insert(EPOCH_LABEL.into(), epoch.to_string());
        let extra = ExtraArgs::parse(&c.extra_args)?;
        let mut env = c.env.clone();
        env.extend(extra.env.iter().cloned());
        env.push(format!("CLUSTER_EPOCH={epoch}"));
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for spec in c.ports.iter().chain(&extra.ports) {
            let (key, binding) = parse_port(spec)?;
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(binding);
        }
        let exposed: Vec<String> = port_bindings.keys().cloned().collect();
        let r = c.resources.clone().unwrap_or_default();
        let binds: Vec<String> = c.volumes.iter().chain(&extra.volumes).cloned().collect();
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: one_of("network", c.network.clone(), extra.network)?,
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            cap_add: (!extra.cap_add.is_empty()).then_some(extra.cap_add),
            memory: one_of("memory", r.memory_bytes, extra.memory_bytes)?,
            nano_cpus: one_of("cpus", r.nano_cpus, extra.nano_cpus)?,
            cpu_shares: r.cpu_shares,
            pids_limit: r.pids_limit,
            ulimits: (!r.ulimits.is_empty()).then(|| {
                r.ulimits
                    .iter()
                    .map(|(name, soft, hard)| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(*soft),
                        hard: Some(*hard),
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let healthcheck = c.health_check.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(secs_i64(h.interval)),
            timeout: Some(secs_i64(h.timeout)),
            retries: Some(i64::from(h.retries)),
            start_period: Some(secs_i64(h.start_period)),
            ..Default::default()
        });
        Ok(ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: c.cmd.clone(),
            user: extra.user,
            env: Some(env),
            labels: Some(labels),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_timeout: Some(i64::try_from(c.stop_timeout.as_secs()).unwrap_or(i64::MAX)),
            healthcheck,
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    /// Inspects the container (`None`: it does not exist).
    ///
    /// Podman 4.3 reports the transient state `stopped` (between the exit and its cleanup),
    /// which the Docker API does not define and bollard cannot decode: such answers are
    /// retried for a moment and then reported as an exited container with unknown code.
    async fn inspect(&self, docker: &Docker) -> Result<Option<ContainerInspectResponse>> {
        for _ in 0..40 {
            match docker.inspect_container(&self.config.name, None).await {
                Ok(i) => return Ok(Some(i)),
                Err(e) if status_code(&e) == Some(404) => return Ok(None),
                Err(DockerError::JsonDataError { message, .. }) if message.contains("stopped") => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => return Err(self.engine_error("inspecting", e)),
            }
        }
        Ok(Some(ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::EXITED),
                running: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn remove(&self, docker: &Docker) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker
            .remove_container(&self.config.name, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.engine_error("removing", e)),
        }
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn describe(&self) -> String {
        format!("docker:{}", self.config.name)
    }

    async fn start(&self, epoch: Epoch) -> Result<()> {
        let _op = self.op.lock().await;
        self.start_container(epoch).await?;
        let target = self.guard_target();
        self.guard
            .arm(
                epoch,
                self.describe(),
                self.config.stop_timeout,
                "docker",
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
        self.stop_container(timeout).await?;
        self.guard.release().await;
        Ok(())
    }
    async fn status(&self) -> Result<BackendStatus> {
        let docker = self.docker().await?;
        let Some(inspect) = self.inspect(docker).await? else {
            return Ok(BackendStatus::stopped(0));
        };
        let restarts = inspect
            .restart_count
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let state = inspect.state.unwrap_or_default();
        let backend_state = match state.status {
            Some(ContainerStateStatusEnum::RUNNING) => BackendState::Running,
            Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::RESTARTING) => {
                BackendState::Starting
            }
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                BackendState::Failed(format!(
                    "container exited with code {}{}",
                    state.exit_code.unwrap_or(-1),
                    if state.oom_killed == Some(true) {
                        " (OOM killed)"
                    } else {
                        ""
                    }
                ))
            }
            other => BackendState::Failed(format!("container is {other:?}")),
        };
        Ok(BackendStatus {
            id: inspect.id.filter(|_| backend_state.is_up()),
            state: backend_state,
            restarts,
        })
    }

    async fn health(&self) -> Result<()> {
        let docker = self.docker().await?;
        let inspect = self.inspect(docker).await?.ok_or_else(|| {
            Error::Unavailable(format!("container {} does not exist", self.config.name))
        })?;
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) {
            return Err(Error::Unavailable(format!(
                "container {} is not running",
                self.config.name
            )));
        }
        match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::UNHEALTHY) => {
                return Err(Error::Unavailable(format!(
                    "container {} is unhealthy",
                    self.config.name
                )));
            }
            Some(HealthStatusEnum::STARTING) => {
                return Err(Error::Unavailable(format!(
                    "container {} health check is starting",
                    self.config.name
                )));
            }
            _ => {}
        }
        self.config.probe.check(Duration::from_secs(10)).await
    }

    async fn logs_tail(&self, n: usize) -> Vec<String> {
        let Ok(docker) = self.docker().await else {
            return Vec::new();
        };
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: n.to_string(),
            ..Default::default()
        };
        let mut stream = docker.logs(&self.config.name, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
        }
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        let (k, b) = parse_port("127.0.0.1:8080:80").unwrap();
        assert_eq!(k, "80/tcp");
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.host_port.as_deref(), Some("8080"));
        let (k, b) = parse_port("53:53/udp").unwrap();
        assert_eq!((k.as_str(), b.host_ip), ("53/udp", None));
        assert!(parse_port("a:b").is_err());
        assert!(parse_port("1:2:3:4").is_err());
    }

    fn with_extra(extra: &[&str]) -> DockerConfig {
        let mut c = DockerConfig::new("img", "c");
        c.env = vec!["A=1".into()];
        c.volumes = vec!["/a:/a".into()];
        c.ports = vec!["8080:80".into()];
        c.extra_args = extra.iter().map(|s| (*s).to_owned()).collect();
        c
    }

    #[test]
    fn extra_args_map_to_the_container_configuration_not_the_command() {
        let c = with_extra(&[
            "-e",
            "B=2",
            "-v",
            "/b:/b:ro",
            "-p",
            "127.0.0.1:53:53/udp",
            "--cap-add",
            "NET_ADMIN",
            "--network",
            "host",
            "--user",
            "1000",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
        ]);
        let body = DockerBackend::new(c).create_body(Epoch(3)).unwrap();
        assert_eq!(body.cmd, None, "extra_args never reach the command");
        assert_eq!(body.user.as_deref(), Some("1000"));
        let env = body.env.unwrap();
        assert_eq!(env, vec!["A=1", "B=2", "CLUSTER_EPOCH=3"]);
        let mut exposed = body.exposed_ports.unwrap();
        exposed.sort();
        assert_eq!(exposed, vec!["53/udp", "80/tcp"]);
        let host = body.host_config.unwrap();
        assert_eq!(host.binds.unwrap(), vec!["/a:/a", "/b:/b:ro"]);
        assert_eq!(host.cap_add.unwrap(), vec!["NET_ADMIN"]);
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        let bindings = host.port_bindings.unwrap();
        let udp = bindings["53/udp"].as_ref().unwrap();
        assert_eq!(udp[0].host_ip.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn extra_args_that_are_unsupported_or_contradict_the_configuration_are_refused() {
        let err = |c: DockerConfig| {
            DockerBackend::new(c)
                .create_body(Epoch(1))
                .unwrap_err()
                .to_string()
        };
        assert!(err(with_extra(&["--privileged"])).contains("--privileged"));
        assert!(err(with_extra(&["-p", "nope"])).contains("nope"));
        let mut c = with_extra(&["--network", "host"]);
        c.network = Some("bridge".into());
        assert!(err(c).contains("network"));
        let mut c = with_extra(&["--memory", "1g"]);
        c.resources = Some(DockerResources {
            memory_bytes: Some(1 << 20),
            ..Default::default()
        });
        assert!(err(c).contains("memory"));
        // The same value twice is no contradiction.
        let mut c = with_extra(&["--network", "host"]);
        c.network = Some("host".into());
        assert!(DockerBackend::new(c).create_body(Epoch(1)).is_ok());
    }
}
