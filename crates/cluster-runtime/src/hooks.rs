//! Hook and handler types, and running hooks under their timeouts.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::app::App;
use super::isolate;
use super::options::HookKind;
use cluster_core::epoch::Epoch;
use cluster_core::error::Error;

/// The error type hooks and handlers return: any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a hook receives.
#[derive(Clone)]
pub struct HookContext {
    /// The app the hook belongs to.
    pub app: App,
    /// The fencing token of the leadership term, for `on_active` (and side effects it starts).
    pub epoch: Option<Epoch>,
    /// Cancelled when a newer transition supersedes this one or the hook timed out; long hooks
    /// should watch it.
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for HookContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookContext")
            .field("app", &self.app.name())
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// A hook taking only the context.
pub(crate) type Hook =
    Arc<dyn Fn(HookContext) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// A hook taking the context and an argument.
pub(crate) type HookWith<A> =
    Arc<dyn Fn(HookContext, A) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

pub(crate) fn boxed_hook<F, Fut>(f: F) -> Hook
where
    F: Fn(HookContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    // `f` is called on the future's first poll, inside the task `run_hook` isolates it in,
    // so a panic in its synchronous part is caught too.
    let f = Arc::new(f);
    Arc::new(move |ctx| {
        let f = f.clone();
        Box::pin(async move { f(ctx).await })
    })
}

pub(crate) fn boxed_hook_with<A, F, Fut>(f: F) -> HookWith<A>
where
    A: Send + 'static,
    F: Fn(HookContext, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |ctx, a| {
        let f = f.clone();
        Box::pin(async move { f(ctx, a).await })
    })
}

/// Runs a hook of `app` in its own task under the hook's timeout, cancelling `cancel` when it
/// times out. A panic is reported (logged, counted, audited) and returned as `HookFailed`, so
/// callers handle it exactly like an error the hook returned.
pub(crate) async fn run_hook(
    app: &App,
    kind: HookKind,
    cancel: &CancellationToken,
    fut: BoxFuture<'static, Result<(), BoxError>>,
) -> Result<(), Error> {
    let timeout = app.timeout(kind);
    match tokio::time::timeout(timeout, isolate::run(fut)).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => {
            warn!(hook = kind.name(), error = %e, "hook failed");
            Err(Error::HookFailed {
                hook: kind.name(),
                message: e.to_string(),
            })
        }
        Ok(Err(panicked)) => {
            isolate::report(
                app.shared().ok().as_deref().map(|s| &*s.ctx),
                Some(app.name()),
                kind.name(),
                &panicked,
            );
            Err(Error::HookFailed {
                hook: kind.name(),
                message: panicked.to_string(),
            })
        }
        Err(_) => {
            cancel.cancel();
            warn!(hook = kind.name(), ?timeout, "hook timed out");
            Err(Error::HookTimeout {
                hook: kind.name(),
                timeout,
            })
        }
    }
}

/// Converts a handler's error into the platform error sent back to the caller.
pub(crate) fn handler_error(e: BoxError) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => Error::Handler(e.to_string()),
    }
}
