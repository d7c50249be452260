//! Trace-context propagation hook: carries W3C trace context (`traceparent`, `tracestate`) in
//! the headers of RPC requests so a call's server span on one node is a child of the caller's
//! client span on another.
//!
//! This crate only creates `tracing` spans (`rpc.client`, `rpc.server`, `kv`, `election`) and
//! calls the installed [`TracePropagator`]; without one (the default) propagation is a no-op.
//! The `cluster` daemon installs an OpenTelemetry implementation, so this crate does not
//! depend on OpenTelemetry.

use std::sync::OnceLock;

use crate::transport::Headers;

/// W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// Moves trace context between `tracing` spans and message headers.
///
/// # To ensure correctness
///
/// * `inject` writes only the W3C headers ([`TRACEPARENT`], [`TRACESTATE`]) and never panics,
///   also when `span` is disabled.
/// * `extract` makes `span` a child of the context found in `headers`; headers without a valid
///   context leave `span` unchanged (a malformed `traceparent` is ignored, never an error).
///
/// Executable form: `cluster_testkit::conformance::trace`.
pub trait TracePropagator: Send + Sync + 'static {
    /// Writes the context of `span` into `headers`.
    fn inject(&self, span: &tracing::Span, headers: &mut Headers);
    /// Sets the parent of `span` from `headers`.
    fn extract(&self, headers: &Headers, span: &tracing::Span);
}

static PROPAGATOR: OnceLock<Box<dyn TracePropagator>> = OnceLock::new();

/// Installs the process-wide propagator (once; later calls return `false` and change nothing).
pub fn set_propagator(propagator: impl TracePropagator) -> bool {
    PROPAGATOR.set(Box::new(propagator)).is_ok()
}

/// Writes the context of `span` into `headers` (no-op without a propagator).
pub fn inject(span: &tracing::Span, headers: &mut Headers) {
    if let Some(p) = PROPAGATOR.get() {
        p.inject(span, headers);
    }
}

/// Sets the parent of `span` from `headers` (no-op without a propagator).
pub fn extract(headers: &Headers, span: &tracing::Span) {
    if let Some(p) = PROPAGATOR.get() {
        p.extract(headers, span);
    }
}
