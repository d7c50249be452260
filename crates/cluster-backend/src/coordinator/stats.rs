//! Counters of a backend coordinator (exported as metrics once the metrics crate lands).

use std::sync::{Arc, Mutex};

/// A snapshot of a [`BackendResource`](super::BackendResource)'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// `stopped`, `starting`, `running`, `restarting`, `failed`.
    pub state: &'static str,
    /// Successful activations.
    pub activations: u64,
    /// Restarts performed by the coordinator.
    pub restarts: u64,
    /// Failed health checks.
    pub health_failures: u64,
    /// Times the coordinator gave up and asked the node to step down.
    pub give_ups: u64,
    /// Monitor tasks running now (0 or 1).
    pub monitors: u64,
    /// The last error seen.
    pub last_error: Option<String>,
}

#[derive(Clone, Default)]
pub(crate) struct SharedStats(Arc<Mutex<BackendStats>>);

impl SharedStats {
    pub(crate) fn update(&self, f: impl FnOnce(&mut BackendStats)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub(crate) fn snapshot(&self) -> BackendStats {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
