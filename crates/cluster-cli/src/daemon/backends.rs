//! Backends of apps declared in the configuration file.
//!
//! Extension point: when the `cluster-backend` crate lands, list its types in [`available`]
//! and build the coordinator resource in [`resource_for`]. Until then every declared backend
//! is rejected by validation (see `config::load`) — never silently ignored.

use std::sync::Arc;

use cluster::core::runtime::ActiveResource;

use crate::config::{AppConfig, BackendConfig};

/// The backend types this build can run.
pub(crate) fn available() -> &'static [&'static str] {
    &[]
}

/// Why a backend type cannot be used (shown by validation).
pub(crate) fn unavailable_reason(kind: &str) -> String {
    format!(
        "backend type {kind:?} is not available in this build yet (the backend crate has not \
         landed); remove the backend section to run the app election-only"
    )
}

/// The resource that runs `backend` while `app` is active here.
pub(crate) fn resource_for(
    app: &AppConfig,
    backend: &BackendConfig,
) -> anyhow::Result<Arc<dyn ActiveResource>> {
    anyhow::bail!("app {}: {}", app.name, unavailable_reason(backend.kind()))
}
