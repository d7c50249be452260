//! The backend coordinator: a [`Backend`] held as an app's [`ActiveResource`].
//!
//! ```text
//!  activate(epoch) ── start(epoch) ── check now, 20 ms, 40 ms, … (≤ interval) until healthy
//!        │                                   │ not healthy within start_timeout → stop, Err
//!        ▼                                   ▼ (the runtime retries, then steps the node down)
//!   one monitor task per run: every health_interval status() + health()
//!        │ not running, or `failure_threshold` failed checks in a row
//!        ▼
//!   restart (backoff, max_restarts; the count resets after `cooldown` of health)
//!        │ restarts exhausted
//!        ▼
//!   stop the backend, report the app unhealthy, step the node down (Singleton)
//!  deactivate() ── cancel + join the monitor ── stop(stop_timeout)
//! ```
//!
//! Before each restart the monitor checks that the term it runs for is still granted
//! (`App::fencing_token() == epoch`); a deposed leader never restarts its backend. While a run
//! is live, `activate` with an older epoch than the run's is refused (`Error::Fenced`) and
//! leaves the run alone.

mod monitor;
mod options;
mod stats;

use std::sync::Arc;

use async_trait::async_trait;
use cluster_core::ActiveResource;
use cluster_core::backend::Backend;
use cluster_core::{Epoch, Error, Result};
use cluster_runtime::App;
use cluster_runtime::WeakApp;
use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use options::{BackendOptions, RestartPolicy};
pub use stats::BackendStats;

use stats::SharedStats;

/// Why a coordinator gave up on its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendFailure {
    /// The backend (`Backend::describe`).
    pub backend: String,
    /// The term it ran for.
    pub epoch: Epoch,
    /// The last error.
    pub reason: String,
    /// The backend's last output lines.
    pub logs: Vec<String>,
}

/// Called (in its own task) when the coordinator gives up on the backend.
pub type FailureHandler = Arc<dyn Fn(BackendFailure) -> BoxFuture<'static, ()> + Send + Sync>;

/// What the monitor task and the resource share.
pub(crate) struct Core {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) options: BackendOptions,
    pub(crate) app: Option<WeakApp>,
    pub(crate) on_failure: Option<FailureHandler>,
    pub(crate) stats: SharedStats,
}

struct MonitorRun {
    epoch: Epoch,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl MonitorRun {
    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// A [`Backend`] held while its app is active, with health checks, restarts and step-down
/// (see the module documentation of `cluster_backend` for the flow).
///
/// Register it with [`BackendResource::attach`] (or build it with [`BackendResource::new`],
/// bind it with [`BackendResource::with_app`] and pass it to `App::add_resource`). Singleton
/// apps run the backend on the leader only; Spread apps on every node, from start to stop.
pub struct BackendResource {
    /// Shared with the monitor task of each run.
    core: Arc<Core>,
    run: Mutex<Option<MonitorRun>>,
}

impl std::fmt::Debug for BackendResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendResource")
            .field("backend", &self.core.backend.describe())
            .field("options", &self.core.options)
            .finish_non_exhaustive()
    }
}

impl BackendResource {
    /// A coordinator of `backend`, not bound to an app: when it gives up it only stops the
    /// backend and calls the failure handler.
    pub fn new(backend: Arc<dyn Backend>, options: BackendOptions) -> Self {
        crate::metrics::describe();
        Self {
            core: Arc::new(Core {
                backend,
                options,
                app: None,
                on_failure: None,
                stats: SharedStats::default(),
            }),
            run: Mutex::new(None),
        }
    }

    /// Replaces the core with a changed copy (builder methods; a monitor task already running
    /// keeps the copy it was started with).
    fn rebuild(mut self, change: impl FnOnce(&mut Core)) -> Self {
        let mut core = Core {
            backend: self.core.backend.clone(),
            options: self.core.options,
            app: self.core.app.clone(),
            on_failure: self.core.on_failure.clone(),
            stats: self.core.stats.clone(),
        };
        change(&mut core);
        self.core = Arc::new(core);
        self
    }

    /// Binds the coordinator to `app` (held weakly): on giving up it reports the app
    /// unhealthy and, for a Singleton app, steps the node down so a standby takes over.
    pub fn with_app(self, app: &App) -> Self {
        self.core.stats.set_app(app.name().as_str());
        let app = WeakApp::new(app);
        self.rebuild(|c| c.app = Some(app))
    }

    /// Adds a handler called when the coordinator gives up (after the step-down was asked).
    pub fn on_failure(
        self,
        f: impl Fn(BackendFailure) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.rebuild(|c| c.on_failure = Some(Arc::new(f)))
    }

    /// Builds a coordinator bound to `app` and registers it with the app, with the retry
    /// policy of [`BackendOptions::retry_policy`].
    pub fn attach(app: &App, backend: Arc<dyn Backend>, options: BackendOptions) -> Arc<Self> {
        let resource = Arc::new(Self::new(backend, options).with_app(app));
        app.add_resource(resource.clone(), options.retry_policy());
        resource
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.core.backend
    }

    /// The counters.
    pub fn stats(&self) -> BackendStats {
        self.core.stats.snapshot()
    }
}

#[async_trait]
impl ActiveResource for BackendResource {
    fn name(&self) -> &str {
        "backend"
    }

    async fn activate(&self, epoch: Epoch) -> Result<()> {
        let mut run = self.run.lock().await;
        if let Some(r) = run.as_ref()
            && !r.task.is_finished()
        {
            if r.epoch == epoch {
                return Ok(());
            }
            // An older term never takes over the run of a newer one (its monitor would
            // restart the service for a deposed term).
            if r.epoch > epoch {
                return Err(Error::Fenced {
                    presented: epoch,
                    current: r.epoch,
                });
            }
        }
        if let Some(old) = run.take() {
            old.stop().await;
        }
        let core = &self.core;
        let what = core.backend.describe();
        core.stats.update(|s| s.state = "starting");
        info!(target: "cluster::audit", event = "backend.activate", backend = %what, %epoch,
            "starting backend");
        if let Err(e) = monitor::start_until_healthy(core, epoch).await {
            warn!(target: "cluster::audit", event = "backend.activate_failed", backend = %what,
                %epoch, error = %e, "backend did not become healthy; stopping it");
            if let Err(stop) = core.backend.stop(core.options.stop_timeout).await {
                warn!(backend = %what, error = %stop, "stopping the failed backend failed");
            }
            core.stats.update(|s| {
                s.state = "failed";
                s.last_error = Some(e.to_string());
            });
            return Err(e);
        }
        core.stats.update(|s| {
            s.state = "running";
            s.activations += 1;
        });
        if let Some(app) = core.app.as_ref().and_then(WeakApp::upgrade) {
            app.report_health(cluster_core::HealthStatus::Healthy);
        }
        let cancel = CancellationToken::new();
        let task = tokio::spawn(monitor::run(core.clone(), epoch, cancel.clone()));
        *run = Some(MonitorRun {
            epoch,
            cancel,
            task,
        });
        info!(target: "cluster::audit", event = "backend.active", backend = %what, %epoch,
            "backend running and healthy");
        Ok(())
    }

    /// Passes the deadline on to the backend (its guard enforces it, see
    /// [`Backend::follow_deadline`]).
    fn follow_deadline(&self, deadline: cluster_core::DeadlineWatch) {
        self.core.backend.follow_deadline(deadline);
    }

    async fn deactivate(&self) -> Result<()> {
        let mut run = self.run.lock().await;
        if let Some(old) = run.take() {
            old.stop().await;
        }
        let core = &self.core;
        let result = core.backend.stop(core.options.stop_timeout).await;
        core.stats.update(|s| {
            s.state = if result.is_ok() { "stopped" } else { "failed" };
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
        });
        info!(target: "cluster::audit", event = "backend.deactivate",
            backend = %core.backend.describe(), ok = result.is_ok(), "backend stopped");
        result
    }
}
