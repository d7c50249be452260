//! The health of an app instance as its node reports it.

/// Health of an app instance on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthStatus {
    /// Healthy.
    Healthy,
    /// Unhealthy, with a reason.
    Unhealthy(String),
}
