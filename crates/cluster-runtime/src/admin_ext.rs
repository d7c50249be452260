//! App-defined admin operations ([`AdminMethod::AppExtension`](cluster_core::wire::admin::AdminMethod)):
//! a capability attached to an app (e.g. SQLite replication's snapshot commands) registers a
//! named handler with [`App::on_admin`]; the node's admin service runs it for requests naming
//! the app and the extension. Tools reach it through the admin service like every other admin
//! method, never through a temporary node.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::app::App;
use cluster_core::error::{Error, Result};
use cluster_core::wire::admin::{AdminRequest, AppExtensionParams};

/// A registered admin extension: JSON arguments → JSON result.
pub(crate) type AdminHandler =
    Arc<dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<serde_json::Value>> + Send + Sync>;

impl App {
    /// Registers the admin extension `name` (replacing an earlier one of that name). The
    /// admin service runs `f` with the request's arguments when a tool sends
    /// `app.ext {name, args}` for this app to this node; `f` decides whether this node may
    /// serve it (e.g. only the leader) and returns an error otherwise.
    pub fn on_admin<F, Fut>(&self, name: impl Into<String>, f: F) -> &Self
    where
        F: Fn(serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value>> + Send + 'static,
    {
        let handler: AdminHandler = Arc::new(move |args| Box::pin(f(args)));
        self.inner
            .hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .admin
            .insert(name.into(), handler);
        self
    }
}

/// Runs the extension a request names on the local instance of its app.
pub(crate) async fn dispatch(app: &App, request: &AdminRequest) -> Result<serde_json::Value> {
    let p: AppExtensionParams = request.params()?;
    let handler = app
        .inner
        .hooks
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .admin
        .get(&p.name)
        .cloned()
        .ok_or_else(|| Error::UnknownMethod {
            app: app.name().to_string(),
            method: p.name.clone(),
        })?;
    handler(p.args).await
}
