//! Counters of a backend coordinator, mirrored into the `gc_backend_*` metrics.

use std::sync::{Arc, Mutex, OnceLock};

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

/// The counters, plus the app label of their metrics (set once bound to an app).
#[derive(Clone, Default)]
pub(crate) struct SharedStats(Arc<(Mutex<BackendStats>, OnceLock<String>)>);

impl SharedStats {
    /// Applies `f` and mirrors state and restart changes into the metrics.
    pub(crate) fn update(&self, f: impl FnOnce(&mut BackendStats)) {
        let mut stats = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        let (state, restarts) = (stats.state, stats.restarts);
        f(&mut stats);
        let app = self.0.1.get().map(String::as_str).unwrap_or("-");
        if stats.state != state {
            crate::metrics::state(app, stats.state);
        }
        if stats.restarts > restarts {
            crate::metrics::restarts(app, stats.restarts - restarts);
        }
    }

    /// Names the app in the metrics labels (first call wins).
    pub(crate) fn set_app(&self, app: &str) {
        let _ = self.0.1.set(app.to_owned());
    }

    pub(crate) fn snapshot(&self) -> BackendStats {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
