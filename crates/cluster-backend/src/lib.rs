//! Backends of the cluster platform and the coordinator that ties them to an app's role.
//!
//! * [`BackendResource`] wraps any [`Backend`](cluster_core::backend::Backend) as an
//!   [`ActiveResource`](cluster_core::ActiveResource): it starts the backend with the
//!   term's fencing token when the app becomes active, checks its health (the first check right
//!   after the start), restarts it by policy and, when it cannot be kept healthy, steps the node
//!   down so a standby takes over.
//! * [`process::ProcessBackend`]: a child process in its own process group that never outlives
//!   the daemon.
//! * `systemd::SystemdBackend` (feature `systemd`): a unit driven over D-Bus.
//! * `docker::DockerBackend` (feature `docker`): a container driven over the Docker Engine API.
//!
//! See `docs/architecture/cluster-backend.md` for the design and its decisions.

mod coordinator;
#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "docker")]
mod docker_args;
mod guard;
pub mod health;
pub mod metrics;
pub mod process;
#[cfg(feature = "systemd")]
pub mod systemd;

pub use coordinator::{
    BackendFailure, BackendOptions, BackendResource, BackendStats, FailureHandler, RestartPolicy,
};
