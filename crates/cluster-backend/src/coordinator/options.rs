//! Health-check and restart settings of a [`BackendResource`](super::BackendResource).

use std::time::Duration;

use cluster_core::RetryPolicy;

/// When and how often a failing backend is restarted before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed before the coordinator gives up (0: never restart). The count starts
    /// again once the backend has stayed healthy for `cooldown`.
    pub max_restarts: u32,
    /// Delay before the first restart; doubled for each further one, capped at `max_backoff`.
    pub backoff: Duration,
    /// The longest delay between restarts.
    pub max_backoff: Duration,
    /// Healthy time after which earlier restarts are forgotten.
    pub cooldown: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            cooldown: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The delay before restart number `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Settings of a [`BackendResource`](super::BackendResource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendOptions {
    /// Time between health checks of a running backend.
    pub health_interval: Duration,
    /// Timeout of one health check (and of one status query).
    pub health_timeout: Duration,
    /// Consecutive failed checks that count as a failure (a backend that is no longer running
    /// counts as a failure at once).
    pub failure_threshold: u32,
    /// Time allowed for `start` plus the first passing health check.
    pub start_timeout: Duration,
    /// Graceful stop timeout passed to `Backend::stop`.
    pub stop_timeout: Duration,
    /// First delay between the checks right after a start (doubled up to `health_interval`):
    /// the first check runs immediately.
    pub startup_backoff: Duration,
    /// How long after its start the backend must still run for the activation to succeed
    /// (a service that dies right after `exec` is then caught at activation, not only by the
    /// monitor). The health checks run meanwhile; this adds to failover time only for
    /// services that pass their health check sooner.
    pub min_uptime: Duration,
    /// Restarts.
    pub restart: RestartPolicy,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(3),
            failure_threshold: 3,
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            startup_backoff: Duration::from_millis(20),
            min_uptime: Duration::from_millis(200),
            restart: RestartPolicy::default(),
        }
    }
}

impl BackendOptions {
    /// The retry policy to register the resource with: one attempt more after a failed
    /// activation, each bounded by start, stop and a margin.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            backoff: self.restart.backoff,
            timeout: self.start_timeout + self.stop_timeout + Duration::from_secs(10),
        }
    }
}
