//! Running user code (hooks, resources, handlers) and runtime loops isolated in their own
//! task, so a panic becomes an error instead of killing the task that called it.
//!
//! A panic is logged, counted (`gc_hook_panics_total{hook}`) and audited (`node`
//! `hook.panicked`), and the caller handles it exactly like an error the code returned.

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};
use tracing::{Instrument, error};

use crate::node::NodeContext;
use cluster_core::audit::category::NODE;
use cluster_core::id::AppName;

/// The code panicked; carries the panic message.
#[derive(Debug, Clone)]
pub(crate) struct Panicked(pub(crate) String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

/// Aborts the task when dropped: cancelling the caller cancels the isolated code, as it did
/// when the code ran inline.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` in its own task and waits for it; a panic is returned as [`Panicked`].
///
/// The task runs inside the caller's current tracing span, so spans opened by the isolated
/// code (an RPC handler's KV write, a hook's work) stay children of the caller's (the RPC
/// server span and the remote trace it continues). Dropping the returned future aborts the
/// task.
pub(crate) async fn run<T, F>(fut: F) -> Result<T, Panicked>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut guard = AbortOnDrop(tokio::spawn(fut.instrument(tracing::Span::current())));
    let joined = (&mut guard.0).await;
    joined.map_err(panic_of)
}

/// The message of a task's panic (or why it did not finish).
fn panic_of(e: JoinError) -> Panicked {
    if !e.is_panic() {
        return Panicked("the task was cancelled".into());
    }
    Panicked::from_payload(e.into_panic())
}

impl Panicked {
    /// From a panic payload (`JoinError::into_panic`, `catch_unwind`).
    pub(crate) fn from_payload(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        Panicked(message)
    }
}

/// Logs, counts and audits a panic of `what` (a hook name, `resource.activate`, `rpc`, ...).
pub(crate) fn report(node: Option<&NodeContext>, app: Option<&AppName>, what: &str, p: &Panicked) {
    error!(hook = what, app = ?app.map(AppName::as_str), message = %p.0,
        "user code panicked; handling it as an error");
    let Some(node) = node else {
        crate::metrics::hook_panic(what);
        return;
    };
    node.stats.count_panic(what);
    node.audit(
        NODE,
        "hook.panicked",
        app,
        serde_json::json!({"hook": what, "message": p.0}),
    );
}
